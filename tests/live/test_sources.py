"""Compressed archives under a followed glob: read once, in order, resumable."""

from __future__ import annotations

import gzip
import io
import re
import time
from pathlib import Path

from detector.live.sources import Archives, Stdin
from detector.reader import CUT_MARKER_RE, LONG_LINE_BYTES


def drain(archives: Archives, budget: int) -> bytes:
    data = b""
    while not archives.caught_up():
        data += b"".join(read.data for read in archives.poll(budget))
    return data


def test_an_archive_is_read_once_across_polls_and_restarts(tmp_path: Path) -> None:
    text = b"".join(b"line %06d of the rotated log\n" % i for i in range(5_000))
    (tmp_path / "old.log.gz").write_bytes(gzip.compress(text))
    pattern = str(tmp_path / "*.gz")

    def fresh(saved: dict[str, object] | None = None) -> Archives:
        return Archives(pattern, saved, record_start=lambda path: None, chunk_bytes=4096)

    first = fresh()
    head = b"".join(read.data for read in first.poll(20_000))  # stops part-way
    assert 0 < len(head) < len(text)
    restarted = fresh(first.positions())  # as after a crash with that checkpoint
    assert head + drain(restarted, 20_000) == text
    assert drain(fresh(restarted.positions()), 20_000) == b""  # done: never again


def test_stdin_without_newlines_is_never_held_whole() -> None:
    """5 MB of standard input with no newline, then a line: it comes as one line cut
    to its head and end, and the line after it is whole."""
    stdin = Stdin(io.BytesIO(b"first\n" + b"x" * 5_000_000 + b"END\nnext\n"), block_bytes=1 << 16)
    data, first = b"", None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not data.endswith(b"next\n"):
        for read in stdin.poll(1 << 20):
            first = read.first_line if first is None else first
            data += read.data
            assert len(stdin._carry) <= LONG_LINE_BYTES  # held: at most a line's head
    lines = data.split(b"\n")
    assert first == 1 and lines[0] == b"first" and lines[2] == b"next"
    assert lines[1].endswith(b"END") and len(lines[1]) < LONG_LINE_BYTES + 5_000
    assert re.search(CUT_MARKER_RE.encode(), lines[1])
