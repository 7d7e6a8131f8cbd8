"""The one place the stages are wired: source -> format -> features -> model -> sink."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from detector import features as F
from detector import formats, model, profile
from detector import schema as S
from detector.explain import Judge
from detector.formats.pg_jsonlog import NotClean
from detector.reader import read_chunks
from detector.rejects import Quarantine
from detector.settings import Settings


@dataclass
class Summary:
    """What a run read: events per format, context lines, rejects by reason, time span."""

    files: int = 0
    events: Counter[str] = field(default_factory=Counter)
    context: int = 0
    outside: int = 0  # events left out by since/until
    rejected: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    windows: int = 0
    flagged: int = 0

    def paragraph(self) -> str:
        per_format = ", ".join(f"{n:,} {f}" for f, n in sorted(self.events.items())) or "none"
        rejected = sum(self.rejected.values())
        reasons = ", ".join(f"{n:,} {r}" for r, n in sorted(self.rejected.items()))
        span = (
            f"from {self.first:%Y-%m-%d %H:%M:%S} to {self.last:%Y-%m-%d %H:%M:%S} UTC"
            if self.first and self.last
            else "no time span (no events)"
        )
        outside = f", {self.outside:,} more outside --since/--until" if self.outside else ""
        text = (
            f"Read {self.files} file(s): {sum(self.events.values()):,} audit events ({per_format}{outside}), "
            f"{self.context:,} context lines (connections, durations, server messages), "
            f"{rejected:,} lines rejected{f' ({reasons})' if reasons else ''}; events span {span}."
        )
        if self.windows:
            text += f" Scored {self.windows:,} account-windows, {self.flagged:,} flagged."
        return text


def read_events(
    paths: Sequence[Path],
    *,
    format_name: str = "auto",
    mapping: Path | None = None,
    log_line_prefix: str | None = None,
    quarantine: Quarantine | None = None,
    on_file: Callable[[str], None] = lambda name: None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[pl.DataFrame, Summary]:
    """Parse every file into one events frame sorted by time, and say what was read.

    ``since``/``until`` (UTC, inclusive/exclusive) keep only events in that period, so
    one log can be split into a training period and a period to score.

    Unparsable lines go to ``quarantine``; a file that is not a log raises
    :class:`detector.reader.NotALogError`.
    """
    quarantine = quarantine or Quarantine(None)
    summary = Summary(files=len(paths))
    frames: list[pl.DataFrame] = []
    for path in paths:
        on_file(f"reading {path.name}")
        fmt = formats.get(format_name, path, mapping=mapping, log_line_prefix=log_line_prefix)
        parts = []
        for parsed in _parse_file(fmt, path):
            parts.append(parsed.events)
            summary.context += parsed.context
            quarantine.add(str(path), parsed.rejects)
        events = merge_split_statements(pl.concat(parts)) if parts else S.empty()
        finish = getattr(fmt, "finish", None)
        if finish is not None:
            events = finish(events)
        parsed_events = events.height
        if since is not None:
            events = events.filter(pl.col(S.TIME) >= since)
        if until is not None:
            events = events.filter(pl.col(S.TIME) < until)
        summary.outside += parsed_events - events.height
        frames.append(events)
        summary.events[fmt.name] += events.height
    summary.rejected = Counter(quarantine.counts)
    events = pl.concat(frames) if frames else S.empty()
    events = events.sort(S.TIME, maintain_order=True)
    if events.height:
        summary.first, summary.last = events[S.TIME].min(), events[S.TIME].max()  # type: ignore[assignment]
    return events, summary


def merge_split_statements(events: pl.DataFrame) -> pl.DataFrame:
    """One event per statement even where a chunk boundary split its log lines.

    Within one file, events with the same session and statement id are one statement
    (pgAudit logs a statement once per relation): their objects are merged and the
    first event's rows, counted once, are kept.
    """
    key = [S.SESSION, S.STATEMENT_ID]
    split = pl.struct(key).is_duplicated() & pl.col(S.STATEMENT_ID).is_not_null()
    twice = events.filter(split)
    if twice.is_empty():
        return events
    merged = twice.group_by(key, maintain_order=True).agg(
        pl.all().exclude(S.OBJECTS).first(),
        pl.col(S.OBJECTS).explode().drop_nulls().unique(maintain_order=True),
    )
    return pl.concat([events.filter(~split), merged.select(events.columns)]).sort(
        S.TIME, maintain_order=True
    )


def _parse_file(fmt: formats.Format, path: Path) -> Iterator[formats.Parsed]:
    """Every chunk of ``path`` parsed: by the format's whole-file fast path when it has
    one and the file is clean, else chunk by chunk with exact rejects and line numbers."""
    fast = getattr(fmt, "fast_batches", None)
    if fast is not None:
        try:
            done = list(fast(path))
        except (pl.exceptions.PolarsError, NotClean):
            pass
        else:
            yield from done
            return
    for chunk in read_chunks(path, getattr(fmt, "record_start", None)):
        yield fmt.parse(chunk)


def windows_with_horizons(
    events: pl.DataFrame, horizons: F.Horizons, known: pl.DataFrame | None
) -> pl.LazyFrame:
    activity = F.window_activity(
        events.lazy(), horizons.base, None if known is None else known.lazy()
    )
    return F.add_horizons(activity, horizons)


def model_frame(
    windows: pl.LazyFrame,
    prof: profile.Profile,
    horizons: F.Horizons,
    own_history: pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Windows with relative features and model inputs, from a learned profile.

    ``own_history`` replaces the profile's per-account largest values, e.g. with
    :func:`detector.features.history_max` for training.
    """
    relative = F.add_relative(
        windows,
        horizons,
        prof.account_max.lazy() if own_history is None else own_history,
        prof.peer_ref.lazy(),
        prof.hours.lazy(),
        prof.peers.lazy(),
    )
    return F.add_model_inputs(relative, horizons).collect()


def matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    return frame.select(
        pl.col(c).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for c in columns
    ).to_numpy()


def train(
    events: pl.DataFrame,
    settings: Settings,
    name: str = "model",
    on_stage: Callable[[str], None] = lambda stage: None,
) -> model.TrainedModel:
    """Learn profiles and fit the forest on the training period's windows.

    ``on_stage`` is told when each stage starts (for a progress bar).
    """
    on_stage("computing features")
    horizons = settings.horizon_spec
    windows = windows_with_horizons(events, horizons, known=None).collect()
    prof = profile.learn(windows, events.lazy(), horizons, settings.roles)
    # Each training window is compared with its account's other days, as a new day will
    # be compared with all of them; compared with itself it could never look unusual.
    frame = model_frame(windows.lazy(), prof, horizons, F.others_max(windows.lazy(), horizons))
    frame = frame.sort(F.ACCOUNT, F.WINDOW)  # the same input gives the same forest
    warm = F._duration_kwargs(settings.warmup)
    fit_rows = frame.filter(
        pl.col(F.WINDOW) >= pl.col(F.WINDOW).min().over(F.ACCOUNT) + pl.duration(**warm)
    )
    if fit_rows.height < 10:
        fit_rows = frame  # a short training period: warm-up would leave nothing to learn from
    columns = F.model_features(horizons)
    on_stage(f"fitting {settings.trees} trees on {fit_rows.height:,} windows")
    detector = model.Detector(n_estimators=settings.trees, random_state=settings.seed).fit(
        matrix(fit_rows, columns)
    )
    manifest = model.Manifest(
        name=name,
        schema_version=S.SCHEMA_VERSION,
        feature_version=F.FEATURE_VERSION,
        features=columns,
        horizons={"base": horizons.base, "longer": list(horizons.longer)},
        libraries=model.libraries(),
        training={
            "start": events[S.TIME].min().isoformat() if events.height else None,  # type: ignore[union-attr]
            "end": events[S.TIME].max().isoformat() if events.height else None,  # type: ignore[union-attr]
            "events": events.height,
            "accounts": prof.accounts,
            "windows": frame.height,
            "fit_windows": fit_rows.height,
            "formats": sorted(events[S.SOURCE_FORMAT].unique().to_list()),
            "roles": settings.roles,
        },
        calibration=vars(detector.calibration_),
    )
    return model.TrainedModel(detector, prof, manifest)


def score(events: pl.DataFrame, trained: model.TrainedModel, settings: Settings) -> pl.DataFrame:
    """Score every account-window with activity: the ``score`` output's rows."""
    horizons = trained.horizons
    windows = windows_with_horizons(events, horizons, known=trained.profile.known).collect()
    judge = Judge(trained.profile, horizons, settings)

    def judged_windows(windows: pl.DataFrame, with_reasons: bool) -> pl.DataFrame:
        frame = model_frame(windows.lazy(), trained.profile, horizons)
        scores = trained.detector.score(matrix(frame, trained.manifest.features))
        return judge(frame, scores, with_reasons)

    judged = judged_windows(windows, with_reasons=False)
    alerted = judged.filter(pl.col("flagged")).select(
        F.ACCOUNT, F.WINDOW, pl.lit(True).alias("_alerted")
    )
    if alerted.height:
        # Second pass: volume already alerted on is taken out of later windows' horizons.
        marked = windows.join(alerted, on=[F.ACCOUNT, F.WINDOW], how="left", maintain_order="left")
        discounted = F.discount_alerted(
            marked.lazy(), pl.col("_alerted").fill_null(False), horizons
        )
        judged = judged_windows(discounted.drop("_alerted").collect(), with_reasons=True)
    else:
        judged = judged.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("reasons"))
    feature_cols = [
        *[
            F.col_name(v, h)
            for v in ("rows_read", "bytes_read", "statements", "exports")
            for h in horizons.all
        ],
        *[f"{F.col_name(v, h)}_vs_own" for v in ("rows_read", "statements") for h in horizons.all],
        *[f"{F.col_name(v, h)}_vs_peers" for v in ("rows_read",) for h in horizons.all],
        "new_objects",
        "failed",
        "new_clients",
        "new_apps",
        "hour_rarity",
        "hour_rarity_peers",
        "peer_group",
    ]
    return judged.select(
        pl.col(F.ACCOUNT),
        pl.col(F.WINDOW),
        pl.col("window_end"),
        pl.col("score").round(4),
        "flagged",
        "severity",
        "reasons",
        pl.struct(
            pl.col("objects").alias("distinct_objects"),
            *[
                pl.col(c).round(3) if judged.schema[c] == pl.Float64 else pl.col(c)
                for c in feature_cols
            ],
        ).alias("features"),
        pl.col("objects_list").alias("objects"),
    ).sort(F.WINDOW, F.ACCOUNT)


def write_ndjson(scored: pl.DataFrame, out: Path | None) -> None:
    """Write scored windows as NDJSON (ISO-8601 UTC times) to ``out`` or stdout."""
    text = scored.with_columns(
        pl.col(F.WINDOW).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("window_end").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ).write_ndjson()
    if out is None:
        import sys

        sys.stdout.write(text)
    else:
        out.write_text(text)
