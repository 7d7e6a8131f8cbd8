"""The stderr head: the cheap expression for the usual line gives the general one's fields.

``strict_regex`` is tried first on every line; where it is sure, the general expression
(``head_regex``) is not run. Lines built from the characters that decide where a field
ends (spaces, ``@``, brackets, colons, severities inside application names) must get the
same groups either way, or be left to the general expression.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import schema as S
from detector.formats.pg_stderr import (
    COMMON_PREFIXES,
    _heads,
    head_regex,
    strict_regex,
)
from tests.conftest import PG_SCENARIOS, parse
from tests.formats.common import fuzz_settings

# The common prefixes with a strict head (RDS's ``%t:%r:...`` has none: its time zone runs
# into the colon after it), and two more.
PREFIXES = (
    *(p for p in COMMON_PREFIXES if p != "%t:%r:%u@%d:[%p]:"),
    "%m [%p] %c %l %q%u@%d %r %a ",
    "%t [%p-%l] %q%u@%d,%a,%e ",
)
PIECES = (
    "2026-11-28 06:55:02.403",
    "2026-11-28 06:55:02",
    " UTC",
    " +01",
    " [",
    "] ",
    "]: ",
    "[4518]",
    "[3-1] ",
    "4518",
    "6b0a85b6.3c35",
    "alice",
    "@",
    "[unknown]",
    "127.0.0.1(45030)",
    "[local]",
    "user=",
    ",db=",
    ",app=",
    ",client=",
    "psql",
    "pg Admin",
    "LOG:  ",
    "ERROR:  ",
    "LOCATION:  ",
    "DEBUG1:  ",
    "FOO:  ",
    "LOG: ",
    "AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1;,<none>",
    " ",
    "  ",
    ":",
    ",",
    "(",
    ")",
    "-",
    "x",
)


USUAL = {
    "m": "2026-11-28 06:55:02.403 UTC",
    "t": "2026-11-28 06:55:02 UTC",
    "p": "4518",
    "c": "6b0a85b6.3c35",
    "l": "3",
    "u": "alice",
    "d": "shop",
    "r": "127.0.0.1(45030)",
    "h": "127.0.0.1",
    "a": "psql",
    "e": "00000",
}


def _line(prefix: str, fields: list[str | None]) -> str:
    """A line with ``prefix``'s escapes replaced by ``fields`` in turn (None: the usual
    value, :data:`USUAL`; the usual ones after the last field)."""
    out, i, k = [], 0, 0
    while i < len(prefix):
        if prefix[i] == "%" and prefix[i + 1] != "q":
            field = fields[k] if k < len(fields) else None
            out.append(USUAL[prefix[i + 1]] if field is None else field)
            k += 1
        if prefix[i] == "%":
            i += 2
            continue
        out.append(prefix[i])
        i += 1
    return "".join(out)


def _groups(prefix: str, lines: list[str]) -> tuple[list[dict[str, object]], ...]:
    """Each line's ``_fields`` by the general expression, and by :func:`_heads`."""
    frame = pl.DataFrame({"line_no": range(len(lines)), "line": lines})
    rx, strict = head_regex(prefix), strict_regex(prefix)
    assert strict is not None
    general = frame.with_columns(pl.col("line").str.extract_groups(rx).alias("_fields"))
    return general.to_dicts(), _heads(frame, rx, strict).to_dicts()


@pytest.mark.parametrize("prefix", PREFIXES)
@fuzz_settings(100)
@given(data=st.data())
def test_strict_head_gives_the_general_fields(prefix: str, data: st.DataObject) -> None:
    # Usual lines with one or two fields changed: most still end where they should.
    piece = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map("".join)
    changed = st.lists(st.none() | piece, min_size=1, max_size=6).filter(
        lambda fields: sum(f is not None for f in fields) <= 2
    )
    severity = st.sampled_from(["LOG:  ", "ERROR:  ", "STATEMENT:  ", "FOO:  ", "LOG: ", ""])
    tail = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)
    lines = [
        _line(prefix, data.draw(changed)) + data.draw(severity) + data.draw(tail) for _ in range(8)
    ]
    general, ours = _groups(prefix, lines)
    assert ours == general


@pytest.mark.parametrize("prefix", PREFIXES)
def test_usual_lines_are_read_by_the_strict_head(prefix: str) -> None:
    strict = strict_regex(prefix)
    assert strict is not None
    line = _line(prefix, [None]) + "LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1;,<none>"
    groups = pl.Series([line]).str.extract_groups(strict)
    assert groups.struct.field("severity").to_list() == ["LOG"]


@pytest.mark.parametrize("prefix", ["%t:%r:%u@%d:[%p]:", "%-10a %u ", "%u%d ", "%p%q "])
def test_prefixes_without_a_sure_strict_head_use_the_general_one(prefix: str) -> None:
    assert strict_regex(prefix) is None


def _cut(tmp_path: Path, log: Path, last: int) -> Path:
    """The first ``last`` lines of a real log: what a rotation right there leaves."""
    lines = log.read_text().splitlines(keepends=True)
    out = tmp_path / f"cut{last}.log"
    out.write_text("".join(lines[:last]))
    return out


def test_a_files_last_line_belongs_to_the_statement_before_it(tmp_path: Path) -> None:
    """A rotated file may end on the second relation line of a statement, or on its
    ``duration:`` line: the statement is still counted once, with its duration."""
    log = PG_SCENARIOS / "rows_relation_param_on" / "postgresql.log"
    lines = log.read_text().splitlines()
    full, _ = parse(log)
    # a statement logged once per relation (a join): cut after its second line
    second = next(
        i
        for i in range(1, len(lines))
        if "AUDIT: SESSION," in lines[i]
        and "AUDIT: SESSION," in lines[i - 1]
        and lines[i].split("AUDIT: ")[1].split(",")[1:3]
        == lines[i - 1].split("AUDIT: ")[1].split(",")[1:3]
    )
    events, quarantine = parse(_cut(tmp_path, log, second + 1))
    assert quarantine.total == 0
    stmt_id = ".".join(lines[second].split("AUDIT: ")[1].split(",")[1:3])

    def the_join(frame: pl.DataFrame) -> pl.DataFrame:
        at = pl.col(S.TIME).dt.strftime("%Y-%m-%d %H:%M:%S%.3f") == lines[second][:23]
        return frame.filter(pl.col(S.STATEMENT_ID) == stmt_id, at)

    assert the_join(full).height == 1 and len(the_join(full)[S.OBJECTS][0]) == 2
    assert (
        the_join(events).select(S.ROWS, S.OBJECTS).to_dicts()
        == the_join(full).select(S.ROWS, S.OBJECTS).to_dicts()
    )
    # an audited read ending the file with its duration line
    duration = next(
        i
        for i in range(1, len(lines))
        if "  duration: " in lines[i] and ",READ,SELECT," in lines[i - 1]
    )
    events, _ = parse(_cut(tmp_path, log, duration + 1))
    assert (
        events.row(-1, named=True)[S.DURATION_MS]
        == full.row(events.height - 1, named=True)[S.DURATION_MS]
    )
    assert events.row(-1, named=True)[S.DURATION_MS] is not None
