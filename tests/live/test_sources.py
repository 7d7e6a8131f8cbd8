"""Compressed archives under a followed glob: read once, in order, resumable."""

from __future__ import annotations

import gzip
from pathlib import Path

from detector.live.sources import Archives


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
