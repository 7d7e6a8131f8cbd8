"""Snowflake's ``SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY`` and ``ACCESS_HISTORY`` views,
exported as CSV (with a header) or NDJSON (``OBJECT_CONSTRUCT(*)``); see
``detector.formats.snowflake_export`` for the two shapes and ``docs/formats-snowflake.md``.

* ``snowflake-query-history``: one event per statement: account ``USER_NAME``, class from
  ``QUERY_TYPE``, failures (``EXECUTION_STATUS`` FAIL/INCIDENT) as ERROR, rows and bytes
  from the view's counters, duration ``TOTAL_ELAPSED_TIME``. The view names no objects:
  reads and failures get the tables their text names after FROM/JOIN.
* ``snowflake-access-history``: one event per statement with its objects (the base
  objects it read, the objects it modified), no volume.

:func:`join_access` gives each query-history statement the objects of its access-history
row (same ``QUERY_ID``), so one account's two exports make one event per statement.
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

import polars as pl

from detector import schema as S
from detector.formats import mariadb
from detector.formats.base import Parsed
from detector.formats.snowflake_export import (
    DDL_OBJECT,
    OBJECTS,
    QUERY_ID,
    Export,
    looks_like,
    utc_time,
)
from detector.reader import Chunk
from detector.rejects import Reason, rejects

DB_SYSTEM: Final = "snowflake"
QUERY_HISTORY: Final = "snowflake-query-history"
ACCESS_HISTORY: Final = "snowflake-access-history"

_QH_TEXT: Final = (
    "QUERY_ID", "QUERY_TEXT", "DATABASE_NAME", "SCHEMA_NAME", "QUERY_TYPE", "SESSION_ID",
    "USER_NAME", "EXECUTION_STATUS", "START_TIME",
)  # fmt: skip
_QH_NUMBERS: Final = (
    "TOTAL_ELAPSED_TIME", "BYTES_WRITTEN_TO_RESULT", "ROWS_PRODUCED", "ROWS_INSERTED",
    "ROWS_UPDATED", "ROWS_DELETED", "ROWS_UNLOADED", "OUTBOUND_DATA_TRANSFER_BYTES",
)  # fmt: skip
_AH_OBJECTS: Final = ["DIRECT_OBJECTS_ACCESSED", "BASE_OBJECTS_ACCESSED", "OBJECTS_MODIFIED"]

_READ_TYPES: Final = [
    "SELECT", "SHOW", "DESCRIBE", "DESCRIBE_QUERY", "EXPLAIN", "LIST_FILES", "UNLOAD", "GET_FILES",
]  # fmt: skip
_WRITE_TYPES: Final = [
    "INSERT", "UPDATE", "DELETE", "MERGE", "MULTI_TABLE_INSERT", "COPY", "TRUNCATE_TABLE",
    "PUT_FILES", "REMOVE_FILES",
]  # fmt: skip
# COPY INTO <location> is UNLOAD; GET downloads staged files to the client.
EXPORT_TYPES: Final = ["UNLOAD", "GET_FILES"]
# Statements on staged files: their row counts are files, not rows.
_FILE_TYPES: Final = ["GET_FILES", "PUT_FILES", "LIST_FILES", "REMOVE_FILES"]
_ROLE_TYPE: Final = r"^(?:GRANT|REVOKE)|^(?:CREATE|ALTER|DROP|RENAME)_(?:USER|ROLE)(?:_|$)"
_DDL_TYPE: Final = r"^(?:CREATE|ALTER|DROP|RENAME|UNDROP)(?:_|$)"
_EXPORT_TEXT: Final = r"(?is)^\s*(?:COPY\s+INTO\s+(?:@|'[a-z0-9]+://)|GET\s+@)"
_NOT_DATA: Final = ["FUNCTION", "PROCEDURE"]  # object domains that hold no rows

# Snowflake names: unquoted identifiers are stored upper case, quoted ones as written.
_IDENT: Final = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_NAMED: Final = rf"(?i)\b(?:FROM|JOIN)\s+{_IDENT}(?:\s*\.\s*{_IDENT}){{0,2}}\s*\(?"
_NOT_TABLES: Final = ["SELECT", "TABLE", "LATERAL", "VALUES", "IDENTIFIER"]


class _View:
    """An export of one view: read by :class:`Export`, made events by ``_events``."""

    name: str
    columns: ClassVar[dict[str, pl.DataType]]
    time: str  # the column with the statement's start
    numbers: tuple[str, ...] = ()
    any_of: frozenset[str] | None = None  # one of these columns is needed to sniff the view

    def __init__(self) -> None:
        self._export = Export(self.columns)

    @property
    def record_start(self) -> re.Pattern[bytes] | None:
        """Where a chunk may be cut: before a CSV record's first field (see ``Export``)."""
        return self._export.record_start

    def sniff(self, head: list[str]) -> bool:
        return looks_like(head, {"QUERY_ID", self.time, "USER_NAME"}, self.any_of)

    def configure(self, head: list[str]) -> None:
        self._export.configure(head)

    def parse(self, chunk: Chunk) -> Parsed:
        rows, bad, headers = self._export.read(chunk)
        rows, unusable = _usable(rows, self._export, self.time, self.numbers)
        events = self._events(rows).with_columns(
            pl.lit(DB_SYSTEM).alias(S.DB_SYSTEM), pl.lit(self.name).alias(S.SOURCE_FORMAT)
        )
        return Parsed(
            events=S.conform(events.lazy()).sort(S.TIME, maintain_order=True).collect(),
            rejects=pl.concat([bad, unusable]).sort("line_no"),
            context=headers,
        )

    def _events(self, rows: pl.DataFrame) -> pl.DataFrame:
        raise NotImplementedError


class QueryHistory(_View):
    """``--format snowflake-query-history``."""

    name = QUERY_HISTORY
    columns: ClassVar[dict[str, pl.DataType]] = dict.fromkeys(
        [*_QH_TEXT, *_QH_NUMBERS], pl.String()
    )
    time = "START_TIME"
    numbers = _QH_NUMBERS

    def _events(self, rows: pl.DataFrame) -> pl.DataFrame:
        return _query_events(rows)


class AccessHistory(_View):
    """``--format snowflake-access-history``."""

    name = ACCESS_HISTORY
    columns: ClassVar[dict[str, pl.DataType]] = {
        "QUERY_ID": pl.String(),
        "QUERY_START_TIME": pl.String(),
        "USER_NAME": pl.String(),
        **dict.fromkeys(_AH_OBJECTS, OBJECTS),
        "OBJECT_MODIFIED_BY_DDL": DDL_OBJECT,
    }
    time = "QUERY_START_TIME"
    any_of = frozenset(_AH_OBJECTS)

    def _events(self, rows: pl.DataFrame) -> pl.DataFrame:
        return _access_events(rows)


def _usable(
    rows: pl.DataFrame, export: Export, time: str, numbers: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows that make events, with their time (``_t``, UTC), and the rejects.

    A row needs a query id (of Snowflake's form), an account and a time. In a CSV export
    a row without a query id is not a record of the view (``unrecognised``) and one with
    an id but missing fields was cut short (``truncated``); a JSON object lacking them is
    ``not_audit``. A time or a number that does not parse is a ``bad_field``.
    """
    text = [pl.col(c).str.strip_chars().replace("", None) for c in ["QUERY_ID", time, "USER_NAME"]]
    missing = pl.any_horizontal(c.is_null() for c in text)
    id_ok = pl.col("QUERY_ID").str.strip_chars().str.contains(f"^{QUERY_ID}$").fill_null(False)
    if export.shape == "ndjson":
        found = [
            rejects(rows, missing, Reason.NOT_AUDIT),
            rejects(rows, ~missing & ~id_ok, Reason.BAD_FIELD),
        ]
    else:
        found = [
            rejects(rows, ~id_ok, Reason.UNRECOGNISED),
            rejects(rows, id_ok & missing, Reason.TRUNCATED),
        ]
    rows = rows.filter(id_ok & ~missing).with_columns(utc_time(pl.col(time)).alias("_t"))
    bad_number = pl.any_horizontal(
        pl.lit(False),
        *(
            pl.col(n).str.strip_chars().replace("", None).is_not_null()
            & pl.col(n).str.strip_chars().cast(pl.Float64, strict=False).is_null()
            for n in numbers
        ),
    )
    bad = pl.col("_t").is_null() | bad_number
    found.append(rejects(rows, bad, Reason.BAD_FIELD))
    return rows.filter(~bad), pl.concat(found)


def _count(name: str) -> pl.Expr:
    text = pl.col(name).str.strip_chars()
    whole = text.cast(pl.Int64, strict=False)
    return pl.coalesce(whole, text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False))


def query_class(query_type: pl.Expr, text: pl.Expr) -> pl.Expr:
    """READ, WRITE, DDL, ROLE, FUNCTION or MISC from ``QUERY_TYPE`` (from the statement's
    first words when the type is missing or ``UNKNOWN``, as it may be for failures)."""
    t = query_type.str.to_uppercase()
    by_type = (
        pl.when(t.is_in(_READ_TYPES))
        .then(pl.lit("READ"))
        .when(t.is_in(_WRITE_TYPES))
        .then(pl.lit("WRITE"))
        .when(t.str.contains(_ROLE_TYPE))
        .then(pl.lit("ROLE"))
        .when(t.str.contains(_DDL_TYPE) & (t != "ALTER_SESSION"))
        .then(pl.lit("DDL"))
        .when(t == "CALL")
        .then(pl.lit("FUNCTION"))
        .otherwise(pl.lit("MISC"))
    )
    known = t.is_not_null() & (t != "UNKNOWN")
    return pl.when(known).then(by_type).otherwise(mariadb.statement_class(text)).fill_null("MISC")


def _query_events(rows: pl.DataFrame) -> pl.DataFrame:
    t = pl.col("QUERY_TYPE").str.strip_chars().str.to_uppercase()
    text = pl.col("QUERY_TEXT")
    base = query_class(t, text)
    failed = (
        pl.col("EXECUTION_STATUS").str.strip_chars().str.to_uppercase().is_in(["FAIL", "INCIDENT"])
    )
    dml = [_count(c) for c in ("ROWS_INSERTED", "ROWS_UPDATED", "ROWS_DELETED")]
    written = (
        pl.when(pl.all_horizontal(c.is_null() for c in dml))
        .then(None)
        .otherwise(pl.sum_horizontal(dml))
    )
    counted = (
        pl.when(t == "UNLOAD")
        .then(_count("ROWS_UNLOADED"))
        .when(t.is_in(_FILE_TYPES))
        .then(None)
        .when((base == "WRITE") | (t == "CREATE_TABLE_AS_SELECT"))
        .then(written)
        .otherwise(_count("ROWS_PRODUCED"))
    )
    # An unload's files are not a result: the view gives their bytes only when they
    # left for another region or cloud.
    outbound = _count("OUTBOUND_DATA_TRANSFER_BYTES")
    size = (
        pl.when(t == "UNLOAD")
        .then(pl.when(outbound > 0).then(outbound))
        .when(t.is_in(_FILE_TYPES))
        .then(None)
        .otherwise(_count("BYTES_WRITTEN_TO_RESULT"))
    )
    unknown = t.is_null() | (t == "UNKNOWN")
    export = t.is_in(EXPORT_TYPES) | (unknown & text.str.contains(_EXPORT_TEXT))
    events = rows.with_columns(_who()).select(
        pl.col("_t").alias(S.TIME),
        S.ACCOUNT,
        pl.col("DATABASE_NAME").alias(S.DATABASE),
        pl.col("SCHEMA_NAME").alias("_schema"),
        pl.lit([], dtype=pl.List(pl.String)).alias(S.OBJECTS),
        pl.when(failed).then(pl.lit("ERROR")).otherwise(base).alias(S.CLASS),
        t.alias(S.COMMAND),
        text.alias(S.QUERY),
        counted.alias(S.ROWS),
        size.alias(S.BYTES),
        pl.col("TOTAL_ELAPSED_TIME")
        .str.strip_chars()
        .cast(pl.Float64, strict=False)
        .alias(S.DURATION_MS),
        (~failed.fill_null(False)).alias(S.SUCCESS),
        export.fill_null(False).alias(S.EXPORT),
        pl.col("SESSION_ID").str.strip_chars().alias(S.SESSION),
        pl.col("QUERY_ID").str.strip_chars().alias(S.STATEMENT_ID),
    )
    named = _tables_named(events, pl.col(S.CLASS).is_in(["READ", "ERROR"]))
    return named.drop("_schema")


def _who() -> pl.Expr:
    return pl.col("USER_NAME").str.strip_chars().alias(S.ACCOUNT)


def _tables_named(events: pl.DataFrame, where: pl.Expr) -> pl.DataFrame:
    """``events`` whose objects, on the rows ``where`` selects, are the tables their text
    names after FROM and JOIN, as Snowflake would name them: unquoted parts upper case,
    and qualified with the statement's database and schema when the text leaves them out.
    """
    rows = events.with_row_index("_r")
    found = (
        rows.filter(where)
        .select("_r", S.DATABASE, "_schema", pl.col(S.QUERY).str.extract_all(_NAMED).alias("_n"))
        .explode("_n")
        .filter(~pl.col("_n").str.ends_with("("))
        .with_columns(
            pl.col("_n")
            .str.replace(r"(?i)^(?:FROM|JOIN)\s+", "")
            .str.strip_chars()
            .str.replace_all(r"\s*\.\s*", ".")
            .str.split(".")
            .list.eval(
                pl.when(pl.element().str.starts_with('"'))
                .then(pl.element().str.strip_chars('"').str.replace_all('""', '"', literal=True))
                .otherwise(pl.element().str.to_uppercase())
            )
            .alias("_parts")
        )
        .filter(~pl.col("_parts").list.first().is_in(_NOT_TABLES))
    )
    parts = pl.col("_parts").list.len()
    name = pl.col("_parts").list.join(".")
    db, schema = pl.col(S.DATABASE), pl.col("_schema")
    qualified = (
        pl.when((parts == 1) & db.is_not_null() & schema.is_not_null())
        .then(db + "." + schema + "." + name)
        .when((parts == 2) & db.is_not_null())
        .then(db + "." + name)
        .otherwise(name)
    )
    names = found.group_by("_r").agg(qualified.unique(maintain_order=True).alias("_found"))
    return (
        rows.join(names, on="_r", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_found", S.OBJECTS).alias(S.OBJECTS))
        .drop("_r", "_found")
    )


def _names(column: str) -> pl.Expr:
    """The names of a JSON object array's objects that hold data (not functions)."""
    domain = pl.element().struct.field("objectDomain").str.to_uppercase()
    return (
        pl.col(column)
        .list.eval(pl.element().filter(~domain.is_in(_NOT_DATA).fill_null(False)))
        .list.eval(pl.element().struct.field("objectName"))
        .list.drop_nulls()
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )


def _access_events(rows: pl.DataFrame) -> pl.DataFrame:
    read = (
        pl.when(pl.col("BASE_OBJECTS_ACCESSED").is_not_null())
        .then(_names("BASE_OBJECTS_ACCESSED"))
        .otherwise(_names("DIRECT_OBJECTS_ACCESSED"))
    )
    modified = _names("OBJECTS_MODIFIED")
    stages = (
        pl.col("OBJECTS_MODIFIED")
        .list.eval(pl.element().struct.field("objectDomain").str.to_uppercase() == "STAGE")
        .fill_null(pl.lit([], dtype=pl.List(pl.Boolean)))
    )
    ddl = pl.col("OBJECT_MODIFIED_BY_DDL").struct.field("objectName")
    # COPY INTO @stage FROM t writes only to a stage: it reads t out of the account.
    to_stage = (stages.list.len() > 0) & stages.list.all()
    objects = pl.concat_list(read, modified, pl.concat_list(ddl).list.drop_nulls())
    return rows.with_columns(_who()).select(
        pl.col("_t").alias(S.TIME),
        S.ACCOUNT,
        objects.list.unique(maintain_order=True).alias(S.OBJECTS),
        pl.when((modified.list.len() > 0) & ~to_stage)
        .then(pl.lit("WRITE"))
        .when((read.list.len() > 0) | to_stage)
        .then(pl.lit("READ"))
        .when(ddl.is_not_null())
        .then(pl.lit("DDL"))
        .otherwise(pl.lit("MISC"))
        .alias(S.CLASS),
        pl.col("OBJECT_MODIFIED_BY_DDL").struct.field("operationType").alias(S.COMMAND),
        pl.lit(True).alias(S.SUCCESS),
        stages.list.any().alias(S.EXPORT),
        pl.col("QUERY_ID").str.strip_chars().alias(S.STATEMENT_ID),
    )


def join_access(events: pl.DataFrame) -> pl.DataFrame:
    """Query-history events with the objects of their access-history rows.

    An access-history row belongs to the query-history event with the same query id
    (``query_info.uid``): the event takes its objects (when it has any; they replace the
    names read from the text) and its export flag, and the row is dropped. Access rows
    without a query-history event, and query-history events without access rows (failed
    statements, Standard Edition accounts), are kept as they are.
    """
    uid = pl.col(S.STATEMENT_ID)
    is_query = (pl.col(S.SOURCE_FORMAT) == QUERY_HISTORY) & uid.is_not_null()
    is_access = (pl.col(S.SOURCE_FORMAT) == ACCESS_HISTORY) & uid.is_not_null()
    access = events.filter(is_access)
    if access.is_empty() or events.filter(is_query).is_empty():
        return events
    found = access.group_by(S.STATEMENT_ID).agg(
        pl.col(S.OBJECTS).explode().drop_nulls().unique(maintain_order=True).alias("_objects"),
        pl.col(S.EXPORT).any().alias("_export"),
    )
    queried = events.filter(is_query)[S.STATEMENT_ID].implode()
    joined = (
        events.with_columns(pl.when(is_query).then(uid).alias("_key"))
        .join(found.rename({S.STATEMENT_ID: "_key"}), on="_key", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("_objects").list.len() > 0)
            .then(pl.col("_objects"))
            .otherwise(pl.col(S.OBJECTS))
            .alias(S.OBJECTS),
            (pl.col(S.EXPORT) | pl.col("_export").fill_null(False)).alias(S.EXPORT),
        )
    )
    return joined.filter(~(is_access & uid.is_in(queried))).select(events.columns)
