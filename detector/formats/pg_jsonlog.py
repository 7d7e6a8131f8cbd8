"""PostgreSQL ``jsonlog`` (15+) carrying pgAudit records. Keys are omitted when empty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import polars as pl
from polars.exceptions import PolarsError

from detector.formats import pgaudit
from detector.formats.base import Parsed
from detector.formats.jsonlines import decode_lines
from detector.reader import Chunk
from detector.rejects import empty_rejects, with_raw_lines

JSONLOG: Final = pl.Struct(
    {
        "timestamp": pl.String,
        "user": pl.String,
        "dbname": pl.String,
        "pid": pl.Int64,
        "remote_host": pl.String,
        "session_id": pl.String,
        "error_severity": pl.String,
        "message": pl.String,
        "statement": pl.String,
        "application_name": pl.String,
        "backend_type": pl.String,
        "leader_pid": pl.Int64,
    }
)

SCHEMA: Final = dict(JSONLOG.to_schema())
FAST_BATCH_ROWS: Final = 250_000


class NotClean(Exception):
    """The fast path met a line to reject; read the file with the exact path instead."""


class PgJsonlog:
    name = "pgaudit-jsonlog"
    finish = staticmethod(pgaudit.finish)

    def __init__(self, timezone: str | None = None) -> None:
        self.timezone = timezone  # the server's log_timezone, if told

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        return bool(lines) and all(
            s.lstrip().startswith("{") and '"error_severity"' in s and '"timestamp"' in s
            for s in lines[:5]
        )

    def fast_batches(self, path: Path) -> Iterator[Parsed]:
        """The whole file through Polars' streaming NDJSON reader, batch by batch.

        The fast path for clean input (plain or gzip). It raises :class:`NotClean` as soon
        as a batch has anything to reject, and Polars' own error on a line that is not
        JSON: the caller then reads the file again with :meth:`parse`, which isolates bad
        lines and numbers them exactly (this reader skips blank lines, so its row numbers
        are only line numbers for clean input).
        """
        scan = pl.scan_ndjson(path, schema=SCHEMA).with_row_index("line_no", offset=1)
        for batch in scan.collect_batches(chunk_size=FAST_BATCH_ROWS):
            parsed = self._records_to_events(batch.with_columns(pl.col("line_no").cast(pl.UInt64)))
            if parsed.rejects.height:
                raise NotClean(path)
            yield parsed

    def parse(self, chunk: Chunk) -> Parsed:
        decoded, bad = self._decode(chunk)
        parsed = self._records_to_events(decoded)
        parsed.rejects = with_raw_lines(
            pl.concat([bad, parsed.rejects]).sort("line_no"), lambda: chunk.lines
        )
        return parsed

    def _records_to_events(self, decoded: pl.DataFrame) -> Parsed:
        no_fields = pgaudit.missing_fields(decoded, ["timestamp", "message", "error_severity"])
        records = decoded
        if no_fields.height:  # the usual record has them all: no pass to take none out
            records = decoded.filter(~pl.col("line_no").is_in(no_fields["line_no"].implode()))
        records = records.select(
            "line_no",
            pl.col("timestamp").alias("ts"),
            "user",
            "dbname",
            "pid",
            "remote_host",
            "application_name",
            "session_id",
            "backend_type",
            "leader_pid",
            pl.col("error_severity").alias("severity"),
            "message",
            "statement",
        )
        parsed = pgaudit.to_events(records, self.name, timezone=self.timezone)
        parsed.rejects = pl.concat([no_fields, parsed.rejects])
        return parsed

    @staticmethod
    def _decode(chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Decoded records with line numbers, and rejects.

        Clean input is read in one call of Polars' NDJSON reader. Input it cannot read
        whole (a bad line, a blank line) takes the line-by-line path, which isolates the
        bad lines.
        """
        try:
            whole = pl.read_ndjson(chunk.data, schema=SCHEMA)
        except PolarsError:
            whole = None
        if whole is not None and whole.height == chunk.n_lines:
            return whole.with_row_index("line_no", offset=chunk.first_line).with_columns(
                pl.col("line_no").cast(pl.UInt64)
            ), empty_rejects()
        return decode_lines(chunk.lines, JSONLOG)
