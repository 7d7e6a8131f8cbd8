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
from detector.rejects import Reason, rejects, with_raw_lines

COLUMNS: Final = [
    "log_time", "user_name", "database_name", "process_id", "connection_from",
    "session_id", "session_line_num", "command_tag", "session_start_time",
    "virtual_transaction_id", "transaction_id", "error_severity", "sql_state_code",
    "message", "detail", "hint", "internal_query", "internal_query_pos", "context",
    "query", "query_pos", "location", "application_name", "backend_type", "leader_pid",
    "query_id",
]  # fmt: skip
# A csvlog record starts with its timestamp: chunks are only cut before such a line.
RECORD_START: Final = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_SNIFF: Final = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [^,]*,("[^"]*"|[^,]*),')


class PgCsvlog:
    name = "pgaudit-csvlog"
    finish = staticmethod(pgaudit.finish)
    record_start = RECORD_START

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        return bool(lines) and _SNIFF.match(lines[0]) is not None and lines[0].count(",") >= 22

    def parse(self, chunk: Chunk) -> Parsed:
        try:
            # A fixed width: the first row (maybe a stray line) must not decide it.
            table = pl.read_csv(
                chunk.data,
                has_header=False,
                schema=dict.fromkeys(COLUMNS, pl.String),
                missing_columns="insert",
                truncate_ragged_lines=True,
                raise_if_empty=False,
            )
        except PolarsError:
            # Unbalanced quoting can make the whole chunk unreadable as CSV: every line is
            # then judged on its own, as a one-line record.
            return self._per_record(chunk)
        if table.width == 0:
            return Parsed(events=pgaudit.to_events(_empty_records(), self.name).events)
        physical = 1 + pl.sum_horizontal(
            pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in COLUMNS
        )
        table = table.with_columns(
            (pl.lit(chunk.first_line) + physical.cum_sum() - physical)
            .cast(pl.UInt64)
            .alias("line_no"),
        )
        blank = pl.all_horizontal(pl.col(c).is_null() for c in COLUMNS)
        table = table.filter(~blank)
        short = rejects(table, pl.col("message").is_null(), Reason.TRUNCATED)
        records = table.filter(pl.col("message").is_not_null()).select(
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
        parsed = pgaudit.to_events(records, self.name)
        found = pl.concat([short, parsed.rejects]).sort("line_no")
        parsed.rejects = with_raw_lines(found, lambda: chunk.lines)
        return parsed

    def _per_record(self, chunk: Chunk) -> Parsed:
        """The slow path for a chunk Polars cannot read as CSV (broken quoting).

        Each line starting with a timestamp begins a record; every record is read on its
        own, so one broken record is rejected without taking its neighbours with it.
        """
        lines = chunk.lines.with_columns(
            pl.col("line").str.contains(_SNIFF.pattern).alias("_start")
        ).with_columns(pl.col("_start").cum_sum().alias("_rec"))
        orphans = rejects(lines, pl.col("_rec") == 0, Reason.UNRECOGNISED)
        records = (
            lines.filter(pl.col("_rec") > 0)
            .group_by("_rec", maintain_order=True)
            .agg(pl.col("line_no").first(), pl.col("line").str.join("\n"))
        )
        events, found, context = [], [orphans], 0
        for line_no, text in records.select("line_no", "line").iter_rows():
            try:
                pl.read_csv(text.encode(), has_header=False, infer_schema=False)
            except PolarsError:
                found.append(
                    rejects(
                        pl.DataFrame({"line_no": [line_no], "line": [text]}),
                        pl.lit(True),
                        Reason.TRUNCATED,
                    )
                )
                continue
            sub = self.parse(Chunk(chunk.path, text.encode(), line_no))
            events.append(sub.events)
            found.append(sub.rejects)
            context += sub.context
        return Parsed(
            events=pl.concat(events)
            if events
            else pgaudit.to_events(_empty_records(), self.name).events,
            rejects=pl.concat(found).sort("line_no"),
            context=context,
        )


def _empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=pgaudit.RECORD_COLUMNS)
