"""The one place the stages are wired: source -> format -> features -> model -> sink."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Final, TypedDict, Unpack

import numpy as np
import polars as pl

from detector import carried, formats, ingest, model, partials, profile
from detector import features as F
from detector import schema as S
from detector.explain import Judge, heavy_days
from detector.ingest import Summary, merge_split_statements, read_events
from detector.rejects import Quarantine
from detector.settings import Settings
from detector.sink import WindowOrder, time_slices, write_ndjson

__all__ = [
    "LogOptions",
    "Summary",
    "history_from",
    "merge_split_statements",
    "read_events",
    "score",
    "score_logs",
    "score_logs_to",
    "score_period",
    "score_windows",
    "scored_from",
    "train",
    "train_period",
    "write_ndjson",
]


def model_frame(
    windows: pl.LazyFrame,
    prof: profile.Profile,
    horizons: F.Horizons,
    own_history: pl.LazyFrame | None = None,
    keep: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Windows with relative features and model inputs, from a learned profile.

    ``own_history`` replaces the profile's per-account largest values, e.g. with
    :func:`detector.features.history_max` for training. ``keep``: only these columns
    (training needs the model's inputs only, not the windows' lists of objects)."""
    relative = F.add_relative(
        windows,
        horizons,
        prof.account_max.lazy() if own_history is None else own_history,
        prof.peer_ref.lazy(),
        prof.hours.lazy(),
        prof.peers.lazy(),
        None if own_history is not None else prof.place(windows).lazy(),
    )
    # The in-memory engine: on this wide plan (four joins, a hundred-odd expressions)
    # Polars 2's default streaming engine took about 20 times the CPU and 2.5 times the
    # memory (0.8-1.1 s against 0.04 s, 1.35 GB against 0.52 GB peak, for the 51,339
    # windows of bench/bench_score.py's log). The same rows either way.
    inputs = F.add_model_inputs(relative, horizons)
    return (inputs if keep is None else inputs.select(keep)).collect(engine="in-memory")


def matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    return frame.select(
        pl.col(c).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for c in columns
    ).to_numpy()


FOLD_AFTER: Final = 8  # batches' partials merged into one stretch past this many


@dataclass
class Period:
    """A training period as training reads it: the per account-window partial aggregates
    (:mod:`detector.partials`) of its events, what the events showed of each field, and
    when they began and ended. Memory follows the account-windows, not the events."""

    partials: pl.DataFrame  # one row per (account, window)
    evidence: carried.Evidence
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def of(cls, batches: Iterable[pl.DataFrame], every: str) -> Period:
        """The period of ``batches`` of events (the event schema), folded one by one."""
        period = cls(partials.empty(), carried.Evidence())
        parts: list[pl.DataFrame] = []
        folded = 0  # parts[:folded] are stretches of the log merged already
        for events in batches:
            period.evidence.add(events)
            parts.append(partials.partial(events, every))
            if len(parts) - folded > FOLD_AFTER:
                # A window's rows are mostly in neighbouring batches: merged as they come,
                # the parts hold about one row per account-window. Kept apart until the
                # end, a log of 100,000 accounts held each window once for every batch it
                # spanned, with views into each batch's parse buffers (peak 2,240 MB
                # against 1,927 reading 2.6 GB: docs/benchmarks.md). Only the newest
                # parts are merged, not the stretches before them, as partials.Fold
                # would: a long log's earlier windows are not rewritten again and again.
                parts[folded:] = [partials.merged_owning(parts[folded:])]
                folded = len(parts)
            if events.height:
                first, last = events.select(
                    pl.col(S.TIME).min().alias("first"), pl.col(S.TIME).max().alias("last")
                ).row(0)
                period.start = first if period.start is None else min(period.start, first)
                period.end = last if period.end is None else max(period.end, last)
        period.partials = partials.merge_all(parts)
        return period

    def only(self, windows: pl.DataFrame) -> Period:
        """The period's account-windows that are in ``windows`` (account, window_start)."""
        kept = self.partials.join(windows, on=list(partials.KEYS), how="semi")
        return replace(self, partials=kept)


def train(
    events: pl.DataFrame,
    settings: Settings,
    name: str = "model",
    on_stage: Callable[[str], None] = lambda stage: None,
) -> model.TrainedModel:
    """:func:`train_period` on the period of ``events``."""
    return train_period(Period.of([events], settings.horizon_spec.base), settings, name, on_stage)


class LogOptions(TypedDict, total=False):
    """How logs are read and which of their events are kept, as the command line's
    ``--format``, ``--mapping``, ``--log-line-prefix``, ``--mariadb-timezone``,
    ``--postgres-timezone`` (``told``), ``--since`` and ``--until`` say:
    the keyword arguments of :func:`read_period` (its defaults where left out) that
    :func:`score_logs` and :func:`score_logs_to` pass on."""

    format_name: str
    mapping: Path | None
    told: formats.Told
    since: datetime | None
    until: datetime | None


def read_period(
    paths: Sequence[Path],
    every: str,
    quarantine: Quarantine | None = None,
    *,
    format_name: str = "auto",
    mapping: Path | None = None,
    told: formats.Told = formats.Told(),
    since: datetime | None = None,
    until: datetime | None = None,
    history_from: datetime | None = None,
    on_file: Callable[[str], None] = lambda name: None,
) -> tuple[Period, Summary]:
    """The period in ``paths``, in windows of ``every``, and what was read (from
    ``history_from`` on if given: :func:`detector.ingest.read_events`). PostgreSQL logs
    are read batch by batch and folded as they come; other formats, whose records are
    joined across the whole file, are read whole first."""
    if mapping is None and ingest.streamable(paths, format_name, told):
        summary = Summary()
        batches = ingest.event_batches(
            paths,
            summary,
            format_name=format_name,
            told=told,
            quarantine=quarantine,
            since=since,
            until=until,
            history_from=history_from,
            on_file=on_file,
        )
        return Period.of(batches, every), summary
    events, summary = read_events(
        paths,
        format_name=format_name,
        mapping=mapping,
        told=told,
        quarantine=quarantine,
        since=since,
        until=until,
        history_from=history_from,
        on_file=on_file,
    )
    return Period.of([events], every), summary


def train_period(
    period: Period,
    settings: Settings,
    name: str = "model",
    on_stage: Callable[[str], None] = lambda stage: None,
) -> model.TrainedModel:
    """Learn profiles and fit the forest on the training period's windows.

    ``on_stage`` is told when each stage starts (for a progress bar).
    """
    on_stage("computing features")
    horizons = settings.horizon_spec
    windows = F.add_horizons(
        partials.to_activity(period.partials, horizons.base).lazy(), horizons
    ).collect()
    known = partials.known(period.partials)
    prof = profile.learn(windows, known, horizons, settings.roles, settings.learned_peers)
    signals = period.evidence.training()
    columns = F.model_features(horizons, volume=signals["volume"] != [])
    # Each training window is compared with its account's other days, as a new day will
    # be compared with all of them; compared with itself it could never look unusual.
    # Only the model's inputs are kept: the windows' lists (objects, clients, tables'
    # rows) made the frame about 1 KB a window, 40 GB for 10,000 accounts' two weeks.
    others = F.others_max(windows.lazy(), horizons)
    frame = model_frame(windows.lazy(), prof, horizons, others, [F.ACCOUNT, F.WINDOW, *columns])
    del windows
    frame = frame.sort(F.ACCOUNT, F.WINDOW)  # the same input gives the same forest
    fit_rows = frame.filter(
        pl.col(F.WINDOW) >= pl.col(F.WINDOW).min().over(F.ACCOUNT) + F.duration(settings.warmup)
    )
    if fit_rows.height < 10:
        fit_rows = frame  # a short training period: warm-up would leave nothing to learn from
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
            "start": None if period.start is None else period.start.isoformat(),
            "end": None if period.end is None else period.end.isoformat(),
            "events": period.evidence.statements,
            "accounts": prof.accounts,
            "windows": frame.height,
            "fit_windows": fit_rows.height,
            "formats": sorted(period.evidence.formats),
            **signals,
            "roles": settings.roles,
        },
        calibration=vars(detector.calibration_),
    )
    return model.TrainedModel(detector, prof, manifest)


def score(
    events: pl.DataFrame,
    trained: model.TrainedModel,
    settings: Settings,
    since: datetime | None = None,
) -> pl.DataFrame:
    """Score every account-window with activity: the ``score`` output's rows; with
    ``since``, the windows that end after it, the earlier events being their history
    (:func:`scored_from`).

    Raises :class:`detector.model.ModelError` when the logs carry other fields (rows,
    bytes, objects, clients, applications) than the training logs did."""
    carried.check(carried.Evidence().add(events), trained.manifest.training)
    activity = F.window_activity(
        events.lazy(), trained.horizons.base, trained.profile.known.lazy()
    ).collect()
    return scored_from(score_windows(activity, trained, settings), since, trained.horizons)


def history_from(since: datetime | None, horizons: F.Horizons) -> datetime | None:
    """Where a run scoring from ``since`` starts reading: :attr:`Horizons.lookback`
    before it. The windows after ``since`` are judged with their accounts' earlier reads
    in their horizons and their earlier alerts in mind, as ``serve``, which has its
    history, judges them: a slow drip that began the day before counts from its start,
    and a repeat of yesterday's alerted volume is not news."""
    return None if since is None else since - horizons.lookback


def scored_from(
    windows: pl.DataFrame, since: datetime | None, horizons: F.Horizons
) -> pl.DataFrame:
    """The rows of ``windows`` (account-windows, scored or not) that end after ``since``."""
    if since is None:
        return windows
    return windows.filter(pl.col(F.WINDOW) > since - F.span(horizons.base))


SCORE_BATCH_WINDOWS: Final = 25_000
"""Account-windows a batch run scores at once (whole accounts: a batch holds more when
one account has more). Scoring takes a few KB a window (horizons, 130-odd model inputs,
two or three judging passes), so under 200 MB at 25,000 windows, however long the log; each
batch costs about 0.08 s more (the forest is asked twice per batch), 1% of the run."""


def score_logs(
    paths: Sequence[Path],
    model_dir: Path,
    settings: Settings,
    quarantine: Quarantine,
    *,
    batch_windows: int = SCORE_BATCH_WINDOWS,
    **options: Unpack[LogOptions],
) -> tuple[pl.DataFrame, Summary]:
    """Read logs (as ``options`` say) and score them with the model in ``model_dir``: the
    ``score`` output's rows (:func:`score`), all in one frame, and what was read.
    :func:`score_logs_to` writes the same rows without holding them all."""
    found, trained, summary = _read_for_scoring(paths, model_dir, quarantine, **options)
    since = options.get("since")
    batches = list(score_period(found, trained, settings, batch_windows, since))
    return pl.concat(batches).sort(F.WINDOW, F.ACCOUNT), summary


def score_logs_to(
    out: Path | None,
    paths: Sequence[Path],
    model_dir: Path,
    settings: Settings,
    quarantine: Quarantine,
    *,
    batch_windows: int = SCORE_BATCH_WINDOWS,
    **options: Unpack[LogOptions],
) -> Summary:
    """Read logs (as ``options`` say), score them with the model in ``model_dir`` and
    write the rows of :func:`score_logs` as NDJSON to ``out`` (stdout: None), the same
    bytes, one time slice after another. Returns what was read and scored.

    Accounts are scored ``batch_windows`` windows at a time (:func:`score_period`) and
    put back in the output's order through files in a temporary directory
    (:class:`detector.sink.WindowOrder`): beside ``out`` when it is a file, a disk
    chosen for about as much data, otherwise the system's. Memory follows the log's
    account-windows only through their partial aggregates (a few hundred bytes each).
    """
    found, trained, summary = _read_for_scoring(paths, model_dir, quarantine, **options)
    since = options.get("since")
    spill_dir = None
    if out is not None and out.parent.is_dir() and (out.is_file() or not out.exists()):
        spill_dir = out.resolve().parent
    with tempfile.TemporaryDirectory(prefix="trovewatch-score-", dir=spill_dir) as spill:
        scored_windows = scored_from(found, since, trained.horizons)[F.WINDOW]
        order = WindowOrder(time_slices(scored_windows, batch_windows), Path(spill))
        for scored in score_period(found, trained, settings, batch_windows, since):
            summary.windows += scored.height
            summary.flagged += int(scored["flagged"].sum())
            order.add(scored)
        write_ndjson(order.slices(), out)
    return summary


def _read_for_scoring(
    paths: Sequence[Path],
    model_dir: Path,
    quarantine: Quarantine,
    **options: Unpack[LogOptions],
) -> tuple[pl.DataFrame, model.TrainedModel, Summary]:
    """The logs' partial aggregates, the model in ``model_dir`` and what was read.

    The model loads in a thread while the logs are parsed (hashing and reading its
    artefacts overlaps Polars' work, which releases the GIL).
    PostgreSQL logs are read batch by batch (:func:`detector.ingest.event_batches`), each
    batch folded into per account-window partial aggregates (:mod:`detector.partials`),
    so memory grows with the account-windows, not the events; other formats are read whole.
    """
    manifest = model.read_manifest(model_dir)  # a wrong directory fails before any reading
    horizons = manifest.horizon_spec
    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(model.load, model_dir)
        period, summary = read_period(
            paths,
            horizons.base,
            quarantine,
            history_from=history_from(options.get("since"), horizons),
            **options,
        )
        trained = loading.result()
    carried.check(period.evidence, trained.manifest.training)
    return period.partials, trained, summary


def score_period(
    found: pl.DataFrame,
    trained: model.TrainedModel,
    settings: Settings,
    batch_windows: int = SCORE_BATCH_WINDOWS,
    since: datetime | None = None,
) -> Iterator[pl.DataFrame]:
    """Score the account-windows of a period's partial aggregates (:mod:`detector.partials`)
    a batch of accounts at a time: each batch's ``score`` output rows (sorted by window
    start, then account; with ``since``, those ending after it: :func:`scored_from`),
    batches in account order, at least one (maybe empty).

    Everything a window is judged on comes from its own account's windows (horizons,
    what is new to it, alerted volume, its earlier days) and the model's profile (its
    history, its peers, where a newcomer is placed), never from other accounts' windows:
    the rows are those of scoring all windows at once. A batch holds whole accounts,
    ``batch_windows`` windows or fewer unless one account alone has more.
    """
    every = trained.horizons.base
    known = trained.profile.known.lazy()
    for batch in _account_batches(found, batch_windows):
        scored = score_windows(partials.to_activity(batch, every, known), trained, settings)
        yield scored_from(scored, since, trained.horizons)


def _account_batches(found: pl.DataFrame, most: int) -> Iterator[pl.DataFrame]:
    """The rows of ``found``, whole accounts at a time in account order: batches of at most
    ``most`` rows unless one account alone has more; one empty batch for no rows.

    Each batch is filtered out, not sliced from a sorted copy: the copy would be held
    beside the partials all through the scoring (at 50 million lines, hundreds of MB)."""
    counts = found.group_by(F.ACCOUNT).len().sort(F.ACCOUNT)
    first_row = pl.col("len").cum_sum() - pl.col("len")
    groups = counts.group_by((first_row // most).alias("batch"), maintain_order=True).agg(F.ACCOUNT)
    if groups.is_empty():
        yield found
    for accounts in groups[F.ACCOUNT]:
        yield found.filter(pl.col(F.ACCOUNT).is_in(accounts.implode()))


MAX_PASSES: Final = 6  # judging passes of score_windows (2-3 settle in practice)


def score_windows(
    activity: pl.DataFrame, trained: model.TrainedModel, settings: Settings
) -> pl.DataFrame:
    """Score account-windows (rows of :func:`detector.features.window_activity`): each
    account's whole period, its horizon sums taken from its own windows here."""
    horizons = trained.horizons
    windows = F.object_today(
        F.add_horizons(
            activity.with_columns(pl.lit(True).alias("_new"), pl.lit(False).alias("_alerted"))
            .sort(F.ACCOUNT, F.WINDOW)
            .lazy(),
            horizons,
        ),
        settings.guardrail_min_rows,
        heavy_days(trained.profile, settings),
    ).collect()
    untrained = ~pl.col(F.ACCOUNT).is_in(trained.profile.trained.implode())
    own_days = F.earlier_days(
        windows.lazy().filter(untrained), horizons, F.horizon_columns(horizons)
    ).collect()
    return judge_windows(windows, own_days, trained, settings)


def judge_windows(
    windows: pl.DataFrame,
    own_days: pl.DataFrame,
    trained: model.TrainedModel,
    settings: Settings,
) -> pl.DataFrame:
    """The ``score`` output of the new windows of ``windows``.

    ``windows`` (sorted by account, then window start) holds new windows (``_new``) with
    their horizon sums (:func:`detector.features.add_horizons`), and may hold earlier
    windows that alerted (``_alerted``), whose ``<horizon column>__level`` give the sums
    they were alerted with: volume already alerted on does not raise a second alert.
    Each signal's ``<signal>__running``, where given, is its running total
    (:func:`detector.features.discount_alerted`). ``own_days`` holds the largest sums
    of an untrained account's earlier days (:func:`detector.features.earlier_days`), for
    the guardrail and reasons (explain.Judge), not the model: trained accounts are held
    to their training. A batch run has every window of the period here; the live
    service its new windows, their sums carried from close to close, and its alerts.
    """
    horizons = trained.horizons
    judge = Judge(
        trained.profile, horizons, settings, trained.manifest.training.get("volume") != []
    )

    def judged_windows(alerted: pl.Expr, with_reasons: bool) -> pl.DataFrame:
        # Only accounts with an alert among their windows have volume to discount and
        # alerted levels; the rest need neither, nor any but their new windows.
        ever = alerted.any().over(F.ACCOUNT)
        marked = windows.lazy().with_columns(ever.alias("_ever"))
        discounted = F.discount_alerted(marked.filter("_ever"), alerted, horizons)
        leveled = F.unshown_objects(
            F.alerted_levels(discounted.filter(pl.col("_new") | alerted), alerted, horizons),
            alerted,
            horizons,
        ).filter("_new")
        # Collected once: model_frame reads its input twice (peer placement, relative
        # features) and would otherwise run the window functions above twice.
        new = (
            pl.concat(
                [leveled, marked.filter(pl.col("_new") & ~pl.col("_ever"))],
                how="diagonal_relaxed",
            )
            .sort(F.ACCOUNT, F.WINDOW)
            .with_columns(pl.col(F.WINDOW).dt.truncate("1d").alias("day"))
            .join(own_days.lazy(), on=[F.ACCOUNT, "day"], how="left", maintain_order="left")
            .drop("day", "_ever", *(f"{s}__running" for s in F.VOLUME), strict=False)
            .collect()
        )
        frame = model_frame(new.lazy(), trained.profile, horizons)
        scores = trained.detector.score(matrix(frame, trained.manifest.features))
        return judge(frame, scores, with_reasons, attribute)

    def attribute(rows: pl.DataFrame) -> tuple[list[str], np.ndarray]:
        names = trained.manifest.features
        return names, trained.detector.attribution(matrix(rows, names))

    # Whether a window alerts depends on the alerts of the account's earlier windows
    # (volume since the last alert, levels alerted on), as the live service judges each
    # window after the ones before it. A batch judges all at once, again with the alerts
    # of the previous pass, until the alerts judged with are the alerts that come out:
    # each pass settles at least each account's earliest unsettled window, and it takes
    # two or three.
    judged = judged_windows(pl.col("_alerted"), with_reasons=False)
    plain, used = windows, None
    for _ in range(MAX_PASSES):
        alerted = (
            judged.filter(pl.col("flagged")).select(F.ACCOUNT, F.WINDOW).sort(F.ACCOUNT, F.WINDOW)
        )
        if used is not None and alerted.equals(used):
            break
        if used is None and alerted.is_empty():
            judged = judged.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("reasons"))
            break
        used = alerted
        windows = plain.join(
            alerted.with_columns(pl.lit(True).alias("_flagged")),
            on=[F.ACCOUNT, F.WINDOW],
            how="left",
            maintain_order="left",
        )
        judged = judged_windows(
            pl.col("_alerted") | pl.col("_flagged").fill_null(False), with_reasons=True
        )
    return _output(judged, horizons)


def alert_level_columns(horizons: F.Horizons) -> list[str]:
    """The columns of :func:`judge_windows`' alerted windows holding the sums they were
    alerted with."""
    return [f"{c}__level" for c in F.horizon_columns(horizons, F.ALERT_LEVELS)]


def alert_levels(scored: pl.DataFrame, horizons: F.Horizons) -> pl.DataFrame:
    """The flagged windows of a ``score`` output with the sums they were alerted with
    (account, window start and :func:`alert_level_columns`) and the objects they showed
    (``objects_list``)."""
    return scored.filter(pl.col("flagged")).select(
        F.ACCOUNT,
        F.WINDOW,
        *(
            pl.col("features").struct.field(c).cast(pl.Int64).alias(f"{c}__level")
            for c in F.horizon_columns(horizons, F.ALERT_LEVELS)
        ),
        pl.col("objects").alias("objects_list"),
    )


def _output(judged: pl.DataFrame, horizons: F.Horizons) -> pl.DataFrame:
    """The scored windows as users see them: verdict, reasons, features, objects."""
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
        pl.col("clients_list").alias("clients"),
        pl.col("apps_list").alias("applications"),
    ).sort(F.WINDOW, F.ACCOUNT)
