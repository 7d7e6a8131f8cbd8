"""Fuzzing every parser: hostile input never crashes or hangs, and no line is lost.

Inputs are built from real server output (the reference PostgreSQL 15 + pgAudit 1.7.0
logs, a scenario with multi-line records, and the worked Snowflake example for the
mapped NDJSON/CSV format): garbage lines mixed in, real lines truncated, invalid UTF-8,
CSV quoting torture, deeply nested JSON, giant lines, blank lines, CRLF, random bytes.

The accounting rule checked throughout: every real record still gives its event
(the events equal those of the clean file) and every garbage line is in the quarantine,
once, with the file, its own line number, its raw text and a reason from ``Reason``.

The only exception allowed is the documented refusal of a file that is not a log at all:
``NotALogError``, with ``--format auto`` (nothing recognised, or binary), or for any
format when the file has gzip magic but does not decompress. With an explicit format
everything else is read line by line: a NUL byte or bad UTF-8 is one rejected line.

Hypothesis does not shrink here (a failing example is printed as found); each damage
found also has a plain test near the end with a minimal input.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import polars.selectors as cs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from detector import schema as S
from detector.formats import Told
from detector.formats.mapped import MappingError
from detector.pipeline import read_events
from detector.reader import NotALogError
from detector.rejects import Quarantine, Reason
from tests.conftest import PG_SCENARIOS, REFERENCE_PG
from tests.formats.common import REASONS, fuzz_settings

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"
PG_SYSLOG = Path(__file__).parents[1] / "fixtures" / "pgaudit-syslog"
PREFIX = "%m [%p] %q%u@%d %r %a "  # log_line_prefix of every fixture (audit-settings.conf)
QUARANTINE_RAW_CHARS = 10_000  # the quarantine keeps this much of a rejected line


def fuzz(examples: int = 10) -> settings:
    """Hypothesis settings for one property (run per input spec, inside the test); the
    plain tests below give minimal failing inputs, as these do not shrink."""
    return fuzz_settings(examples)


# ---------------------------------------------------------------------------------------
# The inputs: one spec per parser (and per shape of real data it must survive)


def _mapped_csv_example() -> bytes:
    """The worked Snowflake example as the CSV export a user would have."""
    frame = pl.read_ndjson(EXAMPLES / "snowflake-query-history.ndjson").with_columns(
        pl.col("OBJECTS").list.join(";")
    )
    return frame.write_csv().encode()


CSV_MAPPING = (
    (EXAMPLES / "snowflake-query-history.toml")
    .read_text()
    .replace('format = "ndjson"', 'format = "csv"')
    .replace("[options]", '[options]\nobjects_separator = ";"')
)


@dataclass(frozen=True)
class Spec:
    id: str
    format_name: str
    data: bytes = field(repr=False)
    kind: str  # "jsonlog", "csvlog", "stderr", "ndjson" (mapped), "csv" (mapped)
    mapping: str | None = None
    required: tuple[str, ...] = ()  # JSON keys a record needs (JSON kinds)

    @property
    def lines(self) -> list[bytes]:
        return _split(self.data)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"told": Told(log_line_prefix=PREFIX)} if self.kind == "stderr" else {}

    @property
    def is_json(self) -> bool:
        return self.kind in ("jsonlog", "ndjson")

    @property
    def is_csv(self) -> bool:
        return self.kind in ("csvlog", "csv")

    def boundaries(self) -> list[int]:
        """Line indexes before which a new line starts a record of its own (and the end)."""
        lines = self.lines
        if self.kind == "stderr":
            return [
                i
                for i in range(len(lines) + 1)
                if i == len(lines) or not lines[i].startswith(b"\t")
            ]
        if self.kind == "syslog":  # before a message's first line ([N-1]), not its later
            later = re.compile(rb"\]: \[\d+-(?!1\] )\d+\] ")
            return [
                i for i in range(len(lines) + 1) if i == len(lines) or not later.search(lines[i])
            ]
        if self.is_csv:
            out, quotes = [], 0
            for i in range(len(lines) + 1):
                if quotes % 2 == 0 and not (self.kind == "csv" and i == 0):  # after the header
                    out.append(i)
                if i < len(lines):
                    quotes += lines[i].count(b'"')
            return out
        return list(range(len(lines) + 1))

    def single_line_records(self) -> list[int]:
        """Indexes of lines that are a whole record by themselves (never a header)."""
        bounds = set(self.boundaries())
        return [i for i in range(len(self.lines)) if i in bounds and i + 1 in bounds]


def _split(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    return lines[:-1] if lines and lines[-1] == b"" else lines


def _join(lines: list[bytes], eol: bytes = b"\n") -> bytes:
    return b"".join(line + eol for line in lines)


NATIVE_SPECS = [
    Spec("jsonlog", "pgaudit-jsonlog", (REFERENCE_PG / "postgresql.json").read_bytes(), "jsonlog",
         required=("timestamp", "message", "error_severity")),
    Spec("csvlog", "pgaudit-csvlog", (REFERENCE_PG / "postgresql.csv").read_bytes(), "csvlog"),
    Spec("stderr", "pgaudit-stderr", (REFERENCE_PG / "postgresql.log").read_bytes(), "stderr"),
    Spec("syslog", "pgaudit-syslog", (PG_SYSLOG / "postgresql.syslog").read_bytes(), "syslog"),
]  # fmt: skip
MULTILINE_SPECS = [  # quoted newlines (csvlog) and tab continuations (stderr)
    Spec("csvlog-multiline", "pgaudit-csvlog",
         (PG_SCENARIOS / "rows_relation_param_on" / "postgresql.csv").read_bytes(), "csvlog"),
    Spec("stderr-multiline", "pgaudit-stderr",
         (PG_SCENARIOS / "rows_relation_param_on" / "postgresql.log").read_bytes(), "stderr"),
]  # fmt: skip
MAPPED_SPECS = [
    Spec("mapped-ndjson", "mapped", (EXAMPLES / "snowflake-query-history.ndjson").read_bytes(),
         "ndjson", mapping=(EXAMPLES / "snowflake-query-history.toml").read_text(),
         required=("START_TIME", "USER_NAME")),
    Spec("mapped-csv", "mapped", _mapped_csv_example(), "csv", mapping=CSV_MAPPING),
]  # fmt: skip
BASE_SPECS = NATIVE_SPECS + MAPPED_SPECS
ALL_SPECS = BASE_SPECS + MULTILINE_SPECS
SPEC = {s.id: s for s in ALL_SPECS}


def ids(specs: list[Spec]) -> list[str]:
    """Specs are passed to tests by name: Hypothesis prints its failing examples, and a
    spec's repr would be the whole file."""
    return [s.id for s in specs]


# ---------------------------------------------------------------------------------------
# Running a parser on bytes, with a real quarantine file


@dataclass
class Run:
    path: str
    events: pl.DataFrame
    summary: Any  # the run's Summary
    counts: Counter[str]
    rows: list[dict[str, Any]]  # the quarantine file's records
    text_lines: list[str]  # the input's lines as the reader sees them

    @property
    def rejected(self) -> list[int]:
        return sorted(r["line"] for r in self.rows)


def run(spec: Spec, data: bytes, format_name: str | None = None, **kwargs: Any) -> Run:
    """Parse ``data`` as ``spec``'s format (or ``format_name``) with a quarantine file."""
    with tempfile.TemporaryDirectory(prefix="trovewatch-fuzz-") as tmp:
        path = Path(tmp) / f"input.{spec.kind}"
        path.write_bytes(data)
        if spec.mapping is not None:
            (Path(tmp) / "mapping.toml").write_text(spec.mapping)
            kwargs.setdefault("mapping", Path(tmp) / "mapping.toml")
        else:
            for key, value in spec.kwargs.items():
                kwargs.setdefault(key, value)
        quarantine = Quarantine(Path(tmp) / "quarantine.ndjson")
        try:
            events, summary = read_events(
                [path], format_name=format_name or spec.format_name, quarantine=quarantine, **kwargs
            )
        finally:
            quarantine.close()
        qfile = Path(tmp) / "quarantine.ndjson"
        # One record per "\n": not splitlines(), which also splits at U+0085, U+2028, ...
        rows = [json.loads(s) for s in qfile.read_text().split("\n") if s] if qfile.exists() else []
    text = data.decode("utf-8", "replace")
    text_lines = [s.removesuffix("\r") for s in text.split("\n")]
    if text.endswith("\n"):
        text_lines.pop()
    return Run(str(path), events, summary, Counter(quarantine.counts), rows, text_lines)


@cache
def clean(spec_id: str) -> pl.DataFrame:
    spec = SPEC[spec_id]
    result = run(spec, spec.data)
    assert result.rows == [], f"{spec_id}: the clean file itself has rejects: {result.rows[:3]}"
    assert result.events.height > 0
    return result.events


def rows_of(frame: pl.DataFrame, drop_cr: bool = False) -> Counter[str]:
    """Events as a multiset of rows (order-free), optionally with CRs removed from text."""
    if drop_cr:
        frame = frame.with_columns(cs.string().str.replace_all("\r", "", literal=True))
    return Counter(repr(row) for row in frame.rows())


def assert_same_events(got: pl.DataFrame, want: pl.DataFrame, drop_cr: bool = False) -> None:
    g, w = rows_of(got, drop_cr), rows_of(want, drop_cr)
    missing, extra = w - g, g - w
    assert not missing and not extra, (
        f"{got.height} events, want {want.height}; "
        f"lost: {list(missing)[:2]}; spurious: {list(extra)[:2]}"
    )


def assert_quarantine_well_formed(result: Run) -> None:
    """Every quarantine record names the file, a real line number and a known reason,
    and carries that line's text (up to the quarantine's cap)."""
    assert result.summary.rejected == result.counts
    assert sum(result.counts.values()) == len(result.rows)
    seen: set[int] = set()
    for row in result.rows:
        assert row["file"] == result.path
        assert row["reason"] in REASONS, row
        assert isinstance(row["line"], int) and 1 <= row["line"] <= len(result.text_lines), row
        assert row["line"] not in seen, f"line {row['line']} quarantined twice"
        seen.add(row["line"])
        assert isinstance(row["raw"], str), f"quarantined line {row['line']} has no raw text: {row}"


def assert_raw_is_the_line(result: Run, spec: Spec, quoted: bool = True) -> None:
    """Each reject's raw text is its line. Mapped CSV rejects are re-joined from their
    fields (quotes undone), so there only the first field is compared, and only when the
    input may not have quotes (``quoted=False``)."""
    for row in result.rows:
        line = result.text_lines[row["line"] - 1][:QUARANTINE_RAW_CHARS]
        if spec.kind == "csv":
            assert isinstance(row["raw"], str), row
            assert quoted or row["raw"].startswith(line.split(",")[0]), row
        else:  # the line, or the whole record it starts (a multi-line csvlog record)
            assert row["raw"] == line or row["raw"].startswith(line + "\n"), row


def interleave(
    lines: list[bytes], inserts: list[tuple[int, list[bytes]]]
) -> tuple[list[bytes], list[list[int]]]:
    """``lines`` with each insert's lines put before line index ``pos``.

    Returns the new lines and, per insert in file order, its 1-based line numbers.
    """
    by_pos: dict[int, list[list[bytes]]] = {}
    for pos, block in inserts:
        by_pos.setdefault(pos, []).append(block)
    out: list[bytes] = []
    marks: list[list[int]] = []
    for i in range(len(lines) + 1):
        for block in by_pos.get(i, []):
            marks.append(list(range(len(out) + 1, len(out) + 1 + len(block))))
            out.extend(block)
        if i < len(lines):
            out.append(lines[i])
    return out, marks


# ---------------------------------------------------------------------------------------
# Garbage


MARKERS = "abcxyzXYZ#!$%&*+-/<=>?@^_|~;:.()[]"  # never a digit, quote, comma, brace or tab
INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xfe",
    b"\xc3",
    b"\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
]


def garbage_text(no_csv_specials: bool) -> st.SearchStrategy[str]:
    """A line of text that is no record of any format: it starts (after optional spaces)
    with a character no record starts with, and has no line break."""
    # No NUL: near the top it makes --format auto call the file binary; NUL lines in a
    # log read with an explicit format have their own test below.
    banned = "\n\r\x00" + (',"' if no_csv_specials else "")
    body = st.text(st.characters(codec="utf-8", exclude_characters=banned), max_size=60)
    return st.builds(
        lambda lead, mark, rest: lead + mark + rest,
        st.sampled_from(["", " ", "   "]),
        st.sampled_from(MARKERS),
        body,
    )


def with_invalid_utf8(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    def spoil(args: tuple[str, bytes, int]) -> bytes:
        s, bad, at = args
        raw = s.encode()
        at = at % (len(raw) + 1)
        return raw[:at] + bad + raw[at:]

    return st.tuples(text, st.sampled_from(INVALID_UTF8), st.integers(0, 200)).map(spoil)


JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


def garbage_line(spec: Spec) -> st.SearchStrategy[bytes]:
    """One garbage line for ``spec``'s format: text, invalid UTF-8, and for JSON formats
    JSON that is not a record and real lines cut short with another glued on."""
    text = garbage_text(no_csv_specials=spec.is_csv)
    kinds: list[st.SearchStrategy[bytes]] = [
        text.map(str.encode),
        with_invalid_utf8(text),
    ]
    if spec.is_json:
        required = set(spec.required)
        not_object = JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(json.dumps)
        no_record = (
            st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5)
            .filter(lambda d: not required <= d.keys())
            .map(json.dumps)
        )
        kinds += [not_object.map(str.encode), no_record.map(str.encode), glued_real_lines(spec)]
    return st.one_of(kinds)


def glued_real_lines(spec: Spec) -> st.SearchStrategy[bytes]:
    """A real line cut short with another real line right after it (a lost write)."""
    lines = spec.lines

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        a = lines[draw(st.integers(0, len(lines) - 1))]
        b = lines[draw(st.integers(0, len(lines) - 1))]
        cut = draw(st.integers(1, len(a) - 1))
        glued = a[:cut] + b
        assume(not _is_json_object(glued))
        return glued

    return build()


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


def inserts_for(spec: Spec, min_pos: int = 0) -> st.SearchStrategy[list[tuple[int, list[bytes]]]]:
    positions = [b for b in spec.boundaries() if b >= min_pos]
    return st.lists(
        st.tuples(st.sampled_from(positions), garbage_line(spec).map(lambda g: [g])),
        min_size=1,
        max_size=6,
    )


# ---------------------------------------------------------------------------------------
# The baseline the properties compare with


@pytest.mark.parametrize("spec_id", ids(ALL_SPECS))
def test_clean_files_parse_without_rejects(spec_id: str) -> None:
    spec = SPEC[spec_id]
    assert clean(spec.id).height > 0


# ---------------------------------------------------------------------------------------
# Garbage mixed with real lines: real events intact, every garbage line quarantined


def check_interleaved(
    spec: Spec, inserts: list[tuple[int, list[bytes]]], crlf: bool, fmt: str | None
) -> None:
    lines, marks = interleave(spec.lines, inserts)
    data = _join(lines, b"\r\n" if crlf else b"\n")
    result = run(spec, data, fmt, **({"told": Told()} if fmt == "auto" else {}))
    assert_quarantine_well_formed(result)
    assert_same_events(result.events, clean(spec.id), drop_cr=crlf)
    garbage = sorted(m[0] for m in marks)
    assert result.rejected == garbage, "quarantined lines are not exactly the garbage lines"
    assert sum(result.counts.values()) == len(inserts)
    assert_raw_is_the_line(result, spec, quoted=False)


@pytest.mark.parametrize("spec_id", ids(ALL_SPECS))
def test_garbage_lines_are_quarantined_and_real_lines_kept(spec_id: str) -> None:
    """Explicit --format (and, for stderr, the server's log_line_prefix)."""
    spec = SPEC[spec_id]

    @fuzz()
    @given(inserts=inserts_for(spec), crlf=st.booleans())
    def check(inserts: list[tuple[int, list[bytes]]], crlf: bool) -> None:
        check_interleaved(spec, inserts, crlf, None)

    check()


@pytest.mark.parametrize("spec_id", ids(NATIVE_SPECS + MULTILINE_SPECS))
def test_garbage_after_the_head_is_quarantined_with_auto_detection(spec_id: str) -> None:
    """--format auto, no prefix given: garbage past the lines detection looks at."""
    spec = SPEC[spec_id]

    @fuzz(examples=8)
    @given(inserts=inserts_for(spec, min_pos=25))
    def check(inserts: list[tuple[int, list[bytes]]]) -> None:
        check_interleaved(spec, inserts, False, "auto")

    check()


@pytest.mark.parametrize("spec_id", ids(ALL_SPECS))
def test_blank_lines_change_nothing(spec_id: str) -> None:
    """Blank lines (between records, or first) are neither events nor rejects."""
    spec = SPEC[spec_id]
    blanks = st.lists(
        st.tuples(st.sampled_from(spec.boundaries()), st.just([b""])), min_size=1, max_size=4
    )

    @fuzz(examples=8)
    @given(inserts=blanks)
    def check(inserts: list[tuple[int, list[bytes]]]) -> None:
        lines, _ = interleave(spec.lines, inserts)
        result = run(spec, _join(lines))
        assert_quarantine_well_formed(result)
        assert_same_events(result.events, clean(spec.id))
        assert result.rows == [], f"blank lines were rejected: {result.rows}"

    check()


@pytest.mark.parametrize("spec_id", ids(ALL_SPECS))
def test_crlf_line_endings_read_like_lf(spec_id: str) -> None:
    spec = SPEC[spec_id]
    lines, marks = interleave(spec.lines, [(spec.boundaries()[1], [b"not a record"])])
    result = run(spec, _join(lines, b"\r\n"))
    assert_same_events(result.events, clean(spec.id), drop_cr=True)
    assert result.rejected == [marks[0][0]]
    assert result.rows[0]["raw"].startswith("not a record")
    assert "\r" not in result.rows[0]["raw"]


@pytest.mark.parametrize("spec_id", ids(ALL_SPECS))
def test_last_line_without_a_newline_is_read(spec_id: str) -> None:
    """A file whose last record has no final newline (a log still being written)."""
    spec = SPEC[spec_id]
    result = run(spec, spec.data.rstrip(b"\n"))
    assert_same_events(result.events, clean(spec.id))
    assert result.rows == []


def test_one_bad_line_does_not_make_a_csvlog_slow() -> None:
    """Bad bytes in one csvlog line must not switch the whole file to a path that costs
    a parse per record: on a real log (millions of records) that is a hang."""
    spec = SPEC["csvlog"]
    lines = spec.lines * 2
    started = time.monotonic()
    run(spec, _join(lines))
    clean_seconds = time.monotonic() - started
    lines.insert(5, b"\xff\xfe not utf-8")
    started = time.monotonic()
    result = run(spec, _join(lines))
    seconds = time.monotonic() - started
    assert result.rejected == [6]
    assert seconds < max(1.5, 20 * clean_seconds), f"{seconds:.1f}s, clean {clean_seconds:.2f}s"


# ---------------------------------------------------------------------------------------
# Real lines cut short (a crash mid-write)

STABLE = [S.TIME, S.ACCOUNT, S.DATABASE, S.CLASS, S.COMMAND, S.STATEMENT_ID, S.SUCCESS]


@pytest.mark.parametrize("spec_id", ids(BASE_SPECS + MULTILINE_SPECS))
def test_a_truncated_line_loses_only_itself(spec_id: str) -> None:
    """One record cut at a random point: the others give exactly the events they give
    without it; the cut record is quarantined at its own line or gives at most one event."""
    spec = SPEC[spec_id]
    lines = spec.lines

    @st.composite
    def cuts(draw: st.DrawFn) -> tuple[int, int]:
        k = draw(st.sampled_from(spec.single_line_records()))
        return k, draw(st.integers(1, len(lines[k]) - 1))

    @fuzz()
    @given(where=cuts())
    def check(where: tuple[int, int]) -> None:
        check_truncated(spec, *where)

    check()


def check_truncated(spec: Spec, k: int, cut: int) -> None:
    lines = spec.lines
    truncated = lines[k][:cut]
    result = run(spec, _join([*lines[:k], truncated, *lines[k + 1 :]]))
    dropped = run(spec, _join([*lines[:k], *lines[k + 1 :]]))
    assert_quarantine_well_formed(result)
    assert result.rejected in ([], [k + 1]), "lines other than the cut one were rejected"
    assert_raw_is_the_line(result, spec)
    if spec.is_json:
        # A JSON line cut short is never JSON: rejected, and nothing else changes.
        assert result.rejected == [k + 1]
        assert_same_events(result.events, dropped.events)
        return
    got, want = rows_of(result.events.select(STABLE)), rows_of(dropped.events.select(STABLE))
    # A stderr STATEMENT line is half of its ERROR's event: cut short, it still names a
    # (shorter) statement, so that one event may differ from the file without the line.
    completes_error = b"STATEMENT:  " in lines[k]
    lost = sum((want - got).values())
    assert lost <= (1 if completes_error else 0), (
        f"events of other lines lost: {list(want - got)[:2]}"
    )
    carries_event = (
        any(w in lines[k] for w in (b"AUDIT: ", b"ERROR", b"FATAL", b"STATEMENT:  "))
        or spec.kind == "csv"
    )
    assert sum((got - want).values()) <= (1 if carries_event else 0), list(got - want)[:3]


# ---------------------------------------------------------------------------------------
# CSV quoting torture


def csv_record(fields: list[str]) -> list[bytes]:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow(fields)
    return [s.encode() for s in buf.getvalue().removesuffix("\n").split("\n")]


def tortured_field() -> st.SearchStrategy[str]:
    """Field text full of quotes, doubled quotes, commas and newlines (each new physical
    line starts with a marker, so it never looks like the start of a csvlog record)."""
    piece = st.text(st.sampled_from("ab ,\"'x;"), max_size=12)
    return st.builds(
        lambda mark, parts: mark + "\n#".join(parts),
        st.sampled_from(MARKERS),
        st.lists(piece, min_size=1, max_size=3),
    )


@pytest.mark.parametrize("spec_id", ["csvlog", "csvlog-multiline", "mapped-csv"])
def test_csv_quoted_garbage_records_are_quarantined(spec_id: str) -> None:
    """Well-quoted CSV records that are not log records (embedded newlines, doubled
    quotes, commas): real records are intact; each garbage record is rejected at its first
    line, and its other lines, if reported apart, are reported at their own numbers."""
    spec = SPEC[spec_id]
    record = st.lists(tortured_field(), min_size=1, max_size=4).map(csv_record)

    @fuzz()
    @given(
        inserts=st.lists(
            st.tuples(st.sampled_from(spec.boundaries()), record), min_size=1, max_size=4
        )
    )
    def check(inserts: list[tuple[int, list[bytes]]]) -> None:
        lines, marks = interleave(spec.lines, inserts)
        result = run(spec, _join(lines))
        assert_quarantine_well_formed(result)
        assert_same_events(result.events, clean(spec.id))
        firsts = {m[0] for m in marks}
        garbage = {n for m in marks for n in m}
        assert firsts <= set(result.rejected), "a garbage record is not in the quarantine"
        assert set(result.rejected) <= garbage, "a real record's line is in the quarantine"

    check()


@pytest.mark.parametrize("spec_id", ["csvlog", "csvlog-multiline"])
def test_csvlog_unbalanced_quote_does_not_take_its_neighbours(spec_id: str) -> None:
    """A garbage line with an odd number of quotes between csvlog records: rejected by
    itself, while every real record (each starts with its timestamp) still gives its event."""
    spec = SPEC[spec_id]
    odd = st.builds(
        lambda mark, a, b: f'{mark}{a}"{b}'.encode(),
        st.sampled_from(MARKERS),
        st.text(st.sampled_from('ab ,"x'), max_size=10).filter(lambda s: s.count('"') % 2 == 0),
        st.text(st.sampled_from("ab ,x"), max_size=10),
    )
    positions = st.sampled_from(spec.boundaries())

    @fuzz()
    @given(inserts=st.lists(st.tuples(positions, odd.map(lambda g: [g])), min_size=1, max_size=3))
    def check(inserts: list[tuple[int, list[bytes]]]) -> None:
        lines, marks = interleave(spec.lines, inserts)
        result = run(spec, _join(lines))
        assert_quarantine_well_formed(result)
        assert_same_events(result.events, clean(spec.id))
        assert result.rejected == sorted(m[0] for m in marks)

    check()


def test_mapped_csv_stray_quote_keeps_the_rows_before_it() -> None:
    """A generic CSV export has no record-start pattern to resynchronise on after a stray
    quote, but the rows before it are unambiguous and must still be read."""
    spec = SPEC["mapped-csv"]
    lines = spec.lines
    result = run(spec, _join([*lines[:3], b'oops "unbalanced', *lines[3:]]))
    assert_quarantine_well_formed(result)
    before = run(spec, _join(lines[:3])).events  # header and the first two rows
    assert before.height == 2
    assert not (rows_of(before) - rows_of(result.events)), "rows before the stray quote were lost"


# ---------------------------------------------------------------------------------------
# Deeply nested JSON, giant lines, NUL bytes


def nested(depth: int, shape: str) -> bytes:
    if shape == "objects":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"pid":1,"x":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("spec_id", ["jsonlog", "mapped-ndjson"])
@pytest.mark.parametrize("shape", ["objects", "arrays"])
@pytest.mark.parametrize("depth", [64, 2_000, 100_000])
def test_deeply_nested_json_is_quarantined(spec_id: str, shape: str, depth: int) -> None:
    spec = SPEC[spec_id]
    lines, marks = interleave(spec.lines, [(2, [nested(depth, shape)])])
    started = time.monotonic()
    result = run(spec, _join(lines))
    assert time.monotonic() - started < 20
    assert_quarantine_well_formed(result)
    assert_same_events(result.events, clean(spec.id))
    assert result.rejected == [marks[0][0]]


def giant_garbage(spec: Spec) -> bytes:
    if spec.is_json:
        return b'{"note":"' + b"x" * 1_500_000 + b'"}'
    return b"x" * 1_500_000


@pytest.mark.parametrize("spec_id", ids(BASE_SPECS))
def test_giant_garbage_line_is_quarantined_capped(spec_id: str) -> None:
    spec = SPEC[spec_id]
    lines, marks = interleave(spec.lines, [(spec.boundaries()[2], [giant_garbage(spec)])])
    started = time.monotonic()
    result = run(spec, _join(lines))
    assert time.monotonic() - started < 20
    assert_quarantine_well_formed(result)
    assert_same_events(result.events, clean(spec.id))
    assert result.rejected == [marks[0][0]]
    assert len(result.rows[0]["raw"]) == QUARANTINE_RAW_CHARS


GIANT_QUERIES = {  # a statement of each spec's file, padded to 1.5 MB in its AUDIT record
    "jsonlog": b"SELECT * FROM customers;",
    "csvlog": b"SELECT * FROM customers;",
    "stderr": b"SELECT * FROM customers;",
    "syslog": b"SELECT * FROM people WHERE id < 100;",
    "mapped-ndjson": b"select * from sales.customers where id = 42",
    "mapped-csv": b"select * from sales.customers where id = 42",
}


@pytest.mark.parametrize("spec_id", ids(BASE_SPECS))
def test_giant_real_record_is_an_event_or_rejected_as_too_long(spec_id: str) -> None:
    """A real record with a 1.5 MB statement is never lost silently or taken for
    something else: it is its event (pgAudit's: with its text cut), or quarantined as
    ``too_long``."""
    spec = SPEC[spec_id]
    query = GIANT_QUERIES[spec.id]
    lines = spec.lines
    k = next(i for i, s in enumerate(lines) if query in s and (b"AUDIT" in s or spec.mapping))
    padded = query[:-1] + b" /* " + b"x" * 1_500_000 + b" */" + query[-1:]
    lines = [*lines[:k], lines[k].replace(query, padded, 1), *lines[k + 1 :]]
    result = run(spec, _join(lines))
    assert_quarantine_well_formed(result)
    is_giant = (pl.col(S.QUERY).str.len_chars() > 1_000_000) | pl.col(S.QUERY).str.contains(
        "[trovewatch: statement of 15000", literal=True
    )
    same_text = pl.col(S.QUERY).str.contains(query.decode(), literal=True)
    giant = result.events.filter(is_giant)
    # Every other event is as in the clean file.
    assert_same_events(
        result.events.filter(~is_giant, ~same_text), clean(spec.id).filter(~same_text)
    )
    if result.rows:
        assert [(r["line"], r["reason"]) for r in result.rows] == [(k + 1, Reason.TOO_LONG.value)]
        assert giant.is_empty()
    else:
        assert giant.height == 1
    if spec.id.startswith("pgaudit"):  # an IN-list pull is what a leak looks like: kept
        assert giant.height == 1 and not result.rows


@pytest.mark.parametrize("spec_id", ids(BASE_SPECS))
def test_a_run_of_nul_bytes_inside_a_log_loses_only_that_line(spec_id: str) -> None:
    """A log with a block of NUL bytes (what a crash can leave in a file being
    appended to) is still a log: the real lines are read, the NUL line is quarantined."""
    spec = SPEC[spec_id]
    lines, marks = interleave(spec.lines, [(spec.boundaries()[3], [b"\x00" * 512])])
    result = run(spec, _join(lines))
    assert_quarantine_well_formed(result)
    assert_same_events(result.events, clean(spec.id))
    assert result.rejected == [marks[0][0]]


@pytest.mark.parametrize("spec_id", ids(BASE_SPECS))
@pytest.mark.parametrize("damage", ["junk-after-magic", "cut-short"])
def test_corrupt_gzip_is_refused_as_not_a_log(spec_id: str, damage: str) -> None:
    """A .gz that does not decompress is refused with the documented error (the CLI
    turns it into exit 2), not some decompressor's exception."""
    spec = SPEC[spec_id]
    packed = gzip.compress(spec.data * 200)
    data = (
        b"\x1f\x8b" + b"junk" * 50 if damage == "junk-after-magic" else packed[: len(packed) // 2]
    )
    with pytest.raises(NotALogError, match="input"):
        run(spec, data)


# ---------------------------------------------------------------------------------------
# Known shapes of damage, as plain examples (each is also reachable by the properties)


def test_csvlog_garbage_first_line_does_not_lose_the_file() -> None:
    spec = SPEC["csvlog"]
    result = run(spec, b"garbage before the first record\n" + spec.data)
    assert_same_events(result.events, clean("csvlog"))
    assert result.rejected == [1]


def test_csvlog_invalid_utf8_line_does_not_double_count_rows() -> None:
    """One line of bad bytes must not change the events, e.g. a statement logged once
    per relation (the self-join) must still count its rows once."""
    spec = SPEC["csvlog"]
    lines, _ = interleave(spec.lines, [(5, [b"\xff\xfe not utf-8"])])
    result = run(spec, _join(lines))
    assert_same_events(result.events, clean("csvlog"))
    join = result.events.filter(pl.col(S.QUERY).str.contains("JOIN customers d", literal=True))
    assert join[S.ROWS].to_list() == [9]


def test_csvlog_stray_quote_does_not_take_the_record_before_it() -> None:
    """A stray line opening a quote right after alice's 5,000-row read: the stray line is
    the reject, and the read is still an event."""
    spec = SPEC["csvlog"]
    lines = spec.lines
    k = next(i for i, s in enumerate(lines) if b"AUDIT: SESSION,3,1,READ" in s)
    result = run(spec, _join([*lines[: k + 1], b'"y', *lines[k + 1 :]]))
    assert result.rejected == [k + 2]
    assert_same_events(result.events, clean("csvlog"))


def test_csvlog_file_of_one_unreadable_record_is_quarantined() -> None:
    """A csvlog holding a single record that is not valid CSV (a stray quote inside an
    unquoted field, found by the splice test): rejected, not an endless retry."""
    record = (
        b"2026-11-28 06:55:02.404 UTC,,,4518,,6b0a7ac6.11a6,2,,2026-11-28 06:55:02 UTC,,0"
        b'\t499""",,,,,,,,,"","postmaster",,0\n'
    )
    result = run(SPEC["csvlog"], record)
    assert result.events.is_empty()
    assert result.rejected == [1]


def test_csvlog_slow_path_keeps_session_attributes() -> None:
    """One line of bad bytes must not change other records' events: the refused logins
    keep the application name their session's connection lines carry."""
    spec = SPEC["csvlog-multiline"]
    result = run(spec, _join([*spec.lines[:10], b"\xff not utf-8", *spec.lines[10:]]))
    assert result.rejected == [11]
    assert_same_events(result.events, clean("csvlog-multiline"))


def test_stderr_prefix_is_still_found_with_garbage_in_the_head() -> None:
    """--format pgaudit-stderr without --log-line-prefix: a few stray lines at the top of
    the file (a process writing to the server's stderr) must not lose every record."""
    spec = SPEC["stderr"]
    data = b"stray line one\nstray line two\nstray line three\n" + spec.data
    result = run(spec, data, told=Told())
    assert_same_events(result.events, clean("stderr"))
    assert result.rejected == [1, 2, 3]


def test_stderr_truncated_audit_record_keeps_its_raw_text_in_quarantine() -> None:
    spec = SPEC["stderr"]
    lines = spec.lines
    k = next(i for i, s in enumerate(lines) if b"AUDIT: SESSION,3,1,READ" in s)
    cut = lines[k][: lines[k].index(b"READ") + 4]
    result = run(spec, _join([*lines[:k], cut, *lines[k + 1 :]]))
    assert [(r["line"], r["reason"]) for r in result.rows] == [(k + 1, "truncated")]
    assert result.rows[0]["raw"] == cut.decode()


@pytest.mark.parametrize("spec_id", ["jsonlog", "mapped-ndjson"])
@pytest.mark.parametrize(
    "line",
    ["{not json}", '{"a": 1', "[1, 2]", '"a string"', "42", "garbage", "{'single': 'quotes'}"],
)
def test_lines_that_are_not_json_objects_are_invalid_json(spec_id: str, line: str) -> None:
    spec = SPEC[spec_id]
    lines, marks = interleave(spec.lines, [(1, [line.encode()])])
    result = run(spec, _join(lines))
    assert [(r["line"], r["reason"]) for r in result.rows] == [(marks[0][0], "invalid_json")]


# ---------------------------------------------------------------------------------------
# Random bytes and random splices of real lines: never a crash, rejects well-formed


def allowed_error(exc: Exception, data: bytes, format_name: str) -> bool:
    """The documented refusals of an input that is not a log at all."""
    if not isinstance(exc, NotALogError):
        return False
    return format_name == "auto" or data[:2] == b"\x1f\x8b"


def fuzz_run(spec: Spec, data: bytes, format_name: str) -> Run | None:
    try:
        return run(spec, data, format_name)
    except (NotALogError, MappingError) as exc:
        if allowed_error(exc, data, format_name):
            return None
        raise


def expected_rejects(spec: Spec, result: Run) -> set[int]:
    """Line numbers that cannot be a record of ``spec``'s format, so must be rejected."""
    out = set()
    prefix = re.compile(_prefix_regex())
    for n, line in enumerate(result.text_lines, 1):
        if spec.is_json:
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                value = None
            if not isinstance(value, dict) or any(value.get(k) is None for k in spec.required):
                out.add(n)
        elif (
            spec.kind == "stderr" and line and not line.startswith("\t") and not prefix.match(line)
        ):
            out.add(n)
    return out


def _prefix_regex() -> str:
    from detector.formats.pg_stderr import prefix_regex

    return prefix_regex(PREFIX)


FORMAT_RUNS = [pytest.param(s.id, s.format_name, id=s.id) for s in BASE_SPECS] + [
    pytest.param("jsonlog", "auto", id="auto")
]


def header(spec: Spec) -> bytes:
    return spec.lines[0] + b"\n" if spec.kind == "csv" else b""


def check_fuzzed(spec: Spec, data: bytes, format_name: str) -> None:
    result = fuzz_run(spec, data, format_name)
    if result is None:
        return
    assert_quarantine_well_formed(result)
    if format_name != "auto":
        assert_raw_is_the_line(result, spec)
        missing = expected_rejects(spec, result) - set(result.rejected)
        assert not missing, f"lines neither read nor quarantined: {sorted(missing)[:5]}"


@pytest.mark.parametrize(("spec_id", "format_name"), FORMAT_RUNS)
def test_random_bytes_never_crash(spec_id: str, format_name: str) -> None:
    spec = SPEC[spec_id]

    @fuzz(examples=20)
    @given(raw=st.binary(max_size=3_000))
    def check(raw: bytes) -> None:
        check_fuzzed(spec, header(spec) + raw, format_name)

    check()


@pytest.mark.parametrize(("spec_id", "format_name"), FORMAT_RUNS)
def test_splices_of_real_lines_never_crash(spec_id: str, format_name: str) -> None:
    """Lines made of random slices of the real file's lines, glued and split anew."""
    spec = SPEC[spec_id]
    blob = spec.data
    piece = st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 300)).map(
        lambda t: blob[t[0] : t[0] + t[1]]
    )
    separator = st.sampled_from([b"", b"\n", b"\r\n", b'"', b"\t", b"\n\n"])

    @fuzz(examples=20)
    @given(parts=st.lists(st.tuples(piece, separator), min_size=1, max_size=12))
    def check(parts: list[tuple[bytes, bytes]]) -> None:
        check_fuzzed(spec, header(spec) + b"".join(p + s for p, s in parts), format_name)

    check()


def test_not_a_log_at_all_is_refused_with_auto() -> None:
    """The documented refusal: --format auto on text that is no log format at all."""
    with pytest.raises(NotALogError, match="not an audit log in a format trovewatch knows"):
        run(SPEC["jsonlog"], b"hello\nthis is a shopping list\n", "auto")
