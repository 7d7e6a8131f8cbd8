"""SQL Server and Azure SQL audit records, as two exports (see ``docs/formats-mssql.md``).

``mssql-audit-csv``: the rows of ``sys.fn_get_audit_file(...)`` saved as CSV with their
header (SSMS "Save results as", ``Export-Csv``, a Log Analytics export). The header is
read once by :meth:`MssqlAuditCsv.configure` and kept for the file's later chunks; its
columns may come in any order, and any subset will do that has ``event_time``,
``action_id`` and a principal name. A quoted ``statement`` may span lines.

``mssql-audit-json``: the JSON Azure SQL auditing writes through diagnostic settings, one
per line: an Event Hubs message ``{"records": [{"time", "resourceId", "category":
"SQLSecurityAuditEvents", "operationName": "AuditEvent", "properties": {...}}]}``, one
such record, or a Log Analytics ``AzureDiagnostics`` row with suffixed names
(``event_time_t``, ``action_id_s``, ``response_rows_d``...). Records of other
diagnostic categories in the same stream are context.

The mapping to events (and how rows are counted once per statement) is in
:mod:`detector.formats.mssql`.
"""

from __future__ import annotations

import csv
import re
from typing import Final

import polars as pl
from polars.exceptions import PolarsError

from detector import schema as S
from detector.formats import mssql
from detector.formats.base import Parsed
from detector.formats.jsonlines import decode_lines
from detector.reader import Chunk
from detector.rejects import (
    Reason,
    empty_rejects,
    rejects,
    split_too_long,
    with_raw_lines,
)

# A header name (a suffixed Log Analytics name, a portal export's " [UTC]" too) -> field.
_ALIASES: Final = {**{f: f for f in mssql.FIELDS}, **{v: k for k, v in mssql.SUFFIXED.items()}}
_AUDIT_CATEGORIES: Final = ("SQLSecurityAuditEvents", "DevOpsOperationsAudit")
_DASHES: Final = r"^\s*-+(?:[ ,]+-+)*\s*$"
_ROWS_AFFECTED: Final = r"^\(\d+ rows? affected\)$"
_DATE: Final = r'"?(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d|\d{1,2}/\d{1,2}/\d{4},? \d)'
_ANY_FIELD: Final = r'(?:"(?:[^"\n]|"")*"|[^,"\n]*),'


def _field(name: str) -> str | None:
    key = re.sub(r"\s*\[UTC\]$", "", name.strip().strip('"').lstrip("\ufeff").strip())
    return _ALIASES.get(key)


def _header_of(head: list[str]) -> tuple[int, list[str]] | None:
    """The header's index in ``head`` and its column names, skipping blank lines and the
    ``#TYPE`` line of Windows PowerShell's ``Export-Csv``."""
    for i, line in enumerate(head):
        text = line.lstrip("\ufeff").strip()
        if text and not text.startswith("#TYPE"):
            try:
                return i, next(csv.reader([text]))
            except csv.Error:  # no CSV line (a field past the csv module's limit, say)
                return None
    return None


def _is_audit_header(columns: list[str]) -> bool:
    names = {_field(c) for c in columns}
    return {"event_time", "action_id"} <= names and bool(names & set(mssql.PRINCIPALS))


class MssqlAuditCsv:
    """``--format mssql-audit-csv``."""

    name = mssql.CSV
    finish = staticmethod(mssql.finish)

    def __init__(self) -> None:
        self.columns: list[str] = []
        self.header_line = 0  # 1-based line number of the header in the file
        self.record_start: re.Pattern[bytes] | None = None
        self.starts: str | None = None  # a record's first line, as a Polars regex

    def sniff(self, head: list[str]) -> bool:
        found = _header_of(head)
        return (
            found is not None
            and not head[found[0]].lstrip().startswith("{")
            and _is_audit_header(found[1])
        )

    def configure(self, head: list[str]) -> None:
        """Remember the header, and cut chunks only before a record's first line: its
        ``event_time`` column starts with a date (so a multi-line statement stays in one
        chunk), and its ``sequence_number``, if any, is 1 (so the pieces of a long record
        stay with their first)."""
        found = _header_of(head)
        if found is None:
            return
        self.header_line, self.columns = found[0] + 1, found[1]
        fields = [_field(c) for c in self.columns]
        if "event_time" not in fields:
            return
        at = fields.index("event_time")
        self.starts = "^" + _ANY_FIELD * at + _DATE  # for Polars: no lookahead there
        seq = fields.index("sequence_number") if "sequence_number" in fields else -1
        parts = [
            f"(?={_DATE}){_ANY_FIELD[:-1]}"
            if i == at
            else '"?[01]?"?'
            if i == seq
            else _ANY_FIELD[:-1]
            for i in range(max(at, seq) + 1)
        ]
        self.record_start = re.compile((",".join(parts) + r"(?:,|\r?\n|\r?$)").encode())

    def parse(self, chunk: Chunk) -> Parsed:
        if not self.columns:
            self.configure(chunk.lines["line"].head(20).to_list())
        lines = chunk.lines.filter(pl.col("line_no") > self.header_line)
        records = self._records(lines)
        # Blank lines are dropped; sqlcmd's dashes under the header and its "(n rows
        # affected)" footer are context.
        text = pl.col("line")
        dashes = (pl.col("line_no") == self.header_line + 1) & text.str.contains(_DASHES)
        noise = dashes | text.str.contains(_ROWS_AFFECTED)
        n_noise = records.filter(noise).height
        records = records.filter(~noise & (text.str.strip_chars() != ""))
        records, too_long = split_too_long(records)
        if not self.columns or not _is_audit_header(self.columns):
            unknown = rejects(records, pl.lit(True), Reason.UNRECOGNISED)
            return Parsed(events=S.empty(), rejects=pl.concat([too_long, unknown]).sort("line_no"))
        records, bad = self._complete(records)
        values, unreadable = self._values(records)
        events, found, context = mssql.to_events(values, self.name)
        found = pl.concat([too_long, bad, unreadable, found]).sort("line_no")
        return Parsed(
            events=events,
            rejects=with_raw_lines(found, lambda: chunk.lines),
            context=context + n_noise,
        )

    def _records(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Lines joined into CSV records (a quoted field may hold newlines, blank lines
        too): a line begins a record when it looks like a record's first line, or when
        the quotes before it (since the last such line) are balanced. ``line_no`` is the
        record's first line; ``_q`` its number of quotes."""
        quotes = pl.col("line").str.count_matches('"', literal=True)
        starts = (
            pl.col("line").str.contains(self.starts) if self.starts is not None else pl.lit(False)
        )
        return (
            lines.with_columns(quotes.alias("_q"), starts.alias("_s"))
            .with_columns(pl.col("_s").cum_sum().alias("_f"))
            .with_columns(
                ((pl.col("_q").cum_sum().over("_f") - pl.col("_q")) % 2 == 1).alias("_open")
            )
            .with_columns((pl.col("_s") | ~pl.col("_open")).cum_sum().alias("_rec"))
            .group_by("_rec", maintain_order=True)
            .agg(pl.col("line_no").first(), pl.col("line").str.join("\n"), pl.col("_q").sum())
            .drop("_rec")
        )

    def _complete(self, records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Records with as many fields as the header, and the rejects: an unclosed quote
        or too few fields is ``truncated``, too many ``unrecognised``."""
        unquoted = pl.col("line").str.replace_all(r'"(?:[^"]|"")*"', "")
        n_fields = unquoted.str.count_matches(",", literal=True) + 1
        width = len(self.columns)
        records = records.with_columns(n_fields.alias("_n"))
        unclosed = pl.col("_q") % 2 == 1
        truncated = rejects(records, unclosed | (pl.col("_n") < width), Reason.TRUNCATED)
        extra = rejects(records, ~unclosed & (pl.col("_n") > width), Reason.UNRECOGNISED)
        good = records.filter(~unclosed & (pl.col("_n") == width)).select("line_no", "line")
        return good, pl.concat([truncated, extra])

    def _values(self, records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The records' fields by name (``mssql.FIELDS``, null when the header lacks one)."""
        fields: list[str] = []
        for i, column in enumerate(self.columns):
            field = _field(column)
            fields.append(field if field is not None and field not in fields else f"_other{i}")
        table: pl.DataFrame | None = None
        if records.height:
            text = "\n".join(records["line"].to_list()) + "\n"
            try:
                table = pl.read_csv(
                    text.encode(), has_header=False, new_columns=fields, infer_schema=False,
                    raise_if_empty=False, quote_char='"',
                )  # fmt: skip
            except PolarsError:
                table = None
            if table is not None and table.height != records.height:
                table = None
            if table is None:  # only on input Polars cannot read: record by record
                rows = [next(csv.reader([s]), []) for s in records["line"].to_list()]
                ok = pl.lit(pl.Series([len(r) == len(fields) for r in rows], dtype=pl.Boolean))
                table = pl.DataFrame(
                    [r for r in rows if len(r) == len(fields)], schema=fields, orient="row"
                )
                bad = rejects(records, ~ok, Reason.UNRECOGNISED)
                records = records.filter(ok)
            else:
                bad = empty_rejects()
        else:
            table, bad = pl.DataFrame(schema=dict.fromkeys(fields, pl.String)), empty_rejects()
        table = table.select(pl.all().cast(pl.String))
        values = pl.concat([records.select("line_no", "line"), table], how="horizontal").select(
            "line_no",
            "line",
            *[
                (pl.col(f) if f in fields else pl.lit(None, pl.String)).alias(f)
                for f in mssql.FIELDS
            ],
            pl.lit(None, pl.String).alias("_time"),
            pl.lit(None, pl.String).alias("_server"),
        )
        return values, bad


_PROPERTIES: Final = pl.Struct(dict.fromkeys(mssql.FIELDS, pl.String))
_RECORD_FIELDS: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "time": pl.String,
    "category": pl.String,
    "resourceId": pl.String,
    "LogicalServerName": pl.String,
    "properties": _PROPERTIES,
    # Log Analytics (AzureDiagnostics) rows, and records flattened by a pipeline.
    "TimeGenerated": pl.String,
    "Category": pl.String,
    "LogicalServerName_s": pl.String,
    **dict.fromkeys(mssql.FIELDS, pl.String),
    **dict.fromkeys(mssql.SUFFIXED.values(), pl.String),
}
_RECORD: Final = pl.Struct(_RECORD_FIELDS)
_LINE: Final = pl.Struct({"records": pl.List(_RECORD), **_RECORD_FIELDS})


class MssqlAuditJson:
    """``--format mssql-audit-json``."""

    name = mssql.JSON
    finish = staticmethod(mssql.finish)

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        if not lines or not lines[0].lstrip().startswith("{"):
            return False
        marks = ('"SQLSecurityAuditEvents"', '"action_id_s"')
        return all(
            any(m in s for m in marks) or ('"action_id"' in s and '"server_principal_name"' in s)
            for s in lines[:5]
        )

    def parse(self, chunk: Chunk) -> Parsed:
        lines = chunk.lines
        lines, too_long = split_too_long(lines)
        decoded, bad = decode_lines(lines, _LINE)
        single = decoded.filter(pl.col("records").is_null()).select(
            "line_no", "line", pl.struct(list(_RECORD_FIELDS)).alias("_r")
        )
        batched = (
            decoded.filter(pl.col("records").is_not_null())
            .select("line_no", "line", pl.col("records").alias("_r"))
            .explode("_r")
        )
        # An envelope with no records (or a null one) is well-formed, and not an event.
        empty_envelopes = decoded.filter(pl.col("records").list.len() == 0).height
        empty_envelopes += batched.filter(pl.col("_r").is_null()).height
        records = (
            pl.concat([single, batched.filter(pl.col("_r").is_not_null())])
            .unnest("_r")
            .sort("line_no")
        )
        props = (
            records["properties"].struct.unnest()
            if records.height
            else pl.DataFrame(schema=_PROPERTIES.to_schema())
        )
        props = props.rename({f: f"_p_{f}" for f in mssql.FIELDS})
        records = pl.concat([records.drop("properties"), props], how="horizontal")
        category = pl.coalesce("category", "Category")
        other = category.is_not_null() & ~category.is_in(_AUDIT_CATEGORIES)
        n_other = records.filter(other).height
        values = mssql.blank_to_null(
            records.filter(~other), [f"_p_{f}" for f in mssql.FIELDS]
        ).select(
            "line_no",
            "line",
            *[
                pl.coalesce(
                    f"_p_{f}", f, *([mssql.SUFFIXED[f]] if f in mssql.SUFFIXED else [])
                ).alias(f)
                for f in mssql.FIELDS
            ],
            pl.coalesce("time", "TimeGenerated").alias("_time"),
            pl.coalesce(
                "LogicalServerName",
                "LogicalServerName_s",
                pl.col("resourceId").str.extract(r"(?i)/SERVERS/([^/]+)", 1).str.to_lowercase(),
            ).alias("_server"),
        )
        events, found, context = mssql.to_events(values, self.name)
        found = pl.concat([too_long, bad, found]).unique("line_no", keep="first").sort("line_no")
        return Parsed(
            events=events,
            rejects=with_raw_lines(found, lambda: chunk.lines),
            context=context + n_other + empty_envelopes,
        )
