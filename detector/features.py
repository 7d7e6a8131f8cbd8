"""Per-account features over several horizons, as pure ``LazyFrame -> LazyFrame`` functions.

Event time only: no wall clock, no I/O. Input events must be sorted by time (the
pipeline sorts once, upstream); window frames are sorted by account, then window start.

The stages:

1. :func:`window_activity`: one row per account and base window with any activity: rows
   and bytes read, statements, distinct objects, objects/clients/applications never seen
   before for the account, export statements, failed statements, hour of day.
2. :func:`add_horizons`: trailing sums of the volume signals over each horizon
   (e.g. 5 minutes, 1 hour, 1 day, 3 days), ending at the window's end.
3. :func:`add_relative`: every signal against the account's own history and its peers'
   (from a learned :class:`~detector.profile.Profile`), as log2 ratios.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final, Literal

import polars as pl

from detector import schema as S

# Feature code names windows and horizons through this module: re-exported.
from detector.durations import Horizons as Horizons
from detector.durations import parse
from detector.durations import span as span

# 2: unknown volume stays null; 3: no new objects for new accounts; 4: largest day per
# weekday, days of history per account; 5: that largest day is a calendar day (UTC), not
# a trailing 24 hours (the weekday table's columns changed: a v4 model cannot be read);
# 6: reads of the server's catalogs alone (CATALOG) are no rows, objects or exports, a
# read through a function counts its rows once, a MariaDB CALL's rows are read (a v5
# model's largest volumes and exports were learned with them); 7: so is a read of
# sequences' state alone (pg_dump reads each sequence's last value: a v6 model learned
# them as objects read); 8: a client statement counts once, not per pgAudit
# sub-statement (an INSERT checked by 2,000 foreign-key reads was 2,001 statements), and
# a dump's function-only SELECTs and user schemas named sys or mysql are read as they are;
# on MariaDB, INTO OUTFILE's rows, HANDLER reads, the account tables and sentinel row
# counts too (a v7 model learned other statement counts, exports, rows and objects);
# 9: each account's largest calendar day of rows from each object it read (a v8 model
# has no such table)
FEATURE_VERSION: Final = 9
ACCOUNT: Final = "account"
WINDOW: Final = "window_start"
# Signals summed over horizons; rows/bytes are null when the format does not log them.
# ``objects`` sums each window's distinct objects: object-windows, not distinct objects.
VOLUME: Final = (
    "rows_read",
    "bytes_read",
    "statements",
    "objects",
    "exports",
    "failed",
    "new_objects",
)
# Signals compared with the account's own history and with its peers.
RELATIVE: Final = ("rows_read", "bytes_read", "statements", "objects", "exports", "failed")
# The signals a format may not carry at all: null in the log means unknown, not zero.
UNKNOWABLE: Final = ("rows_read", "bytes_read")
VOLUME_FEATURES: Final = ("volume_vs_own", "volume_vs_peers")
# The volumes the slow-drip rule sums over a day or longer.
DRIP: Final = ("rows_read", "bytes_read")
# The calendar day (UTC) so far, a sum kept beside the trailing horizons for the
# quiet-day drip rule: a Saturday's trailing 24 hours still hold Friday's work.
# The hour rarity of an hour with at most 0.1% of an account's windows (none, mostly).
HOUR_RARITY_CAP: Final = 3.0
TODAY: Final = "today"
# Per window, the rows read from each object (:func:`read_object_rows`), and per window
# each such object's rows on its calendar day (UTC) so far (:func:`object_today`).
OBJECT_ROWS: Final = "object_rows"
OBJECT_ROWS_TYPE: Final = pl.List(pl.Struct({"object": pl.String(), "rows": pl.Int64()}))
OBJECT_TODAY: Final = "object_today"
OBJECT_TODAY_TYPE: Final = pl.List(
    pl.Struct({"object": pl.String(), "today": pl.Int64(), "before": pl.Int64()})
)
# (account, object, day, rows): an account's rows from an object on a calendar day (UTC)
OBJECT_DAYS_SCHEMA: Final = pl.Schema(
    {
        ACCOUNT: pl.String(),
        "object": pl.String(),
        "day": pl.Datetime("us", "UTC"),
        "rows": pl.Int64(),
    }
)
# Signals whose alerted levels hold back a repeat alert (:func:`alerted_levels`).
ALERT_LEVELS: Final = ("rows_read", "bytes_read", "statements", "exports")


def col_name(signal: str, horizon: str) -> str:
    return f"{signal}_{horizon}"


def _first_seen(events: pl.LazyFrame, values: pl.Expr, kind: str) -> pl.LazyFrame:
    """(account, kind, value, first time) for each value the account used, in this input."""
    return (
        events.select(pl.col(S.ACCOUNT).alias(ACCOUNT), pl.col(S.TIME), values.alias("value"))
        .explode("value")
        .drop_nulls("value")
        .group_by(ACCOUNT, "value")
        .agg(pl.col(S.TIME).min().alias("first_time"))
        .with_columns(pl.lit(kind).alias("kind"))
    )


def window_activity(
    events: pl.LazyFrame, every: str, known: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """One row per (account, base window) with activity.

    ``known`` holds (account, kind, value) pairs already seen in earlier history
    (kinds ``object``, ``client``, ``app``); values first seen here and not known are new.
    Rows are counted for READ statements only, and are null when none of the window's
    reads logged a row count (the format or its settings do not carry it). A statement
    counts once, however many sub-statements pgAudit logs for it (:func:`begins_statement`).
    """
    ev = events.filter(pl.col(S.ACCOUNT).is_not_null()).with_columns(
        pl.col(S.TIME).dt.truncate(every).alias(WINDOW)
    )
    is_read = pl.col(S.CLASS) == "READ"
    first = pl.concat(
        [
            _first_seen(ev.filter(is_read), pl.col(S.OBJECTS), "object"),
            _first_seen(ev, pl.concat_list(pl.col(S.CLIENT_IP)), "client"),
            _first_seen(ev, pl.concat_list(pl.col(S.APPLICATION)), "app"),
        ]
    )
    if known is not None:
        first = first.join(known, on=[ACCOUNT, "kind", "value"], how="anti")
    new = (
        first.with_columns(pl.col("first_time").dt.truncate(every).alias(WINDOW))
        .group_by(ACCOUNT, WINDOW)
        .agg(
            pl.col("value").filter(pl.col("kind") == kind).sort().alias(f"new_{kind}s_list")
            for kind in ("object", "client", "app")
        )
    )
    read_rows = pl.col(S.ROWS).filter(is_read)
    export_rows = pl.col(S.ROWS).filter(pl.col(S.EXPORT))  # null where the format can't say
    export_key = pl.col("_export_key")
    ev = ev.with_columns(pl.when(pl.col(S.EXPORT)).then(statement_key()).alias("_export_key"))
    activity = ev.group_by(pl.col(S.ACCOUNT).alias(ACCOUNT), WINDOW).agg(
        pl.when(read_rows.is_not_null().any()).then(read_rows.sum()).alias("rows_read"),
        pl.when(pl.col(S.BYTES).filter(is_read).is_not_null().any())
        .then(pl.col(S.BYTES).filter(is_read).sum())
        .alias("bytes_read"),
        (pl.col(S.SUCCESS) & begins_statement()).sum().alias("statements"),
        (~pl.col(S.SUCCESS)).sum().alias("failed"),
        export_key.drop_nulls().n_unique().alias("exports"),
        # exports whose rows the log does not give (pgAudit logs 0 for COPY ... TO) on
        # any of their lines (``COPY (SELECT ...) TO`` counts them on the SELECT's)
        *(
            export_key.filter(known).drop_nulls().unique().alias(name)
            for name, known in (
                ("uncounted_exports", pl.col(S.ROWS).is_null()),  # a list until below
                ("_counted", pl.col(S.ROWS).is_not_null()),
            )
        ),
        pl.col(S.OBJECTS)
        .filter(is_read)
        .explode()
        .drop_nulls()
        .unique()
        .sort()
        .alias("objects_list"),
        pl.when(export_rows.is_not_null().any()).then(export_rows.sum()).alias("export_rows"),
        pl.col(S.OBJECTS)
        .filter(pl.col(S.EXPORT))
        .explode()
        .drop_nulls()
        .unique()
        .sort()
        .alias("export_objects_list"),
        pl.col(S.CLIENT_IP).drop_nulls().unique().sort().alias("clients_list"),
        pl.col(S.APPLICATION).drop_nulls().unique().sort().alias("apps_list"),
        pl.col(S.TIME).max().alias("last_time"),
    )
    joined = activity.join(read_object_rows(ev, every), on=[ACCOUNT, WINDOW], how="left").join(
        new, on=[ACCOUNT, WINDOW], how="left"
    )
    empty_list = pl.lit([], dtype=pl.List(pl.String))
    return (
        joined.with_columns(
            pl.col(OBJECT_ROWS).fill_null(pl.lit([], dtype=OBJECT_ROWS_TYPE)),
            *(
                pl.col(c).fill_null(empty_list)
                for c in ("new_objects_list", "new_clients_list", "new_apps_list")
            ),
        )
        .with_columns(
            (pl.col(WINDOW) + duration(every)).alias("window_end"),
            pl.col("objects_list").list.len().cast(pl.Int64).alias("objects"),
            pl.col("new_objects_list").list.len().cast(pl.Int64).alias("new_objects"),
            pl.col("new_clients_list").list.len().cast(pl.Int64).alias("new_clients"),
            pl.col("new_apps_list").list.len().cast(pl.Int64).alias("new_apps"),
            pl.col("exports").cast(pl.Int64),
            uncounted_exports(pl.col("uncounted_exports"), pl.col("_counted")).alias(
                "uncounted_exports"
            ),
            pl.col("failed").cast(pl.Int64),
            pl.col("statements").cast(pl.Int64),
            pl.col(WINDOW).dt.hour().alias("hour"),
        )
        .drop("_counted")
        .sort(ACCOUNT, WINDOW)
    )


def read_object_rows(
    events: pl.LazyFrame, every: str, judged: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """(account, window start, :data:`OBJECT_ROWS`) of the windows of ``events`` with a
    read that logged its rows: per window, the rows read from each object, sorted by
    object. A statement's rows count for each object it names (a join's rows for each of
    its tables), as they do for the account's own sum. With ``judged`` (account,
    ``object``), only those pairs: the objects a model can judge a drip from."""
    read = (
        events.filter(
            (pl.col(S.CLASS) == "READ")
            & pl.col(S.ROWS).is_not_null()
            & pl.col(S.ACCOUNT).is_not_null()
        )
        .select(
            pl.col(S.ACCOUNT).alias(ACCOUNT),
            pl.col(S.TIME).dt.truncate(every).alias(WINDOW),
            pl.col(S.OBJECTS).alias("object"),
            pl.col(S.ROWS).alias("rows"),
        )
        .explode("object")
        .drop_nulls("object")
    )
    if judged is not None:
        read = read.join(judged, on=[ACCOUNT, "object"], how="semi")
    return (
        read.group_by(ACCOUNT, WINDOW, "object")
        .agg(pl.col("rows").sum())
        .group_by(ACCOUNT, WINDOW)
        .agg(pl.struct("object", "rows").sort_by("object").alias(OBJECT_ROWS))
    )


def object_days(windows: pl.LazyFrame) -> pl.LazyFrame:
    """:data:`OBJECT_DAYS_SCHEMA` rows of ``windows`` (with :data:`OBJECT_ROWS`): each
    account's rows from each object on each calendar day (UTC)."""
    return (
        windows.select(ACCOUNT, pl.col(WINDOW).dt.truncate("1d").alias("day"), OBJECT_ROWS)
        .explode(OBJECT_ROWS)
        .unnest(OBJECT_ROWS)
        .drop_nulls("object")
        .group_by(ACCOUNT, "object", "day")
        .agg(pl.col("rows").sum())
        .select(OBJECT_DAYS_SCHEMA.names())
    )


def object_today(
    windows: pl.LazyFrame,
    floor: int,
    heavy: pl.DataFrame,
    earlier: pl.DataFrame | None = None,
) -> pl.LazyFrame:
    """``windows`` (sorted by account, then window start; with :data:`OBJECT_ROWS`) with
    :data:`OBJECT_TODAY` in place of :data:`OBJECT_ROWS`: each object the account read at
    least ``floor`` rows from on the window's calendar day (UTC) by the window's end,
    whether or not the window read it: its rows that day up to the window's end
    (``today``) and before the window (``before``). Only the windows whose account's
    calendar day's rows (``rows_read_today``) are past its ``rows`` in ``heavy``
    (account, ``rows``: explain.heavy_days) list objects, and only accounts in it: the
    judge looks for an object drip on no other window, and listing every window's
    objects cost a batch of 25,000 windows about 200 MB at its peak
    (docs/evaluation.md). ``earlier`` (:data:`OBJECT_DAYS_SCHEMA`) holds the rows of each
    day's windows before these (the live service's earlier closes of the day)."""
    day = pl.col(WINDOW).dt.truncate("1d").alias("day")
    today_rows = col_name("rows_read", TODAY)
    ours = heavy.lazy().select(ACCOUNT, pl.col("rows").alias("_heavy"))
    windows = windows.join(ours, on=ACCOUNT, how="left", maintain_order="left")
    listed = windows.filter(pl.col(today_rows) > pl.col("_heavy"))
    read = (
        windows.filter(pl.col("_heavy").is_not_null())
        .select(ACCOUNT, WINDOW, OBJECT_ROWS)
        .explode(OBJECT_ROWS)
        .unnest(OBJECT_ROWS)
        .drop_nulls("object")
        .with_columns(day)
    )
    parts = [read.with_columns(pl.lit(False).alias("_earlier"))]
    if earlier is not None and earlier.height:
        # each day's earlier rows as read at its start, before any of these windows
        parts.insert(
            0,
            earlier.lazy().select(
                ACCOUNT,
                pl.col("day").alias(WINDOW),
                "object",
                "rows",
                "day",
                pl.lit(True).alias("_earlier"),
            ),
        )
    # Objects past the floor: each listed window of their day from then on lists them
    # with the day's rows so far (the latest at or before it).
    past = (
        pl.concat(parts, how="vertical_relaxed")
        .sort(ACCOUNT, "object", WINDOW, pl.col("_earlier").not_())
        .with_columns(pl.col("rows").cum_sum().over(ACCOUNT, "object", "day").alias("today"))
        .filter(pl.col("today") >= floor)
        .select(ACCOUNT, "object", "day", WINDOW, "today")
        # a window at midnight: its own sum, not the earlier closes' before it
        .unique([ACCOUNT, "object", WINDOW], keep="last", maintain_order=True)
    )
    grid = (
        listed.select(ACCOUNT, WINDOW)
        .with_columns(day)
        .join(past.select(ACCOUNT, "day", "object").unique(), on=[ACCOUNT, "day"])
        .sort(WINDOW)
        # sorted by window start, as join_asof needs, within each group too
        .join_asof(
            past.sort(WINDOW),
            on=WINDOW,
            by=[ACCOUNT, "day", "object"],
            check_sortedness=False,
        )
        .drop_nulls("today")
        .join(
            read.select(ACCOUNT, WINDOW, "object", "rows"),
            on=[ACCOUNT, WINDOW, "object"],
            how="left",
        )
    )
    summed = grid.group_by(ACCOUNT, WINDOW).agg(
        pl.struct(
            "object", "today", (pl.col("today") - pl.col("rows").fill_null(0)).alias("before")
        )
        .sort_by("object")
        .alias(OBJECT_TODAY)
    )
    return (
        windows.drop(OBJECT_ROWS, "_heavy")
        .join(summed, on=[ACCOUNT, WINDOW], how="left", maintain_order="left")
        .with_columns(pl.col(OBJECT_TODAY).fill_null(pl.lit([], dtype=OBJECT_TODAY_TYPE)))
    )


def statement_key() -> pl.Expr:
    """An event's statement: its session and statement number (the sub-statements and
    relation lines of one statement share it), or its time where the log has neither.
    An export counts once per statement, whatever it names."""
    return pl.coalesce(
        pl.col(S.SESSION) + ":" + pl.col(S.STATEMENT_ID).str.extract(r"^(\d+)", 1),
        pl.col(S.TIME).cast(pl.String),
    )


def begins_statement() -> pl.Expr:
    """True for the event that stands for its client statement: every event but a
    pgAudit statement's later sub-statements (a statement counts once).

    pgAudit numbers the lines it logs for one client statement ``<statement>.1``,
    ``.2``, ... (``query_info.uid``), and numbers only the lines it logs, so each has a
    ``.1``: an ``EXECUTE`` logs its prepared statement's read, then itself; ``COPY
    (SELECT ...) TO`` its SELECT, then the COPY; a function's reads come before its
    caller, ``REFRESH MATERIALIZED VIEW``'s query before it, and an INSERT's own
    foreign-key checks (INTERNAL, one per row) before the INSERT. Known from the event
    alone, so a statement whose lines two reads, chunks or windows split still counts
    once. (A statement that logged its foreign-key checks only, ``pgaudit.log`` without
    WRITE, counts once too: the client sent it.) Other formats have no sub-statements.
    """
    pgaudit = pl.col(S.SOURCE_FORMAT).str.starts_with("pgaudit-")
    first = pl.col(S.STATEMENT_ID).str.ends_with(".1")
    return ~(pgaudit & ~first).fill_null(False)


def uncounted_exports(uncounted: pl.Expr, counted: pl.Expr) -> pl.Expr:
    """How many of the ``uncounted`` keys are not ``counted`` (both lists of distinct
    keys): the size of their union less ``counted``'s. (Not ``list.set_difference``:
    Polars 2.1 panics on a set operation between list columns chunked differently, as
    merged partials are.)"""
    both = pl.concat_list(uncounted, counted).list.unique().list.len()
    return (both - counted.list.len()).cast(pl.Int64)


def duration(every: str) -> pl.Expr:
    """A simple Polars duration string like ``5m`` or ``1d`` as a duration expression.

    Raises ``ValueError`` for anything else.
    """
    n, unit = parse(every)
    match unit:
        case "s":
            return pl.duration(seconds=n)
        case "m":
            return pl.duration(minutes=n)
        case "h":
            return pl.duration(hours=n)
        case "d":
            return pl.duration(days=n)
        case _:
            return pl.duration(weeks=n)


def add_horizons(windows: pl.LazyFrame, horizons: Horizons) -> pl.LazyFrame:
    """Trailing sums of each volume signal over each horizon, ending at the window's end,
    and the calendar day's (UTC) sums so far of the drip volumes (``<signal>_today``).

    ``windows`` must be sorted by account, then window start. The base horizon is the
    window itself. Unknown volume (null) stays null only if it is null over the horizon.

    A window's sum over a horizon is its running total less the running total before the
    first of the account's windows in the horizon, found by a binary search
    (:func:`_account_time`): no work per account. (It collects ``windows``: the sums
    gather from the whole frame's running totals.) The live service carries the same
    sums from close to close instead (:mod:`detector.live.running`).
    """
    key = pl.col("_key")

    def first(since: pl.Expr, side: Literal["left", "right"]) -> pl.Expr:
        return key.search_sorted(key - since, side=side)

    firsts = {h: first(pl.lit(int(span(h).total_seconds())), "right") for h in horizons.longer}
    firsts[TODAY] = first(pl.col(WINDOW).dt.epoch("s") % 86_400, "left")
    located = (
        windows.with_columns(_account_time().alias("_key"))
        .with_columns(start.alias(f"_from_{h}") for h, start in firsts.items())
        .with_columns(_running_totals(VOLUME))
        .collect()
    )

    def summed(signal: str, h: str) -> pl.Expr:
        # the running totals at the window less those just before the horizon's first
        # window (the totals there less its own value)
        start = located[f"_from_{h}"]
        total, known, value = (
            located[f"_total_{signal}"],
            located[f"_known_{signal}"],
            located[signal],
        )
        total_before = total.gather(start) - value.fill_null(0).gather(start)
        known_before = known.gather(start) - value.is_not_null().cast(pl.Int64).gather(start)
        return (
            pl.when(pl.col(f"_known_{signal}") > pl.lit(known_before))
            .then(pl.col(f"_total_{signal}") - pl.lit(total_before))
            .alias(col_name(signal, h))
        )

    # A signal at a time: its sums' operands are held only while it is summed.
    for signal in VOLUME:
        located = located.with_columns(
            pl.col(signal).alias(col_name(signal, horizons.base)),
            *(summed(signal, h) for h in horizons.longer),
        )
    located = located.with_columns(summed(signal, TODAY) for signal in DRIP)
    temporary = ["_key", *(f"_from_{h}" for h in firsts), *_running_names(VOLUME)]
    return located.drop(*temporary).lazy()


def _account_time() -> pl.Expr:
    """A window's account (its rank in a frame sorted by account) and start in seconds,
    as one integer: in a frame sorted by account, then window start, it is sorted, and
    an account's windows from a given time on begin where a binary search finds it."""
    return pl.col(ACCOUNT).rle_id().cast(pl.Int64) * _ACCOUNT_STRIDE + pl.col(WINDOW).dt.epoch("s")


# Seconds from 1970 to beyond the year 2500: room for 2**29 accounts in an Int64 key.
_ACCOUNT_STRIDE: Final = 2**34


def _running_names(signals: Sequence[str]) -> list[str]:
    return [f"_{kind}_{signal}" for signal in signals for kind in ("total", "known")]


def _running_totals(signals: Sequence[str]) -> list[pl.Expr]:
    """Per signal, its running total over the frame (nulls as 0) and its running count
    of known (not null) values: ``_total_<signal>`` and ``_known_<signal>``."""
    return [
        expr
        for signal in signals
        for expr in (
            pl.col(signal).fill_null(0).cum_sum().alias(f"_total_{signal}"),
            pl.col(signal).is_not_null().cast(pl.Int64).cum_sum().alias(f"_known_{signal}"),
        )
    ]


def discount_alerted(windows: pl.LazyFrame, alerted: pl.Expr, horizons: Horizons) -> pl.LazyFrame:
    """Horizon sums without the volume up to the account's latest *earlier* window for
    which ``alerted`` is true: what an alert already showed.

    Volume that raised an alert should not raise another in every window of the next
    day whose 24-hour sum still contains it, nor should a day's sum that an alert showed
    at twice the account's largest alert again each time it wobbles back over the bound.
    Later windows' sums start again after the alert. A window's own volume always counts.
    ``windows`` must be sorted by account, then window start. Each signal's running total
    (``<signal>__running``) is used where given (the live service's: its alerts' 0, its
    new windows' the volume since the alert before them: :mod:`detector.live.running`).
    """
    names = set(windows.collect_schema().names())
    row = pl.int_range(pl.len(), dtype=pl.UInt32)
    account = pl.col(ACCOUNT).rle_id()
    # the account's latest alerted window before this one (null before any)
    latest = pl.when(alerted).then(row).forward_fill().shift(1)
    marked = windows.with_columns(latest.alias("_alert")).with_columns(
        pl.when(account.gather(pl.col("_alert").fill_null(0)) == account)
        .then(pl.col("_alert"))
        .alias("_alert")
    )

    def since_alert(signal: str) -> pl.Expr:  # a difference of two running totals
        given = f"{signal}__running"
        running = pl.col(given) if given in names else pl.col(signal).fill_null(0).cum_sum()
        return (running - running.gather(pl.col("_alert"))).alias(f"_since_{signal}")

    exprs: list[pl.Expr] = []
    for signal in VOLUME:
        since = pl.col(f"_since_{signal}")
        for h in horizons.longer:
            c = col_name(signal, h)
            exprs.append(
                pl.when(since.is_not_null() & pl.col(c).is_not_null())
                .then(pl.min_horizontal(pl.col(c), since))
                .otherwise(pl.col(c))
                .alias(c)
            )
    return (
        marked.with_columns(since_alert(signal) for signal in VOLUME)
        .with_columns(exprs)
        .drop("_alert", *(f"_since_{signal}" for signal in VOLUME))
    )


def alerted_levels(
    windows: pl.LazyFrame,
    alerted: pl.Expr,
    horizons: Horizons,
    signals: Sequence[str] = ALERT_LEVELS,
) -> pl.LazyFrame:
    """Per window, the largest sum of each signal over each horizon that an *earlier*
    window of the account was alerted with, within the longest horizon (null: none):
    ``<column>__alerted``.

    What an alert showed an analyst is no news at the same level a few hours later: an
    account that took on new work (a role change) alerts the first day it reads at its
    new volumes, not on every day it does it again. Going beyond what was alerted, or
    coming back after the longest horizon, alerts again. ``windows`` must be sorted by
    account, then window start. An earlier window's ``<column>__level``, where not null,
    is the sum it was alerted with (the live service's history is too short to sum a
    3-day horizon again for a window 2 days old).
    """
    back = horizons.longer[-1] if horizons.longer else horizons.base
    names = set(windows.collect_schema().names())

    def level(c: str) -> pl.Expr:  # as alerted at the time, if given (``<c>__level``)
        return pl.coalesce(f"{c}__level", c) if f"{c}__level" in names else pl.col(c)

    return windows.with_columns(
        pl.when(alerted)
        .then(level(c))
        .rolling_max_by(WINDOW, window_size=back, closed="left")
        .over(ACCOUNT)
        .alias(f"{c}__alerted")
        for c in horizon_columns(horizons, signals)
    )


UNSHOWN: Final = "_unshown"  # see unshown_objects
UNSHOWN_EXPORTS: Final = "_unshown_exports"
_ANY_OBJECT: Final = "\u0000*"  # an alert whose objects are not known showed them all


def unshown_objects(windows: pl.LazyFrame, alerted: pl.Expr, horizons: Horizons) -> pl.LazyFrame:
    """Per window, the objects it reads (``_unshown``) and those it exports
    (``_unshown_exports``) that no *earlier* window of the account for which ``alerted``
    is true read within the longest horizon (sorted; empty for none).

    An alert's volume holds back the next alert at the same level (:func:`alerted_levels`),
    but only for what it showed: the same pull of the same tables again is no news; a
    pull of another table the next day is the leak going on, table by table, and alerts
    at the same size. An alerted window whose ``objects_list`` is null (its objects not
    kept: levels saved by an older trovewatch) counts as having shown every object.
    """
    back = horizons.longer[-1] if horizons.longer else horizons.base
    marked = windows.with_columns(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), alerted.alias("_shows")
    )
    shown = (
        marked.filter("_shows")
        .select(
            ACCOUNT,
            pl.col(WINDOW).alias("_shown_at"),
            pl.col("objects_list").fill_null(pl.lit([_ANY_OBJECT])).alias("_object"),
        )
        .explode("_object")
        .drop_nulls("_object")
        .sort("_shown_at")
    )

    def used(column: str, exported: bool) -> pl.LazyFrame:
        return marked.select(
            "_row",
            ACCOUNT,
            WINDOW,
            pl.col(column).alias("_object"),
            pl.lit(exported).alias("_export"),
        ).explode("_object")

    every = pl.col("_object") == _ANY_OBJECT
    sentinel = marked.select("_row", ACCOUNT, WINDOW, pl.lit(_ANY_OBJECT).alias("_object"))
    looked_up = (
        pl.concat(
            [
                used("objects_list", False),
                used("export_objects_list", True),
                sentinel.with_columns(pl.lit(False).alias("_export")),
            ]
        )
        .drop_nulls("_object")
        .sort(WINDOW)
        .join_asof(
            shown,
            left_on=WINDOW,
            right_on="_shown_at",
            by=[ACCOUNT, "_object"],
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
    )
    within = (pl.col("_shown_at") >= pl.col(WINDOW) - span(back)).fill_null(False)
    news = ~within & ~every
    per_window = looked_up.group_by("_row").agg(
        pl.col("_object").filter(news & ~pl.col("_export")).sort().alias(UNSHOWN),
        pl.col("_object").filter(news & pl.col("_export")).sort().alias(UNSHOWN_EXPORTS),
        (within & every).any().alias("_all_shown"),
    )
    none = pl.lit([], dtype=pl.List(pl.String))
    return (
        marked.join(per_window, on="_row", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("_all_shown").fill_null(False))
            .then(none)
            .otherwise(pl.col(c).fill_null(none))
            .alias(c)
            for c in (UNSHOWN, UNSHOWN_EXPORTS)
        )
        .drop("_row", "_shows", "_all_shown")
    )


def earlier_days(windows: pl.LazyFrame, horizons: Horizons, columns: Sequence[str]) -> pl.LazyFrame:
    """Per account and day, the largest of each column on the account's earlier days
    within the longest horizon (never the day itself): ``<column>__earlier``, null
    without such a day. Sorted by account and day.

    What an account training never saw has shown it does: its own history so far. Only
    as far back as the live service keeps windows, so batch and live agree.

    Example, with 3 days: an account's days 1, 2, 6 and 8 (of one month) look back to
    nothing, day 1, nothing, and day 6.
    """
    back = span(horizons.longer[-1] if horizons.longer else horizons.base)
    # An account has one row per day, so its earlier days within ``back`` are among the
    # ``lags`` rows before each: a shift per lag over whole columns, not a rolling
    # window per account (the live engine's 100,000 new accounts took 15-18 s so). Each
    # lag's test and shifted columns are built once, as columns: within one expression
    # per column the plan ran 3x slower.
    lags = range(1, back // timedelta(days=1) + 1)
    day = pl.col("day")
    within = [
        ((pl.col(ACCOUNT).shift(lag) == pl.col(ACCOUNT)) & (day.shift(lag) >= day - back)).alias(
            f"_within_{lag}"
        )
        for lag in lags
    ]
    shifted = [
        pl.when(f"_within_{lag}").then(pl.col(c).shift(lag)).alias(f"_{c}_{lag}")
        for lag in lags
        for c in columns
    ]

    def earlier(column: str) -> pl.Expr:
        if not lags:  # no earlier day within the longest horizon
            return pl.when(pl.lit(False)).then(pl.col(column)).alias(f"{column}__earlier")
        return pl.max_horizontal(f"_{column}_{lag}" for lag in lags).alias(f"{column}__earlier")

    return (
        windows.with_columns(pl.col(WINDOW).dt.truncate("1d").alias("day"))
        .group_by(ACCOUNT, "day")
        .agg(pl.col(c).max() for c in columns)
        .sort(ACCOUNT, "day")
        .with_columns(within)
        .with_columns(shifted)
        .select(ACCOUNT, "day", *[earlier(c) for c in columns])
    )


def _log2_ratio(value: pl.Expr, reference: pl.Expr) -> pl.Expr:
    """log2((value + 1) / (reference + 1)); +1 keeps zero history finite."""
    return ((value.cast(pl.Float64) + 1.0) / (reference.cast(pl.Float64) + 1.0)).log(2)


def add_relative(
    windows: pl.LazyFrame,
    horizons: Horizons,
    account_max: pl.LazyFrame,
    peer_ref: pl.LazyFrame,
    hours: pl.LazyFrame,
    peers: pl.LazyFrame,
    placed: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Add each signal relative to the account's history and to its peers' (log2 ratios).

    ``account_max``: account and, per signal and horizon, the largest value in training;
    with a ``day`` column, the largest before that day (see :func:`history_max`), so
    training windows are compared with their past only, as new windows will be.
    ``peer_ref``: peer group and the same columns: the typical (median) account's largest.
    ``hours``: account, hour and ``share`` of its training windows in that hour (±1 hour).
    ``peers``: account -> peer group. Accounts without history get their peers' values
    as their own; ``placed`` gives their windows' groups (account, window start, peer
    group: :meth:`detector.profile.Profile.place`); the rest fall back to the population
    (group ``*``).
    A window's hour rarity is -log10 of the share of the account's windows in its hour.
    """
    cols = [col_name(s, h) for s in RELATIVE for h in horizons.all]
    with_group = windows.join(peers, on=ACCOUNT, how="left")
    if placed is not None:
        with_group = (
            with_group.join(
                placed.rename({"peer_group": "_placed"}), on=[ACCOUNT, WINDOW], how="left"
            )
            .with_columns(pl.coalesce("peer_group", "_placed").alias("peer_group"))
            .drop("_placed")
        )
    with_group = with_group.with_columns(pl.col("peer_group").fill_null("*"))
    own_key = [ACCOUNT]
    if "day" in account_max.collect_schema().names():
        with_group = with_group.with_columns(pl.col(WINDOW).dt.truncate("1d").alias("day"))
        own_key = [ACCOUNT, "day"]
    own = account_max.select(*own_key, "has_history", *cols).rename({c: f"{c}__own" for c in cols})
    # Only the references: a group's member list joined onto every window would be
    # copied into each (the population's lists every account: GBs at 50,000 windows).
    peer = peer_ref.select("peer_group", *[pl.col(c).alias(f"{c}__peer") for c in cols])
    # Only these windows' accounts' hours: joined whole, the 24 rows of each of 100,000
    # trained accounts cost a batch of 5,000 windows 0.45 s and 440 MB at its peak
    # (the in-memory engine's join), more than the rest of judging it.
    their_hours = hours.join(windows.select(ACCOUNT).unique(), on=ACCOUNT, how="semi")
    joined = (
        with_group.join(own, on=own_key, how="left")
        .join(peer, on="peer_group", how="left")
        .join(their_hours, on=[ACCOUNT, "hour"], how="left")
        .join(
            hours.filter(pl.col(ACCOUNT) == "*").drop(ACCOUNT).rename({"share": "peer_share"}),
            on="hour",
            how="left",
        )
    )
    has_history = pl.col("has_history").fill_null(False)
    exprs: list[pl.Expr] = []
    for c in cols:
        peer_ref_c = pl.col(f"{c}__peer")
        own_ref_c = pl.when(has_history).then(pl.col(f"{c}__own")).otherwise(peer_ref_c)
        # A volume the log does not carry stays unknown (null), not "as usual" or "none".
        value = pl.col(c) if c.startswith(UNKNOWABLE) else pl.col(c).fill_null(0)
        exprs.append(_log2_ratio(value, own_ref_c.fill_null(0)).alias(f"{c}_vs_own"))
        exprs.append(_log2_ratio(value, peer_ref_c.fill_null(0)).alias(f"{c}_vs_peers"))
    share = (
        pl.when(has_history)
        .then(pl.col("share").fill_null(0.0))
        .otherwise(pl.col("peer_share").fill_null(0.0))
    )
    least = 10.0**-HOUR_RARITY_CAP
    exprs.append((-(share.clip(lower_bound=least)).log10()).alias("hour_rarity"))
    exprs.append(
        (-(pl.col("peer_share").fill_null(0.0).clip(lower_bound=least)).log10()).alias(
            "hour_rarity_peers"
        )
    )
    exprs.append(has_history.alias("has_history"))
    return (
        joined.with_columns(exprs)
        .drop([f"{c}__own" for c in cols] + [f"{c}__peer" for c in cols] + ["share", "peer_share"])
        .drop("day", strict=False)
    )


def others_max(windows: pl.LazyFrame, horizons: Horizons) -> pl.LazyFrame:
    """Per account and day, the largest value of each signal on the account's *other* days.

    Training windows are compared with the account's profile without their own day
    (leave one day out), so they are judged as a new day will be against the whole
    profile. Compared with a profile that includes them, they could never look unusual.
    Accounts seen on a single day have no other days: absent here, they fall back to
    their peers.
    """
    cols = horizon_columns(horizons)
    daily = (
        windows.with_columns(pl.col(WINDOW).dt.truncate("1d").alias("day"))
        .group_by(ACCOUNT, "day")
        .agg(pl.col(c).max().fill_null(0) for c in cols)
    )
    n_days = pl.len().over(ACCOUNT)
    exprs = []
    for c in cols:
        top = pl.col(c).max().over(ACCOUNT)
        # The second largest is the largest when the top value is shared by two days.
        second = pl.col(c).sort(descending=True).get(1, null_on_oob=True).over(ACCOUNT)
        is_top = (pl.col(c) == top) & (pl.col(c).filter(pl.col(c) == top).len().over(ACCOUNT) == 1)
        exprs.append(pl.when(is_top).then(second).otherwise(top).alias(c))
    return daily.filter(n_days > 1).select(
        ACCOUNT, "day", pl.lit(True).alias("has_history"), *exprs
    )


def model_features(horizons: Horizons, *, volume: bool = True) -> list[str]:
    """The columns the isolation forest sees, in order.

    Few and strong on purpose: an isolation forest picks features at random, so a
    signal spread over many near-duplicate columns (one per horizon) gets diluted.
    Each relative signal enters once, as its largest value over the horizons. Only
    relative signals and novelty go in: absolute sizes would make the backup job's
    nightly dump look rare, when for the backup account it is the norm.

    ``volume=False`` leaves out the volume features, for logs that carry no row or
    byte counts at all (MongoDB's audit log, MariaDB's audit log alone): a forest fed
    a constant stand-in would treat "unknown" as "nothing moved".
    """
    del horizons  # the same names whatever the horizons; kept for symmetry with callers
    return [
        *(VOLUME_FEATURES if volume else ()),
        "exports_vs_own",
        "exports_vs_peers",
        "statements_vs_own",
        "objects_vs_own",
        "failed_vs_own",
        "new_objects_log",
        "new_objects_day_log",
        "new_client_seen",
        "new_app_seen",
        "hour_rarity",
    ]


def add_model_inputs(windows: pl.LazyFrame, horizons: Horizons) -> pl.LazyFrame:
    """The model's columns (see :func:`model_features`) from the horizon and relative ones."""
    day = "1d" if "1d" in horizons.all else horizons.longer[-1]

    def largest(signals: Sequence[str], versus: str) -> pl.Expr:
        return pl.max_horizontal(
            pl.col(f"{col_name(s, h)}_vs_{versus}") for s in signals for h in horizons.all
        )

    def log1p(name: str) -> pl.Expr:
        return pl.col(name).fill_null(0).cast(pl.Float64).log1p()

    base = horizons.base
    return windows.with_columns(
        largest(("rows_read", "bytes_read"), "own").alias("volume_vs_own"),
        largest(("rows_read", "bytes_read"), "peers").alias("volume_vs_peers"),
        largest(("exports",), "own").alias("exports_vs_own"),
        largest(("exports",), "peers").alias("exports_vs_peers"),
        largest(("statements",), "own").alias("statements_vs_own"),
        largest(("objects",), "own").alias("objects_vs_own"),
        pl.col(f"{col_name('failed', base)}_vs_own").alias("failed_vs_own"),
        # Every object is new to an account training never saw: not a sign by itself.
        pl.when(pl.col("has_history"))
        .then(log1p("new_objects"))
        .otherwise(0.0)
        .alias("new_objects_log"),
        pl.when(pl.col("has_history"))
        .then(log1p(col_name("new_objects", day)))
        .otherwise(0.0)
        .alias("new_objects_day_log"),
        # Nor is a new account's first client address or application.
        pl.when(pl.col("has_history"))
        .then(pl.col("new_clients").clip(upper_bound=1).cast(pl.Float64))
        .otherwise(0.0)
        .alias("new_client_seen"),
        pl.when(pl.col("has_history"))
        .then(pl.col("new_apps").clip(upper_bound=1).cast(pl.Float64))
        .otherwise(0.0)
        .alias("new_app_seen"),
    )


def horizon_columns(horizons: Horizons, signals: Sequence[str] = RELATIVE) -> list[str]:
    return [col_name(s, h) for s in signals for h in horizons.all]


def weekday_columns() -> list[str]:
    """The calendar-day sums kept per day of the week, for the quiet-day drip rule
    (``rows_read_today``, ``bytes_read_today``)."""
    return [col_name(s, TODAY) for s in DRIP]
