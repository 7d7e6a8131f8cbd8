"""The reader: lines over the limit are cut to their head and end, memory stays bounded."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from detector import reader
from detector.reader import CUT_MARKER_RE, CUT_TAIL_BYTES, LineCap, read_chunks

TAIL = 8


def assert_cut(got: bytes, data: bytes, limit: int) -> None:
    """Each line of ``data`` is, in ``got``, whole or (over ``limit``) a head of it (at
    most ``limit`` bytes: a quote, backslash or part of a character is not left at the
    cut), a marker giving the bytes cut, and an end of it."""
    lines, out = data.split(b"\n"), got.split(b"\n")
    assert len(out) == len(lines)
    for line, cut in zip(lines, out, strict=True):
        found = re.search(CUT_MARKER_RE.encode(), cut)
        if len(line) <= limit or found is None:
            assert cut == line
            continue
        head, tail = cut[: found.start()], cut[found.end() :]
        assert line.startswith(head) and line.endswith(tail) and len(tail) <= TAIL
        assert len(head) <= limit
        assert len(head) + int(found.group(1)) + len(tail) == len(line)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(st.integers(0, 60), st.sampled_from([b"a", b'"', b"\\", b"\xc3\xa9", b","])),
        max_size=40,
    ),
    splits=st.lists(st.integers(1, 50), max_size=10),
    limit=st.integers(20, 60),
)
def test_lines_over_the_limit_are_cut_wherever_the_blocks_end(
    pieces: list[tuple[int, bytes]], splits: list[int], limit: int
) -> None:
    data = b"".join(unit * n + (b"\n" if i % 3 == 2 else b"") for i, (n, unit) in enumerate(pieces))
    cap = LineCap(limit, TAIL)
    out, at = [], 0
    for size in splits:
        out.append(cap.feed(data[at : at + size]))
        at += size
    out.append(cap.feed(data[at:]))
    out.append(cap.close())
    assert_cut(b"".join(out), data, limit)


def test_a_cut_line_says_how_many_bytes_were_cut_and_keeps_its_end() -> None:
    line = b'AUDIT: SESSION,1,1,READ,SELECT,TABLE,big.people,"SELECT ' + b"1," * 600_000
    line += b'1",<not logged>,200000'
    [chunk] = list(read_chunks_of(line + b"\n"))
    assert chunk.startswith(line[:1000]) and chunk.endswith(b",<not logged>,200000\n")
    found = re.search(CUT_MARKER_RE.encode(), chunk)
    assert found is not None
    assert len(chunk) - len(found.group(0)) + int(found.group(1)) == len(line) + 1


def read_chunks_of(data: bytes, tmp: Path | None = None) -> list[bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "log"
        path.write_bytes(data)
        return [c.data for c in read_chunks(path, chunk_bytes=1 << 20)]


def test_garbage_without_newlines_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """30 MB with no newline, between real lines: no chunk holds more than one cut line
    beside whole ones, whatever the file's size."""
    path = tmp_path / "garbage.log"
    with path.open("wb") as fh:
        fh.write(b"first line\n")
        for _ in range(30):
            fh.write(b"\x01garbage" * (1 << 17))
        fh.write(b"\nlast line\n")
    chunks = list(read_chunks(path, chunk_bytes=1 << 20))
    bound = (1 << 20) + reader.LONG_LINE_BYTES + CUT_TAIL_BYTES + 100  # a chunk, a cut line
    assert max(len(c.data) for c in chunks) < bound
    text = b"".join(c.data for c in chunks)
    assert text.startswith(b"first line\n") and text.endswith(b"\nlast line\n")
    assert text.count(b"\n") == 3
    assert sum(c.n_lines for c in chunks) == 3


def test_the_head_passes_over_lines_too_long_for_it(tmp_path: Path) -> None:
    """Detection's head leaves out a line longer than itself (a giant statement) and
    takes the lines after it, from a gzip archive too; a file of nothing but such a
    line gives that line, cut."""

    short = [f"line {i}" for i in range(30)]
    body = ("x" * 300_000 + "\n" + "\n".join(short) + "\n").encode()
    plain, packed = tmp_path / "a.log", tmp_path / "a.log.gz"
    plain.write_bytes(body)
    packed.write_bytes(gzip.compress(body))
    for path in (plain, packed):
        assert reader.head_lines(path) == short[:20]
    alone = tmp_path / "alone.log"
    alone.write_bytes(b"y" * 300_000)
    assert reader.head_lines(alone) == ["y" * 256 * 1024]
