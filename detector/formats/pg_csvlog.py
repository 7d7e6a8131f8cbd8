"""PostgreSQL ``csvlog`` carrying pgAudit records.

The columns are fixed per server version: 23 up to 12, 24 with ``backend_type`` (13),
26 with ``leader_pid`` and ``query_id`` (14+). Records may span lines (quoted newlines);
a record's line number is that of its first physical line.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl
from polars.exceptions import PolarsError

from detector.formats import pgaudit
from detector.formats.base import Parsed
from detector.reader import Chunk
from detector.rejects import Reason, rejects

COLUMNS: Final = [
    "log_time", "user_name", "database_name", "process_id", "connection_from",
    "session_id", "session_line_num", "command_tag", "session_start_time",
    "virtual_transaction_id", "transaction_id", "error_severity", "sql_state_code",
    "message", "detail", "hint", "internal_query", "internal_query_pos", "context",
    "query", "query_pos", "location", "application_name", "backend_type", "leader_pid",
    "query_id",
]  # fmt: skip
MIN_COLUMNS: Final = 23
# A csvlog record starts with its timestamp: chunks are only cut before such a line.
RECORD_START: Final = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_SNIFF: Final = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [^,]*,("[^"]*"|[^,]*),')


class PgCsvlog:
    name = "pgaudit-csvlog"
    record_start = RECORD_START

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        return bool(lines) and _SNIFF.match(lines[0]) is not None and lines[0].count(",") >= 22

    def parse(self, chunk: Chunk) -> Parsed:
        try:
            table = pl.read_csv(
                chunk.text.encode(),
                has_header=False,
                infer_schema=False,
                truncate_ragged_lines=True,
                raise_if_empty=False,
            )
        except PolarsError:
            # Unbalanced quoting can make the whole chunk unreadable as CSV: every line is
            # then judged on its own, as a one-line record.
            return self._per_line(chunk)
        if table.width == 0:
            return Parsed(events=pgaudit.to_events(_empty_records(), self.name).events)
        table = table.rename(dict(zip(table.columns, COLUMNS, strict=False)))
        for name in COLUMNS[table.width :]:
            table = table.with_columns(pl.lit(None, pl.String).alias(name))
        physical = 1 + pl.sum_horizontal(
            pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in COLUMNS
        )
        table = table.with_columns(
            (pl.lit(chunk.first_line) + physical.cum_sum() - physical)
            .cast(pl.UInt64)
            .alias("line_no"),
            pl.concat_str(
                [pl.col(c).fill_null("") for c in COLUMNS[:MIN_COLUMNS]], separator=","
            ).alias("line"),
        )
        short = rejects(table, pl.col("message").is_null(), Reason.TRUNCATED)
        records = table.filter(pl.col("message").is_not_null()).select(
            "line_no",
            "line",
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
        parsed = pgaudit.to_events(records, self.name)
        parsed.rejects = pl.concat([short, parsed.rejects]).sort("line_no")
        return parsed

    def _per_line(self, chunk: Chunk) -> Parsed:
        lines = chunk.lines
        ok = lines.filter(pl.col("line").str.contains(_SNIFF.pattern))
        bad = rejects(lines, ~pl.col("line").str.contains(_SNIFF.pattern), Reason.UNRECOGNISED)
        parts = [bad]
        events = []
        for line_no, line in ok.select("line_no", "line").iter_rows():
            sub = self.parse(Chunk(chunk.path, line, line_no)) if '"' in line else None
            if sub is None or sub.events.is_empty() and sub.rejects.is_empty():
                parts.append(rejects(pl.DataFrame({"line_no": [line_no], "line": [line]}),
                                     pl.lit(True), Reason.TRUNCATED))
                continue
            events.append(sub.events)
            parts.append(sub.rejects)
        return Parsed(
            events=pl.concat(events) if events else pgaudit.to_events(_empty_records(), self.name).events,
            rejects=pl.concat(parts).sort("line_no"),
        )


def _empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=pgaudit.RECORD_COLUMNS)
