"""Detection meets any text: each format's ``sniff`` answers yes or no for any head
(giant lines, stray quotes, unbalanced brackets and braces), so that ``score`` refuses
a file that is no log in one line and ``serve`` goes on reading its other files; and a
real log whose first line is a giant statement is still detected as its format.

(Binary files are refused before detection: ``looks_binary``; NUL bytes inside text
lines are the parsers' to quarantine, fuzzed in ``test_fuzz.py``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import formats
from detector.pipeline import read_events
from detector.reader import NotALogError
from tests.conftest import REFERENCE_PG
from tests.formats.common import fuzz_settings

# Runs of one piece, long enough to pass the csv module's field limit (131,072) and
# Polars' and the regexes' usual sizes; and short random text around them.
PIECES = (
    "a",
    "\x00",
    "\ufffd",
    '"',
    ",",
    '{"a":',
    "[",
    " ",
    "a,b",
    "\\",
    '""',
    "\t",
    "2026-10-19 ",
)
giant = st.builds(lambda piece, n: piece * n, st.sampled_from(PIECES), st.integers(1, 150_000))
line = st.one_of(st.text(max_size=200), giant)
heads = st.lists(line, min_size=1, max_size=5)
REFERENCE_CSVLOG = REFERENCE_PG / "postgresql.csv"


@pytest.mark.parametrize("name", formats.NATIVE)
def test_every_formats_sniff_answers_any_head(name: str) -> None:
    fmt = formats.native(name)

    @fuzz_settings(40)
    @given(head=heads)
    def check(head: list[str]) -> None:
        assert fmt.sniff(head) in (True, False)

    check()


@pytest.mark.parametrize(
    "text",
    ["a" * 200_000, '"' + "a" * 200_000, "x," * 100_000, '{"a": "' + "b" * 200_000],
    ids=["letters", "open-quote", "commas", "open-json"],
)
def test_a_text_file_of_one_giant_line_is_refused_as_not_a_log(tmp_path: Path, text: str) -> None:
    path = tmp_path / "giant.log"
    path.write_text(text + "\n")
    with pytest.raises(NotALogError, match="not an audit log"):
        read_events([path])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_log_is_refused_naming_its_encoding_and_the_fix(
    tmp_path: Path, encoding: str
) -> None:
    """What Windows tools write as "Unicode" (SQL Server audit exports, say) is named as
    UTF-16 with the conversion to make, not called binary."""
    path = tmp_path / "audit.csv"
    path.write_bytes(REFERENCE_CSVLOG.read_text(encoding="utf-8").encode(encoding))
    with pytest.raises(NotALogError, match=r"UTF-16 text; .*iconv -f UTF-16 -t UTF-8"):
        read_events([path])
    zeros = tmp_path / "zeros.log"
    zeros.write_bytes(b"\0" * 10_000)
    with pytest.raises(NotALogError, match="binary data, not a text log"):
        read_events([zeros])
