"""Generic NDJSON and CSV exports, mapped to the event schema by a small TOML file.

Exports from systems we do not parse natively load without code: the mapping names, for
each schema field, the input field that carries it (a dotted path for nested JSON).
``docs/examples/snowflake-query-history.toml`` is a worked example. Keys:

```toml
format = "ndjson"            # or "csv"
system = "snowflake"         # db.system.name for every event

[fields]                     # schema field = input field; unmapped fields are null
time = "START_TIME"          # required
account = "USER_NAME"        # required
client_ip = "CLIENT_IP"
application = "CLIENT_APPLICATION_ID"
database = "DATABASE_NAME"
objects = "OBJECTS"          # a string or a JSON list of strings
class = "QUERY_CLASS"
command = "QUERY_TYPE"
query = "QUERY_TEXT"
rows = "ROWS_PRODUCED"
bytes = "BYTES_WRITTEN_TO_RESULT"
duration_ms = "TOTAL_ELAPSED_TIME"
success = "EXECUTION_STATUS"
session = "SESSION_ID"
statement_id = "QUERY_ID"

[options]
time_format = "%Y-%m-%dT%H:%M:%S%.f%z"   # default: ISO-8601, UTC unless an offset is given
success_values = ["SUCCESS"]              # values of `success` meaning success (default true/1/success/ok)
objects_separator = ","                   # when `objects` is one delimited string
export_commands = ["UNLOAD", "COPY", "GET"]  # commands that move data out in bulk
read_commands = ["SELECT"]                # commands classed READ when `class` is not mapped
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl
from polars.exceptions import PolarsError

from detector import schema as S
from detector.formats.base import Parsed
from detector.formats.jsonlines import is_json_object
from detector.reader import Chunk
from detector.rejects import MAX_LINE_CHARS, Reason, rejects

FIELDS: Final = {
    "time": S.TIME,
    "account": S.ACCOUNT,
    "client_ip": S.CLIENT_IP,
    "application": S.APPLICATION,
    "database": S.DATABASE,
    "objects": S.OBJECTS,
    "class": S.CLASS,
    "command": S.COMMAND,
    "query": S.QUERY,
    "rows": S.ROWS,
    "bytes": S.BYTES,
    "duration_ms": S.DURATION_MS,
    "success": S.SUCCESS,
    "session": S.SESSION,
    "statement_id": S.STATEMENT_ID,
}
REQUIRED: Final = ("time", "account")


class MappingError(ValueError):
    """The mapping file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class Mapping:
    format: str
    system: str
    fields: dict[str, str]
    time_format: str | None = None
    success_values: tuple[str, ...] = ("true", "1", "success", "ok", "t")
    objects_separator: str | None = None
    export_commands: tuple[str, ...] = ("COPY", "UNLOAD", "EXPORT", "DUMP")
    read_commands: tuple[str, ...] = ("SELECT", "FETCH", "COPY", "UNLOAD", "EXPORT")

    @classmethod
    def load(cls, path: Path) -> Mapping:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MappingError(f"mapping file {path}: {exc}") from exc
        fmt = raw.get("format")
        if fmt not in ("ndjson", "csv"):
            raise MappingError(f"mapping file {path}: format must be 'ndjson' or 'csv'")
        fields = raw.get("fields", {})
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise MappingError(
                f"mapping file {path}: unknown fields {unknown}; known: {sorted(FIELDS)}"
            )
        missing = [f for f in REQUIRED if f not in fields]
        if missing:
            raise MappingError(f"mapping file {path}: fields {missing} must be mapped")
        opts = raw.get("options", {})
        kwargs: dict[str, Any] = {}
        for key in ("success_values", "export_commands", "read_commands"):
            if key in opts:
                kwargs[key] = tuple(
                    str(v).upper() if "commands" in key else str(v).lower() for v in opts[key]
                )
        return cls(
            format=fmt,
            system=str(raw.get("system", "other")),
            fields={k: str(v) for k, v in fields.items()},
            time_format=opts.get("time_format"),
            objects_separator=opts.get("objects_separator"),
            **kwargs,
        )


class MappedFormat:
    """A user's NDJSON or CSV export, read through a :class:`Mapping`."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.name = f"mapped-{mapping.format}"
        self.record_start = None
        self._header = ""

    def sniff(self, head: list[str]) -> bool:
        return False  # only ever chosen explicitly, with --mapping

    def parse(self, chunk: Chunk) -> Parsed:
        raw, bad = self._ndjson(chunk) if self.mapping.format == "ndjson" else self._csv(chunk)
        return self._to_events(raw, bad)

    def _ndjson(self, chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
        lines = chunk.lines.filter(pl.col("line").str.strip_chars() != "")
        too_long = pl.col("line").str.len_bytes() > MAX_LINE_CHARS
        stripped = pl.col("line").str.strip_chars()
        looks = stripped.str.starts_with("{") & stripped.str.ends_with("}") & ~too_long
        bad = pl.concat(
            [
                rejects(lines, too_long, Reason.TOO_LONG),
                rejects(lines, ~looks & ~too_long, Reason.INVALID_JSON),
            ]
        )
        values = lines.filter(looks).with_columns(
            pl.col("line").str.json_path_match("$." + path).alias(name)
            for name, path in self.mapping.fields.items()
        )
        return values, bad

    def _csv(self, chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Rows of a CSV export. The header (line 1) is kept for the file's later chunks."""
        lines = chunk.lines
        if chunk.first_line == 1:
            self._header = lines["line"][0] if lines.height else ""
            lines = lines.slice(1)
        return self._csv_lines(lines)

    def _csv_lines(self, lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        if lines.is_empty():
            return pl.DataFrame(), rejects(lines, pl.lit(False), Reason.UNRECOGNISED)
        text = "\n".join([self._header, *lines["line"].to_list()]) + "\n"
        try:
            table = pl.read_csv(
                text.encode(), infer_schema=False, truncate_ragged_lines=True, raise_if_empty=False
            )
        except PolarsError:
            return self._split_at_stray_quote(lines)
        absent = [c for c in self.mapping.fields.values() if c not in table.columns]
        if absent:
            raise MappingError(f"CSV columns {absent} named in the mapping are not in the header")
        physical = 1 + pl.sum_horizontal(
            pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in table.columns
        )
        first_row = lines["line_no"][0]
        table = table.with_columns(
            (first_row + physical.cum_sum() - physical).cast(pl.UInt64).alias("line_no"),
            pl.concat_str([pl.col(c).fill_null("") for c in table.columns], separator=",").alias(
                "line"
            ),
        )
        blank = pl.all_horizontal(
            pl.col(c).is_null() for c in table.columns if c not in ("line_no", "line")
        )
        values = table.filter(~blank).select(
            "line_no",
            "line",
            *[pl.col(col).alias(name) for name, col in self.mapping.fields.items()],
        )
        return values, rejects(table.clear(), pl.lit(False), Reason.UNRECOGNISED)

    def _split_at_stray_quote(self, lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Lines Polars cannot read as CSV: the first line that leaves a quote open is
        quarantined, and the lines before and after it are read on their own."""
        odd = lines["line"].str.count_matches('"', literal=True) % 2 == 1
        if not odd.any():
            return pl.DataFrame(), rejects(lines, pl.lit(True), Reason.UNRECOGNISED)
        at = int(odd.arg_true()[0])
        before, bad_before = self._csv_lines(lines.slice(0, at)) if at else (pl.DataFrame(), None)
        after, bad_after = self._csv_lines(lines.slice(at + 1))
        found = [rejects(lines.slice(at, 1), pl.lit(True), Reason.UNRECOGNISED), bad_after]
        if bad_before is not None:
            found.append(bad_before)
        kept = [f for f in (before, after) if f.height]
        values = pl.concat(kept, how="diagonal_relaxed") if kept else pl.DataFrame()
        return values, pl.concat(found).sort("line_no")

    def _to_events(self, raw: pl.DataFrame, bad: pl.DataFrame) -> Parsed:
        m = self.mapping
        if raw.is_empty():
            return Parsed(events=S.empty(), rejects=bad)
        present = [k for k in FIELDS if k in m.fields]
        missing_required = pl.any_horizontal(pl.col(k).is_null() for k in REQUIRED)
        not_audit = rejects(raw, missing_required, Reason.NOT_AUDIT)
        if self.mapping.format == "ndjson" and not_audit.height:
            # A line shaped like an object whose fields could not be read may not be JSON at
            # all; checked line by line, but only for these few lines.
            broken = [not is_json_object(line) for line in not_audit["line"].to_list()]
            not_audit = not_audit.with_columns(
                pl.when(pl.Series(broken, dtype=pl.Boolean))
                .then(pl.lit(Reason.INVALID_JSON.value))
                .otherwise("reason")
                .alias("reason")
            )
        raw = raw.filter(~missing_required)
        raw = raw.with_columns(_parse_time(pl.col("time"), m.time_format).alias("_t"))
        raw = _as_utc(raw, "_t")
        bad_time = rejects(raw, pl.col("_t").is_null(), Reason.BAD_FIELD)
        raw = raw.filter(pl.col("_t").is_not_null())
        out: dict[str, pl.Expr] = {S.TIME: pl.col("_t")}
        for key in present:
            if key == "time":
                continue
            col = pl.col(key)
            if key == "objects":
                listed = col.str.json_decode(pl.List(pl.String))
                split = (
                    col.str.split(m.objects_separator)
                    if m.objects_separator
                    else pl.concat_list(col)
                )
                col = pl.when(col.str.starts_with("[")).then(listed).otherwise(split)
                col = col.list.eval(pl.element().str.strip_chars()).list.drop_nulls()
            elif key in ("rows", "bytes"):
                col = col.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
            elif key == "duration_ms":
                col = col.cast(pl.Float64, strict=False)
            elif key == "success":
                col = col.str.to_lowercase().is_in(list(m.success_values))
            elif key in ("class", "command"):
                col = col.str.to_uppercase()
            out[FIELDS[key]] = col
        events = raw.select(**out)
        command = pl.col(S.COMMAND) if "command" in present else pl.lit(None, pl.String)
        events = events.with_columns(
            command.is_in(list(m.export_commands)).fill_null(False).alias(S.EXPORT),
            pl.lit(m.system).alias(S.DB_SYSTEM),
            pl.lit(self.name).alias(S.SOURCE_FORMAT),
        )
        if "class" not in present:
            events = events.with_columns(
                pl.when(command.is_in(list(m.read_commands)))
                .then(pl.lit("READ"))
                .otherwise(pl.lit(None))
                .alias(S.CLASS)
            )
        if "success" not in present:
            events = events.with_columns(pl.lit(True).alias(S.SUCCESS))
        return Parsed(
            events=S.conform(events.lazy()).collect(),
            rejects=pl.concat([bad, not_audit, bad_time]).sort("line_no"),
        )


def _parse_time(col: pl.Expr, time_format: str | None) -> pl.Expr:
    """Event time from a string: ISO-8601 by default, or ``epoch_s``/``epoch_ms``/a strftime format."""
    if time_format in ("epoch_s", "epoch_ms"):
        scale = 1_000_000 if time_format == "epoch_s" else 1_000
        micros = (col.cast(pl.Float64, strict=False) * scale).cast(pl.Int64, strict=False)
        return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")
    if time_format is not None:
        return col.str.to_datetime(time_format, time_unit="us", strict=False)
    # ISO-8601 with 'T' or ' ', optional fraction, and 'Z', +hh, +hhmm, +hh:mm or no offset (UTC).
    iso = (
        col.str.strip_chars()
        .str.replace(" ", "T", literal=True)
        .str.replace(r"Z$", "+00:00")
        .str.replace(r"([+-]\d\d)(\d\d)$", "$1:$2")
        .str.replace(r"T(\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d)$", "T$1$2:00")
    )
    iso = pl.when(iso.str.contains(r"[+-]\d\d:\d\d$")).then(iso).otherwise(iso + "+00:00")
    return iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False)


def _as_utc(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """``frame[name]`` in UTC: naive times are taken as UTC, aware ones converted."""
    dtype = frame.schema[name]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return frame.with_columns(pl.col(name).dt.convert_time_zone("UTC"))
    return frame.with_columns(pl.col(name).dt.replace_time_zone("UTC"))
