"""Cursors: the objects a ``FETCH`` (or ``MOVE``) reads, which pgAudit does not name.

A ``FETCH`` is given the objects its cursor was declared over (:func:`fetch_objects`):
its session's ``DECLARE`` of that name before it, in the same events or in those before
(:func:`declared_cursors`), as a chunk, a batch or a file may end between the two.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.formats.pg_text import IDENT, LEADING


def no_cursors() -> pl.DataFrame:
    """An empty table of declared cursors (:func:`declared_cursors`)."""
    return pl.DataFrame(
        schema={S.SESSION: pl.String, "_cursor": pl.String, "_cursor_objects": pl.List(pl.String)}
    )


def declared_cursors(events: pl.DataFrame, earlier: pl.DataFrame) -> pl.DataFrame:
    """The cursors ``events`` declare over objects, after those of ``earlier``: one row per
    (session, cursor), the last declaration winning."""
    declared = _declarations(events).drop("_pos")
    if declared.is_empty():
        return earlier
    return pl.concat([earlier, declared]).unique([S.SESSION, "_cursor"], keep="last")


def _declarations(events: pl.DataFrame) -> pl.DataFrame:
    """Each ``DECLARE`` over objects in ``events``: session, cursor, objects, and its
    position in ``events`` (``_pos``)."""
    return (
        events.with_row_index("_pos")
        .filter(pl.col(S.QUERY).str.contains(_DECLARE_START))
        .select(
            S.SESSION,
            pl.col(S.QUERY).str.extract(_CURSOR_NAME, 1).str.to_lowercase().alias("_cursor"),
            pl.col(S.OBJECTS).alias("_cursor_objects"),
            pl.col("_pos").cast(pl.Int64),
        )
        .filter(pl.col("_cursor_objects").list.len() > 0)
    )


def fetch_objects(events: pl.DataFrame, cursors: pl.DataFrame) -> pl.DataFrame:
    """``events`` with each ``FETCH`` (or ``MOVE``) given the objects of its cursor: of
    its session's latest ``DECLARE`` of that name before it in ``events``, else in
    ``cursors`` (:func:`declared_cursors` of the events before); none if neither has it.
    A session may declare a cursor name again once it has closed it."""
    if not events.select(pl.col(S.QUERY).str.contains(_FETCH_START).any()).item():
        return events  # the usual case; the full pattern and the join cost a pass each
    known = pl.concat(
        [cursors.with_columns(pl.lit(-1, pl.Int64).alias("_pos")), _declarations(events)]
    )
    fetch_cursor = pl.col(S.QUERY).str.extract(_FETCH_CURSOR, 1).str.to_lowercase()
    joined = (
        events.with_row_index("_pos")
        .with_columns(pl.col("_pos").cast(pl.Int64), fetch_cursor.alias("_cursor"))
        .join_asof(
            known, on="_pos", by=[S.SESSION, "_cursor"], strategy="backward", check_sortedness=False
        )
    )
    is_fetch = pl.col("_cursor").is_not_null()
    return joined.with_columns(
        pl.when(is_fetch & pl.col("_cursor_objects").is_not_null())
        .then(pl.col("_cursor_objects"))
        .when(is_fetch)
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col(S.OBJECTS))
        .alias(S.OBJECTS)
    ).drop("_pos", "_cursor", "_cursor_objects")


_FETCH_START: Final = rf"(?i)^{LEADING}(?:FETCH|MOVE)\b"
_DECLARE_START: Final = rf"(?i)^{LEADING}DECLARE\s"
_CURSOR_NAME: Final = rf"(?i)^{LEADING}DECLARE\s+({IDENT})"
# ``FETCH [direction] [FROM | IN] cursor``: FROM and IN are optional (``FETCH 20 c``).
_DIRECTION: Final = r"(?:NEXT|PRIOR|FIRST|LAST|ALL|FORWARD|BACKWARD|ABSOLUTE|RELATIVE|[+-]?\d+)"
_FETCH_CURSOR: Final = (
    rf"(?i)^{LEADING}(?:FETCH|MOVE)\b(?:.*?\b(?:FROM|IN)\s+|\s+(?:{_DIRECTION}\s+)*)"
    rf"({IDENT})\s*;?\s*$"
)
