"""What ``evaluate`` reads: the labels file and a ``score`` output, checked.

Anything wrong with them raises :class:`EvaluateError` with one sentence for the user.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from detector.features import ACCOUNT, WINDOW

LABEL_COLUMNS: Final = ("incident_id", "account", "start", "end", "kind", "description")
SCORE_COLUMNS: Final = ("account", "window_start", "window_end", "score", "flagged")
UTC_TIME: Final = pl.Datetime("us", "UTC")


class EvaluateError(Exception):
    """Bad input to ``evaluate``: reported in one line, exit code 2."""


def _times(frame: pl.DataFrame, columns: tuple[str, ...], what: Path) -> pl.DataFrame:
    """``columns`` parsed from ISO-8601 text (UTC unless an offset is given)."""
    try:
        return frame.with_columns(
            pl.col(c).cast(pl.String).str.to_datetime(time_unit="us", time_zone="UTC")
            for c in columns
        )
    except pl.exceptions.PolarsError as exc:
        raise EvaluateError(
            f"{what}: {', '.join(columns)} must be ISO-8601 times, e.g. 2026-10-20T03:10:16Z"
        ) from exc


def load_labels(path: Path) -> pl.DataFrame:
    """Incidents: ``incident_id, account, start, end, kind, description``, times UTC.

    The file is CSV with exactly those columns (in any order, more are ignored).
    """
    if not path.is_file():
        raise EvaluateError(f"labels file {path}: no such file")
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise EvaluateError(f"labels file {path}: not CSV ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in LABEL_COLUMNS if c not in raw.columns]
    if missing:
        raise EvaluateError(
            f"labels file {path}: missing column(s) {', '.join(missing)}; "
            f"expected {','.join(LABEL_COLUMNS)}"
        )
    labels = _times(raw.select(LABEL_COLUMNS), ("start", "end"), path)
    empty = labels.filter(pl.any_horizontal(pl.col(LABEL_COLUMNS[:5]).is_null()))
    if empty.height:
        raise EvaluateError(f"labels file {path}: {empty.height} row(s) with an empty field")
    backwards = labels.filter(pl.col("end") < pl.col("start"))
    if backwards.height:
        raise EvaluateError(
            f"labels file {path}: incident {backwards['incident_id'][0]} ends before it starts"
        )
    if labels["incident_id"].is_duplicated().any():
        raise EvaluateError(f"labels file {path}: incident_id values repeat")
    return labels


def load_scores(path: Path) -> pl.DataFrame:
    """A ``trovewatch score`` output: ``account, window_start, window_end, score, flagged``
    (times UTC), sorted by account and window start."""
    if not path.is_file():
        raise EvaluateError(f"scores file {path}: no such file")
    if path.stat().st_size == 0:
        raise EvaluateError(f"scores file {path}: empty, no account-windows to evaluate")
    try:
        raw = pl.read_ndjson(path, infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        raise EvaluateError(
            f"scores file {path}: not NDJSON from `trovewatch score` ({str(exc).splitlines()[0]})"
        ) from exc
    missing = [c for c in SCORE_COLUMNS if c not in raw.columns]
    if missing:
        raise EvaluateError(
            f"scores file {path}: not a `trovewatch score` output (no {', '.join(missing)})"
        )
    scores = _times(raw.select(SCORE_COLUMNS), (WINDOW, "window_end"), path)
    try:
        scores = scores.with_columns(
            pl.col(ACCOUNT).cast(pl.String),
            pl.col("score").cast(pl.Float64),
            pl.col("flagged").cast(pl.Boolean),
        )
    except pl.exceptions.PolarsError as exc:
        raise EvaluateError(
            f"scores file {path}: score must be a number, flagged a boolean"
        ) from exc
    if scores.is_empty():
        raise EvaluateError(f"scores file {path}: no account-windows to evaluate")
    return scores.sort(ACCOUNT, WINDOW)


def in_period(labels: pl.DataFrame, since: datetime | None, until: datetime | None) -> pl.DataFrame:
    """The incidents overlapping ``[since, until)`` (either bound may be None)."""
    keep = pl.lit(True)
    if since is not None:
        keep = keep & (pl.col("end") >= since)
    if until is not None:
        keep = keep & (pl.col("start") < until)
    return labels.filter(keep)
