"""Human-readable alerts from ``score`` output, for an analyst at a terminal."""

from __future__ import annotations

from pathlib import Path

import polars as pl

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
FIELDS = ("account", "window_start", "score", "flagged", "severity", "reasons")


class NotScoresError(ValueError):
    """The file is NDJSON, but not what ``score`` writes."""


def alerts_text(scores: Path) -> str:
    """The flagged windows in a ``score`` NDJSON file, most severe first, with their reasons.

    Raises :class:`NotScoresError` for a file that is not NDJSON, or whose objects lack
    the fields ``score`` writes.
    """
    if scores.stat().st_size == 0:
        return "0 account-windows in this file: nothing was scored\n"
    try:
        frame = pl.read_ndjson(scores, infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:  # the decoder's own words mean nothing here
        raise NotScoresError("not NDJSON: a line is not a JSON object") from exc
    if frame.is_empty():
        return "no account-windows in this file\n"
    missing = [name for name in FIELDS if name not in frame.columns]
    if missing:  # an audit log or another tool's NDJSON: not "nothing flagged"
        raise NotScoresError(f"missing {', '.join(missing)}")
    rank = pl.col("severity").replace_strict(SEVERITY_ORDER, default=len(SEVERITY_ORDER))
    flagged = frame.filter(pl.col("flagged")).sort(
        [rank, pl.col("score")], descending=[False, True]
    )
    lines = [f"{flagged.height} of {frame.height} account-windows flagged"]
    for row in flagged.iter_rows(named=True):
        lines.append(
            f"\n{row['window_start']}  {row['account']}  {row['severity'].upper()}  score {row['score']:.2f}"
        )
        lines.extend(f"  - {reason}" for reason in row["reasons"])
    return "\n".join(lines) + "\n"
