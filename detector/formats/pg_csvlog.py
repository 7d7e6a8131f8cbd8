"""PostgreSQL ``csvlog`` carrying pgAudit records.

The columns are fixed per server version: 23 up to 12, 24 with ``backend_type`` (13),
26 with ``leader_pid`` and ``query_id`` (14+). Records may span lines (quoted newlines);
a record's line number is that of its first physical line.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Final

import polars as pl
from polars.exceptions import PolarsError

from detector.formats import pgaudit
from detector.formats.base import Parsed, read_halving
from detector.reader import Chunk
from detector.rejects import Reason, empty_rejects, rejects, with_raw_lines

COLUMNS: Final = [
    "log_time", "user_name", "database_name", "process_id", "connection_from",
    "session_id", "session_line_num", "command_tag", "session_start_time",
    "virtual_transaction_id", "transaction_id", "error_severity", "sql_state_code",
    "message", "detail", "hint", "internal_query", "internal_query_pos", "context",
    "query", "query_pos", "location", "application_name", "backend_type", "leader_pid",
    "query_id",
]  # fmt: skip
# The columns the parser reads.
USED: Final = [
    "log_time", "user_name", "database_name", "process_id", "connection_from",
    "session_id", "error_severity", "message", "query", "application_name",
    "backend_type", "leader_pid",
]  # fmt: skip
# A csvlog record starts with its timestamp: chunks are only cut before such a line.
# (Matched at a line's start by the chunk reader: a ``^`` would match only at the start
# of its buffer, and the whole file would be one chunk.)
RECORD_START: Final = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_STARTS: Final = "^" + RECORD_START.pattern.decode()
_SNIFF: Final = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [^,]*,("[^"]*"|[^,]*),')


class PgCsvlog:
    name = "pgaudit-csvlog"
    finish = staticmethod(pgaudit.finish)
    record_start = RECORD_START

    def __init__(self, timezone: str | None = None) -> None:
        self.timezone = timezone  # the server's log_timezone, if told

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        if not lines or _SNIFF.match(lines[0]) is None:
            return False
        # The first record's fields, however many lines its statement takes: a rotation
        # may begin a file with a multi-line statement's AUDIT record.
        first = next(csv.reader(io.StringIO("\n".join(lines))))
        return len(first) >= len(COLUMNS) - 3  # 23 columns up to PostgreSQL 12

    def parse(self, chunk: Chunk) -> Parsed:
        fast = _one_line_records(chunk)
        if fast is not None:  # the usual case: no record to segment, nothing to reject
            table, bad = fast, empty_rejects()
        else:
            table, bad = _segmented(chunk)
        short = rejects(table, pl.col("message").is_null(), Reason.TRUNCATED)
        rows = table.filter(pl.col("message").is_not_null()).select(
            "line_no",
            pl.col("log_time").alias("ts"),
            pl.col("user_name").alias("user"),
            pl.col("database_name").alias("dbname"),
            pl.col("process_id").cast(pl.Int64, strict=False).alias("pid"),
            pl.col("connection_from").str.replace(r":\d+$", "").alias("remote_host"),
            "application_name",
            "session_id",
            "backend_type",
            pl.col("leader_pid").cast(pl.Int64, strict=False),
            pl.col("error_severity").alias("severity"),
            "message",
            pl.col("query").alias("statement"),
        )
        parsed = pgaudit.to_events(rows, self.name, timezone=self.timezone)
        found = pl.concat([bad, short, parsed.rejects]).sort("line_no")
        parsed.rejects = with_raw_lines(found, lambda: chunk.lines)
        return parsed


def _segmented(chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The chunk's records (found by :func:`_segment`) as csvlog rows with ``line_no``,
    and the lines rejected: stray lines, and records Polars does not read as one row
    each (read together, halved around broken ones: :func:`base.read_halving`)."""
    records, bad = _segment(chunk)
    read_ok, broken = read_halving(
        records,
        lambda batch: _read_csv(
            batch.select(pl.col("text").str.join("\n")).item().encode() + b"\n"
        ),
    )
    good = [table.with_columns(batch["line_no"]) for batch, table in read_ok]
    if not good:  # the columns _read_csv gives, no rows
        empty = pl.DataFrame(schema=dict.fromkeys(USED, pl.String))
        good.append(empty.with_columns(records["line_no"].clear()))
    return pl.concat(good), pl.concat([bad, rejects(broken, pl.lit(True), Reason.TRUNCATED)])


def _read_csv(data: bytes) -> pl.DataFrame | None:
    """``data`` as csvlog rows of text (the columns :data:`USED`), or None when Polars
    cannot read it as CSV. The width is fixed: a first row (maybe a stray line) must not
    decide it."""
    try:
        return (
            pl.scan_csv(
                data,
                has_header=False,
                schema=dict.fromkeys(COLUMNS, pl.String),
                missing_columns="insert",
                truncate_ragged_lines=True,
                raise_if_empty=False,
            )
            .select(USED)  # the other columns are split off but not built: half the CPU
            .collect()
        )
    except PolarsError:
        return None


def _one_line_records(chunk: Chunk) -> pl.DataFrame | None:
    """The chunk read as CSV in one call when each of its lines is one whole record (the
    usual case), with ``line_no``; None when that is not certain, for :func:`_segment`.

    A record continued over lines (or a blank line) makes fewer rows than lines; a line
    not starting with a timestamp is stray; only the last line's quotes are left to
    check, since an open quote anywhere else would have joined two lines.
    """
    data = chunk.data
    last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
    if b"\r" in data or last.count(b'"') % 2:
        return None
    table = _read_csv(data)
    if table is None:
        return None
    starts = pl.col("log_time").str.contains(_STARTS).fill_null(False)
    if table.height != chunk.n_lines or not table.select(starts.all()).item():
        return None
    return table.with_columns(
        pl.int_range(pl.len(), dtype=pl.UInt64).alias("line_no") + chunk.first_line
    )


def _segment(chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The chunk's records (``line_no`` of their first line, ``text``) and stray lines.

    A record starts with its timestamp and goes on over the next lines only while one of
    its quoted fields is open (a statement with newlines). A line outside any record is
    rejected on its own, and a record whose quote never closes is rejected whole, so one
    broken line cannot swallow the records after it. Blank lines are skipped.
    """
    start = pl.col("line").str.contains(_STARTS)
    quotes = pl.col("line").str.count_matches('"', literal=True)
    lines = chunk.lines.with_columns(start.alias("_start"), quotes.alias("_q")).with_columns(
        pl.col("_start").cum_sum().alias("_rec")
    )
    open_before = ((pl.col("_q").cum_sum() - pl.col("_q")) % 2 == 1).over("_rec")
    closed = (~pl.col("_start") & ~open_before).cast(pl.Int32).cum_sum().over("_rec") > 0
    lines = lines.with_columns(
        ((pl.col("_rec") > 0) & (pl.col("_start") | ~closed)).alias("_member")
    )
    stray = lines.filter(~pl.col("_member") & (pl.col("line").str.strip_chars() != ""))
    members = lines.filter(pl.col("_member"))
    if members.height == members["_start"].sum():  # every record is one line
        records = members.select(
            "line_no", pl.col("line").alias("text"), pl.col("_q").alias("_quotes")
        )
    else:
        records = members.group_by("_rec", maintain_order=True).agg(
            pl.col("line_no").first(),
            pl.col("line").str.join("\n").alias("text"),
            pl.col("_q").sum().alias("_quotes"),
        )
    unclosed = pl.col("_quotes") % 2 == 1
    bad = pl.concat(
        [
            rejects(stray, pl.lit(True), Reason.UNRECOGNISED),
            rejects(records.rename({"text": "line"}), unclosed, Reason.TRUNCATED),
        ]
    )
    return records.filter(~unclosed).select("line_no", "text"), bad
