"""Reading a Snowflake ``ACCOUNT_USAGE`` view exported to files, as columns.

Two export shapes, told apart by the file's first line:

* **CSV with a header** (``COPY INTO @stage ... FILE_FORMAT = (TYPE = CSV
  FIELD_OPTIONALLY_ENCLOSED_BY = '"') HEADER = TRUE``, or a result downloaded from
  Snowsight): any column order or subset. Quoted fields may span lines (query text);
  ``\\N`` (the unload default ``NULL_IF``) and empty fields are null; ARRAY columns hold
  their JSON text.
* **NDJSON** (``COPY INTO @stage FROM (SELECT OBJECT_CONSTRUCT(*) FROM ...)
  FILE_FORMAT = (TYPE = JSON)``): one object per line, keys the column names, null
  columns left out by ``OBJECT_CONSTRUCT``.

:class:`Export` reads a chunk of either into one frame: ``line_no``, ``line`` and the
columns a format asked for (text, or the object arrays decoded), missing ones null.
"""

from __future__ import annotations

import csv
import json
import re
from typing import Final

import polars as pl
from polars.exceptions import PolarsError

from detector.formats.base import read_halving
from detector.formats.jsonlines import decode_lines
from detector.reader import Chunk
from detector.rejects import Reason, rejects, split_too_long, with_raw_lines

# A query id as the views show it: a0fda135-d678-4184-942b-c3411ae8d1ce.
QUERY_ID: Final = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_DATE: Final = r"\d{4}-\d\d-\d\d"
OBJECTS: Final = pl.List(pl.Struct({"objectName": pl.String, "objectDomain": pl.String}))
DDL_OBJECT: Final = pl.Struct(
    {"objectName": pl.String, "objectDomain": pl.String, "operationType": pl.String}
)
NULL_TEXT: Final = "\\N"


def first_line(head: list[str]) -> str | None:
    """The first non-blank line of ``head``, without a byte-order mark."""
    for line in head:
        if line.strip():
            return line.lstrip("\ufeff").strip()
    return None


def header_names(line: str) -> list[str]:
    """A CSV header's column names, upper case (Snowflake's own spelling)."""
    try:
        names = next(csv.reader([line]), [])
    except csv.Error:
        return []
    return [n.strip().upper() for n in names]


def json_keys(line: str) -> set[str]:
    """The keys of a JSON object line (as written), or none if it is not one."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return set()
    return set(value) if isinstance(value, dict) else set()


def looks_like(head: list[str], required: set[str], any_of: frozenset[str] | None = None) -> bool:
    """True if the file's first line is a header or a JSON object with the ``required``
    columns (exact upper case, as Snowflake writes them) and one of ``any_of``."""
    line = first_line(head)
    if line is None:
        return False
    names = json_keys(line) if line.startswith("{") else set(header_names(line))
    return required <= names and (any_of is None or bool(any_of & names))


def utc_time(text: pl.Expr) -> pl.Expr:
    """A Snowflake timestamp's text as UTC: the default output form
    ``2022-01-25 16:17:47.388 +0000`` (``TIMESTAMP_LTZ`` shown in the session's zone),
    ISO-8601 (``T``, ``Z``, ``+hh:mm``), an hours-only offset (``TZH``), or no offset at
    all (read as UTC)."""
    s = (
        text.str.strip_chars()
        .str.replace(rf"^({_DATE})[ T]", "${1}T")
        .str.replace(r"\s*Z$", "+00:00")
        .str.replace(r"\s*([+-]\d\d):?(\d\d)$", "$1:$2")
        .str.replace(r"(:\d\d(?:\.\d+)?)\s*([+-]\d\d)$", "$1$2:00")
    )
    s = pl.when(s.str.contains(r"[+-]\d\d:\d\d$")).then(s).otherwise(s + "+00:00")
    parsed = s.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False)
    return parsed.dt.convert_time_zone("UTC")


class Export:
    """How one exported file is laid out, learnt from its head: CSV (with its header)
    or NDJSON. ``columns`` are the view's columns a format reads, with their types."""

    def __init__(self, columns: dict[str, pl.DataType]) -> None:
        self.columns = columns
        self.shape: str | None = None  # "csv" or "ndjson"
        self.header: list[str] = []
        self.header_line = ""
        self.record_start: re.Pattern[bytes] | None = None

    def configure(self, head: list[str]) -> None:
        """Learn the shape, the CSV header and where a CSV record may start."""
        line = first_line(head)
        if line is None:
            return
        if line.startswith("{"):
            self.shape, self.record_start = "ndjson", None
            return
        self.shape, self.header = "csv", _unique(header_names(line))
        self.header_line = line
        # Chunks are cut only before a record's first field: a query id or a time when
        # the export starts with one (SELECT * starts with QUERY_ID), so a quoted query
        # text that spans lines stays in one chunk.
        first = self.header[0] if self.header else ""
        if first == "QUERY_ID":
            self.record_start = re.compile(rf'"?{QUERY_ID}"?(?:,|$)'.encode())
        elif first.endswith("_TIME"):
            self.record_start = re.compile(rf'"?{_DATE}[ T]'.encode())

    def read(self, chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        """The chunk's rows (``line_no``, ``line``, the columns), its rejects, and how
        many lines were CSV headers repeated inside the file (exports joined by ``cat``)."""
        lines = chunk.lines
        if chunk.first_line == 1:
            lines = lines.with_columns(pl.col("line").str.strip_prefix("\ufeff"))
            self.configure(lines["line"].head(50).to_list())
            if self.shape == "csv":
                lines = _after_header(lines)
        elif self.shape is None:  # not configured: only NDJSON can be read without a head
            line = first_line(lines["line"].head(50).to_list())
            self.shape = "ndjson" if line is not None and line.startswith("{") else None
        repeated = 0
        if self.shape == "csv":
            header = pl.col("line").str.strip_chars() == self.header_line
            repeated = lines.filter(header).height
            lines = lines.filter(~header)
        lines, too_long = split_too_long(lines)
        if self.shape == "ndjson":
            rows, bad = self._ndjson(lines)
        else:
            rows, bad = self._csv(lines)
        rows = rows.with_columns(
            pl.lit(None, dtype).alias(name)
            for name, dtype in self.columns.items()
            if name not in rows.columns
        )
        found = pl.concat([too_long, bad]).sort("line_no")
        return rows, with_raw_lines(found, lambda: chunk.lines), repeated

    def _ndjson(self, lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        rows, bad = decode_lines(lines, pl.Struct(self.columns))
        return rows.select("line_no", "line", *self.columns), bad

    def _csv(self, lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        if not self.header:
            return lines.clear(), rejects(
                lines, pl.col("line").str.strip_chars() != "", Reason.UNRECOGNISED
            )
        records, bad = _segment(lines, self.record_start)
        # Read together; halved around records Polars reads as no single row.
        read_ok, broken = read_halving(records, lambda b: self._read_csv(b["text"].to_list()))
        unreadable = rejects(broken, pl.lit(True), Reason.UNRECOGNISED)
        bad = pl.concat([bad, unreadable.with_columns(pl.lit(None, pl.String).alias("line"))])
        empty = pl.DataFrame(schema=dict.fromkeys(self._wanted(), pl.String))
        rows = pl.concat(
            [
                empty.with_columns(
                    line_no=records["line_no"].clear(), line=pl.lit(None, pl.String)
                ),
                *(
                    table.with_columns(batch["line_no"], batch["text"].alias("line"))
                    for batch, table in read_ok
                ),
            ]
        )
        rows, mistyped = _decode_objects(rows, self.columns)
        return rows, pl.concat([bad, mistyped])

    def _read_csv(self, texts: list[str]) -> pl.DataFrame | None:
        """``texts`` (whole records) as a frame with the header's columns, or None if
        Polars cannot read them as CSV."""
        if not texts:
            return pl.DataFrame(schema=dict.fromkeys(self._wanted(), pl.String))
        try:
            table = pl.read_csv(
                ("\n".join(texts) + "\n").encode(),
                has_header=False,
                schema=dict.fromkeys(self.header, pl.String),
                truncate_ragged_lines=True,
                null_values=[NULL_TEXT],
                raise_if_empty=False,
                quote_char='"',
            )
        except PolarsError:
            return None
        return table.select(self._wanted())

    def _wanted(self) -> list[str]:
        return [c for c in self.columns if c in self.header]


def _unique(names: list[str]) -> list[str]:
    """Header names made unique (a repeated name gets ``_2``, ``_3``...)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _after_header(lines: pl.DataFrame) -> pl.DataFrame:
    """The lines after a CSV file's header (its first non-blank line)."""
    blank = pl.col("line").str.strip_chars() == ""
    return lines.filter((~blank).cum_sum().shift(1, fill_value=0) > 0)


def _segment(
    lines: pl.DataFrame, start: re.Pattern[bytes] | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The chunk's CSV records (``line_no`` of their first line, ``text``) and stray lines.

    A record starts with a line matching ``start`` (any line outside an open quote when
    there is no pattern) and goes on over the next lines only while a quoted field is
    open. A line outside any record is rejected on its own, and a record whose quote
    never closes is rejected whole, so one broken line cannot swallow those after it.
    """
    quotes = pl.col("line").str.count_matches('"', literal=True)
    lines = lines.with_columns(quotes.alias("_q"))
    if start is None:
        open_before = (pl.col("_q").cum_sum() - pl.col("_q")) % 2 == 1
        lines = lines.with_columns((~open_before).alias("_start"))
    else:
        lines = lines.with_columns(
            pl.col("line").str.contains("^(?:" + start.pattern.decode() + ")").alias("_start")
        )
    lines = lines.with_columns(pl.col("_start").cum_sum().alias("_rec"))
    open_before = ((pl.col("_q").cum_sum() - pl.col("_q")) % 2 == 1).over("_rec")
    closed = (~pl.col("_start") & ~open_before).cast(pl.Int32).cum_sum().over("_rec") > 0
    lines = lines.with_columns(
        ((pl.col("_rec") > 0) & (pl.col("_start") | ~closed)).alias("_member")
    )
    blank = pl.col("line").str.strip_chars() == ""
    stray = lines.filter(~pl.col("_member") & ~blank)
    records = (
        lines.filter(pl.col("_member"))
        .group_by("_rec", maintain_order=True)
        .agg(
            pl.col("line_no").first(),
            pl.col("line").str.join("\n").alias("text"),
            pl.col("_q").sum().alias("_quotes"),
        )
        .filter(pl.col("text").str.strip_chars() != "")
    )
    unclosed = pl.col("_quotes") % 2 == 1
    bad = pl.concat(
        [
            rejects(stray, pl.lit(True), Reason.UNRECOGNISED),
            rejects(records.rename({"text": "line"}), unclosed, Reason.TRUNCATED),
        ]
    )
    return records.filter(~unclosed).select("line_no", "text"), bad


def _decode_objects(
    rows: pl.DataFrame, columns: dict[str, pl.DataType]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """CSV rows with their JSON columns (object arrays) decoded; rows where one is not
    JSON of that shape are rejected as ``bad_field``."""
    bad: list[int] = []
    for name, dtype in columns.items():
        if dtype == pl.String or name not in rows.columns:
            continue
        text = pl.col(name).str.strip_chars().replace("", None)
        try:
            rows = rows.with_columns(text.str.json_decode(dtype).alias(name))
            continue
        except PolarsError:
            pass
        values = rows[name].to_list()
        ok = pl.Series([v is None or not v.strip() or _decodes(v, dtype) for v in values])
        bad += rows.filter(~ok)["line_no"].to_list()
        rows = rows.with_columns(
            pl.when(ok).then(pl.col(name)).otherwise(None).alias(name)
        ).with_columns(text.str.json_decode(dtype).alias(name))
    mistyped = rows.filter(pl.col("line_no").is_in(bad))
    return rows.filter(~pl.col("line_no").is_in(bad)), rejects(
        mistyped, pl.lit(True), Reason.BAD_FIELD
    )


def _decodes(text: str, dtype: pl.DataType) -> bool:
    try:
        pl.Series([text]).str.json_decode(dtype)
    except PolarsError:
        return False
    return True
