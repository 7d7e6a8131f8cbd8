"""Mergeable partial aggregates of account-windows: events in, a few numbers and sets out.

:func:`features.window_activity` needs every event of a window at once. A stream (the
live engine) or a chunked batch run sees a window's events in pieces; instead of keeping
the events it keeps one **partial** row per (account, base window) and folds each new
piece into it:

>>> p = merge(partial(first_chunk, "5m"), partial(second_chunk, "5m"))  # doctest: +SKIP
>>> to_activity(p, "5m", known)  # == window_activity(first + second, "5m", known)  # doctest: +SKIP

A partial row holds sums (statements, failed, rows and bytes read, export rows; null
while no event carried the volume), the newest event time, and sets as lists of distinct
strings: export statement keys, objects read, objects exported, client addresses and
application names; and the rows read from each object (:data:`features.OBJECT_ROWS`, a
sum per object). Every part is a sum, a max or a set union, so :func:`merge` is
associative and commutative: any split of the events, aggregated and merged in any
order, gives the same partials. Which values are *new* to an account is decided only by
:func:`to_activity` (a value is new in the earliest window holding it, unless ``known``),
so it is the same however the events were split.

The events given to :func:`partial` are the ones :func:`features.window_activity` would
get: statements already merged (:func:`ingest.merge_split_statements`) and complementary
logs already joined (:func:`formats.join`). Their order does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import polars as pl

from detector import features as F
from detector import schema as S

KEYS: Final = (F.ACCOUNT, F.WINDOW)
SUMS: Final = ("statements", "failed")  # never null
KNOWABLE: Final = ("rows_read", "bytes_read", "export_rows")  # null: no event carried it
SETS: Final = (
    "export_keys",
    # exports with a line whose rows the log does not give (pgAudit's COPY ... TO), and
    # with a line that gives them (``COPY (SELECT ...) TO``'s SELECT): uncounted are the
    # first without the second
    "uncounted_export_keys",
    "counted_export_keys",
    "objects_list",
    "export_objects_list",
    "clients_list",
    "apps_list",
)
_STRINGS: Final = pl.List(pl.String)
SCHEMA: Final = pl.Schema(
    {
        F.ACCOUNT: pl.String(),
        F.WINDOW: pl.Datetime("us", "UTC"),
        "statements": pl.Int64(),
        "failed": pl.Int64(),
        "rows_read": pl.Int64(),
        "bytes_read": pl.Int64(),
        "export_rows": pl.Int64(),
        **{name: _STRINGS for name in SETS},
        "last_time": pl.Datetime("us", "UTC"),
        F.OBJECT_ROWS: F.OBJECT_ROWS_TYPE,
    }
)
_NEW: Final = {"object": "objects_list", "client": "clients_list", "app": "apps_list"}
SHARDS: Final = 8  # groups of accounts a Fold keeps apart


def empty() -> pl.DataFrame:
    """Partials of no events."""
    return pl.DataFrame(schema=SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Partials as saved by this or an older trovewatch, in :data:`SCHEMA`: a set an
    older one did not keep (``uncounted_export_keys``, ``counted_export_keys``) is empty,
    and so are the rows per object (:data:`features.OBJECT_ROWS`) it did not keep."""
    missing = [name for name in SETS if name not in frame.columns]
    if F.OBJECT_ROWS not in frame.columns:
        frame = frame.with_columns(pl.lit([], dtype=F.OBJECT_ROWS_TYPE).alias(F.OBJECT_ROWS))
    return (
        frame.with_columns(pl.lit([], dtype=_STRINGS).alias(name) for name in missing)
        .select(SCHEMA.names())
        .cast(SCHEMA)
    )


def _known_sum(values: pl.Expr) -> pl.Expr:
    """Sum of the non-null values; null when there are none (unknown, not zero)."""
    return pl.when(values.is_not_null().any()).then(values.sum())


def _distinct(values: pl.Expr) -> pl.Expr:
    return values.explode().drop_nulls().unique()


def partial(
    events: pl.DataFrame | pl.LazyFrame, every: str, judged: pl.LazyFrame | None = None
) -> pl.DataFrame:
    """One partial row per (account, window of length ``every``) with events.

    ``events`` have the event schema (at least the columns ``window_activity`` reads);
    events without an account are left out, as ``window_activity`` leaves them out.
    With ``judged`` (account, ``object``), the rows per object
    (:data:`features.OBJECT_ROWS`) keep only those pairs (:func:`features.read_object_rows`).
    """
    is_read = pl.col(S.CLASS) == "READ"
    read_rows = pl.col(S.ROWS).filter(is_read)
    read_bytes = pl.col(S.BYTES).filter(is_read)
    windows = (
        pl.col(S.ACCOUNT).alias(F.ACCOUNT),
        pl.col(S.TIME).dt.truncate(every).alias(F.WINDOW),
    )
    events = events.lazy().filter(pl.col(S.ACCOUNT).is_not_null())
    # Exports are few: their statement keys are made for them alone, not for every event.
    counted = pl.col(S.ROWS).is_not_null()
    exports = (
        events.filter(pl.col(S.EXPORT))
        .with_columns(F.statement_key().alias("_statement"))
        .group_by(*windows)
        .agg(
            _known_sum(pl.col(S.ROWS)).alias("export_rows"),
            pl.col("_statement").unique().alias("export_keys"),
            pl.col("_statement").filter(~counted).unique().alias("uncounted_export_keys"),
            pl.col("_statement").filter(counted).unique().alias("counted_export_keys"),
            _distinct(pl.col(S.OBJECTS)).alias("export_objects_list"),
        )
    )
    none = pl.lit([], dtype=_STRINGS)
    export_sets = ("export_keys", "uncounted_export_keys", "counted_export_keys")
    return (
        events.group_by(*windows)
        .agg(
            (pl.col(S.SUCCESS) & F.begins_statement()).sum().cast(pl.Int64).alias("statements"),
            (~pl.col(S.SUCCESS)).sum().cast(pl.Int64).alias("failed"),
            _known_sum(read_rows).alias("rows_read"),
            _known_sum(read_bytes).alias("bytes_read"),
            _distinct(pl.col(S.OBJECTS).filter(is_read)).alias("objects_list"),
            pl.col(S.CLIENT_IP).drop_nulls().unique().alias("clients_list"),
            pl.col(S.APPLICATION).drop_nulls().unique().alias("apps_list"),
            pl.col(S.TIME).max().alias("last_time"),
        )
        .join(exports, on=list(KEYS), how="left")
        .join(F.read_object_rows(events, every, judged), on=list(KEYS), how="left")
        .with_columns(
            *(pl.col(c).fill_null(none) for c in (*export_sets, "export_objects_list")),
            pl.col(F.OBJECT_ROWS).fill_null(pl.lit([], dtype=F.OBJECT_ROWS_TYPE)),
        )
        .select(SCHEMA.names())
        # Strings gathered from the events share the events' string buffers (Polars'
        # string views), and a few hundred windows would keep a whole chunk's strings
        # alive: each copied into buffers of its own, a part costs what it holds.
        .pipe(_owning)
        .collect()
        .cast(SCHEMA)
    )


def _owning(partials: pl.LazyFrame) -> pl.LazyFrame:
    """``partials`` with their strings (account, sets) copied into buffers of their own.

    A Polars string is a view into a buffer, and filtering, grouping or concatenating
    frames copies the views, not the bytes: a frame keeps alive every buffer its strings
    came from, however few of their bytes it still uses (``estimated_size`` counts only
    those)."""
    return partials.with_columns(
        pl.col(F.ACCOUNT) + "",
        *(pl.col(c).list.eval(pl.element() + "") for c in SETS),
        pl.col(F.OBJECT_ROWS).list.eval(
            pl.struct(pl.element().struct.field("object") + "", pl.element().struct.field("rows"))
        ),
    )


def merge(*parts: pl.DataFrame) -> pl.DataFrame:
    """Partials of all the events behind ``parts``: one row per (account, window)."""
    return merge_all(parts)


def merge_all(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """:func:`merge` of any number of partial frames."""
    frames = [p for p in parts if p.height]
    if not frames:
        return empty()
    if len(frames) == 1:
        return frames[0]
    # Most windows are in one part only (a part is a stretch of the log): they are taken
    # as they are, and only windows in several parts are grouped, sets exploded and all.
    both = pl.concat(frames, how="vertical").with_columns(
        pl.struct(*KEYS).is_duplicated().alias("_shared")
    )
    shared = pl.col("_shared")
    merged = (
        both.lazy()
        .filter(shared)
        .group_by(*KEYS)
        .agg(
            *(pl.col(c).sum() for c in SUMS),
            *(_known_sum(pl.col(c)).alias(c) for c in KNOWABLE),
            *(_distinct(pl.col(c)).alias(c) for c in SETS),
            pl.col("last_time").max(),
        )
        .join(_summed_object_rows(both.lazy().filter(shared)), on=list(KEYS), how="left")
        .with_columns(pl.col(F.OBJECT_ROWS).fill_null(pl.lit([], dtype=F.OBJECT_ROWS_TYPE)))
        .select(SCHEMA.names())
    )
    return pl.concat([both.lazy().filter(~shared).drop("_shared"), merged]).collect()


def _summed_object_rows(parts: pl.LazyFrame) -> pl.LazyFrame:
    """(account, window, :data:`features.OBJECT_ROWS`) of the partial rows ``parts``:
    each window's rows per object summed over its rows, sorted by object."""
    return (
        parts.select(*KEYS, F.OBJECT_ROWS)
        .explode(F.OBJECT_ROWS)
        .unnest(F.OBJECT_ROWS)
        .drop_nulls("object")
        .group_by(*KEYS, "object")
        .agg(pl.col("rows").sum())
        .group_by(*KEYS)
        .agg(pl.struct("object", "rows").sort_by("object").alias(F.OBJECT_ROWS))
    )


class Fold:
    """Partials folded in as they come, for a fold that lives long: the live engine's open
    windows (and those changed since its last checkpoint).

    The rows are kept in :data:`SHARDS` groups of accounts (by a hash of the name), each a
    list of frames merged into one once it holds more than ``merge_after``. A merge then
    rewrites one group's rows at a time, never all the open windows at once: merging
    100,000 accounts' open windows with eight reads' parts took 124 MB of working memory
    for 25 MB of partials in one piece, 57 in eight (``docs/benchmarks.md``, "Open
    windows merged in shards").

    A merged group's strings are copied into buffers of its own (:func:`_owning`):
    merged as views, they kept every part's buffers alive until their window closed,
    65 MB of an open window's 1 MB of partials at 2,000 lines/s (``docs/benchmarks.md``,
    "Soak").
    """

    def __init__(self, merge_after: int) -> None:
        self.merge_after = merge_after
        self._shards: list[list[pl.DataFrame]] = [[] for _ in range(SHARDS)]

    def add(self, part: pl.DataFrame) -> None:
        """Fold in ``part`` (partials, any rows)."""
        if part.is_empty():
            return
        shard = (pl.col(F.ACCOUNT).hash() % SHARDS).alias("_shard")
        pieces = part.with_columns(shard).partition_by("_shard", include_key=False, as_dict=True)
        for (number,), piece in pieces.items():
            frames = self._shards[int(number)]
            frames.append(piece)
            if len(frames) > self.merge_after:
                frames[:] = [merged_owning(frames)]

    @property
    def frames(self) -> list[pl.DataFrame]:
        """The frames held: together the partials folded in, a window maybe in several."""
        return [frame for frames in self._shards for frame in frames]

    @property
    def height(self) -> int:
        """Rows held: at least the (account, window) pairs folded in."""
        return sum(frame.height for frame in self.frames)

    def merged(self) -> pl.DataFrame:
        """The partials folded in, one row per (account, window); each group is merged in
        turn, and kept merged."""
        for frames in self._shards:
            if len(frames) > 1:
                frames[:] = [merged_owning(frames)]
        return pl.concat([empty(), *self.frames])

    def take(self, rows: pl.Expr) -> pl.DataFrame:
        """Remove the partials whose rows match ``rows`` (an expression over a partial's
        columns, e.g. its window) and return them merged, one row per (account, window)."""
        taken = [empty()]
        for frames in self._shards:
            merged = merge_all(frames)
            taken.append(merged.filter(rows))
            kept = merged.filter(~rows)
            frames[:] = [_owning(kept.lazy()).collect()] if kept.height else []
        return pl.concat(taken)

    def copy(self) -> Fold:
        """Another fold of the same partials (the frames are shared: Polars frames are
        not changed in place)."""
        other = Fold(self.merge_after)
        other._shards = [list(frames) for frames in self._shards]
        return other


def merged_owning(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """:func:`merge_all` of ``frames``, owning its strings (:func:`_owning`): the
    parts it came from, and the buffers of the logs they were parsed from, can go."""
    return _owning(merge_all(frames).lazy()).collect()


def known(partials: pl.DataFrame) -> pl.DataFrame:
    """(account, kind, value), sorted: the objects each account read, its clients and
    applications, in the events behind ``partials`` (``profile.known``'s shape)."""
    return (
        pl.concat(
            [
                partials.lazy()
                .select(F.ACCOUNT, pl.lit(kind).alias("kind"), pl.col(column).alias("value"))
                .explode("value")
                for kind, column in _NEW.items()
            ]
        )
        .drop_nulls()
        .unique()
        .sort(F.ACCOUNT, "kind", "value")
        .collect()
    )


def to_activity(
    partials: pl.DataFrame, every: str, known: pl.LazyFrame | pl.DataFrame | None = None
) -> pl.DataFrame:
    """The rows :func:`features.window_activity` gives for the events behind ``partials``
    (one row per account and window, sorted by account, then window start).

    ``known``: (account, kind, value) already seen, as for ``window_activity``; a value
    not known is new in the earliest of these windows that holds it.
    """
    long = pl.concat(
        [
            partials.lazy()
            .select(*KEYS, pl.col(column).alias("value"), pl.lit(kind).alias("kind"))
            .explode("value")
            .drop_nulls("value")
            for kind, column in _NEW.items()
        ]
    )
    first = long.group_by(F.ACCOUNT, "kind", "value").agg(pl.col(F.WINDOW).min())
    if known is not None:
        first = first.join(known.lazy(), on=[F.ACCOUNT, "kind", "value"], how="anti")
    new = first.group_by(*KEYS).agg(
        pl.col("value").filter(pl.col("kind") == kind).sort().alias(f"new_{kind}s_list")
        for kind in _NEW
    )
    empty_list = pl.lit([], dtype=_STRINGS)
    return (
        partials.lazy()
        .select(
            *KEYS,
            "rows_read",
            "bytes_read",
            "statements",
            "failed",
            pl.col("export_keys").list.len().cast(pl.Int64).alias("exports"),
            F.uncounted_exports(
                pl.col("uncounted_export_keys"), pl.col("counted_export_keys")
            ).alias("uncounted_exports"),
            pl.col("objects_list").list.sort(),
            "export_rows",
            pl.col("export_objects_list").list.sort(),
            pl.col("clients_list").list.sort(),
            pl.col("apps_list").list.sort(),
            "last_time",
            F.OBJECT_ROWS,
        )
        .join(new, on=list(KEYS), how="left")
        .with_columns(
            pl.col(c).fill_null(empty_list)
            for c in ("new_objects_list", "new_clients_list", "new_apps_list")
        )
        .with_columns(
            (pl.col(F.WINDOW) + F.duration(every)).alias("window_end"),
            pl.col("objects_list").list.len().cast(pl.Int64).alias("objects"),
            pl.col("new_objects_list").list.len().cast(pl.Int64).alias("new_objects"),
            pl.col("new_clients_list").list.len().cast(pl.Int64).alias("new_clients"),
            pl.col("new_apps_list").list.len().cast(pl.Int64).alias("new_apps"),
            pl.col(F.WINDOW).dt.hour().alias("hour"),
        )
        .sort(*KEYS)
        .collect()
    )
