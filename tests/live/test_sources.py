"""Compressed archives under a followed glob: read once, in order, resumable; a
compressed copy of a followed file (logrotate's ``compress``) adds nothing read twice."""

from __future__ import annotations

import gzip
import io
import os
import re
import time
from pathlib import Path

import pytest

from detector.live.sources import Archives, Source, Stdin, open_sources
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


def _lines(first: int, n: int) -> bytes:
    return b"".join(b"line %06d of the server's log\n" % i for i in range(first, first + n))


def _poll_all(sources: list[Source], rounds: int = 3, budget: int = 1 << 20) -> bytes:
    """What a few service steps read from ``sources`` (each polled as the service does)."""
    data = b""
    for _ in range(rounds):
        for source in sources:
            data += b"".join(read.data for read in source.poll(budget))
    return data


def _open(pattern: str, saved: dict[str, object] | None = None) -> list[Source]:
    return open_sources(
        [pattern], dict(saved or {}), max_line_bytes=1 << 20, record_start=lambda p: None
    )


def _saved(sources: list[Source]) -> dict[str, object]:
    from detector.live.sources import source_key

    return {source_key(s): s.positions() for s in sources}


def test_a_followed_log_rotated_and_compressed_is_not_read_again(tmp_path: Path) -> None:
    """logrotate with ``compress`` (Debian's postgresql-common: ``delaycompress``) under
    ``--follow 'postgresql.log*'``: the log, read as it was written, is renamed to
    ``.1``, later compressed to ``.1.gz`` and ``.1`` deleted. The archive is the same
    lines: they were read once already (before: read whole again, every total doubled)."""
    live = tmp_path / "postgresql.log"
    live.write_bytes(_lines(0, 3000))
    sources = _open(str(tmp_path / "postgresql.log*"))
    data = _poll_all(sources)
    live.rename(tmp_path / "postgresql.log.1")
    live.write_bytes(_lines(3000, 10))
    data += _poll_all(sources)
    rotated = tmp_path / "postgresql.log.1"
    (tmp_path / "postgresql.log.1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
    rotated.unlink()
    data += _poll_all(sources)
    assert data == _lines(0, 3010)
    # and after a restart, from the checkpoint
    assert _poll_all(_open(str(tmp_path / "postgresql.log*"), _saved(sources))) == b""


def test_a_log_rotated_and_compressed_while_stopped_gives_its_unread_tail_once(
    tmp_path: Path,
) -> None:
    """Lines written after the last checkpoint, then the log rotated and compressed while
    ``serve`` is stopped: the tail nobody read comes from the archive, once."""
    live = tmp_path / "postgresql.log"
    live.write_bytes(_lines(0, 3000))
    sources = _open(str(tmp_path / "postgresql.log*"))
    data = _poll_all(sources)
    saved = _saved(sources)  # the last checkpoint; then it is stopped
    for s in sources:
        s.close()
    with live.open("ab") as fh:
        fh.write(_lines(3000, 500))
    (tmp_path / "postgresql.log.1.gz").write_bytes(gzip.compress(live.read_bytes()))
    live.write_bytes(_lines(3500, 10))  # the server's new log
    data += _poll_all(_open(str(tmp_path / "postgresql.log*"), saved))
    assert sorted(data.splitlines()) == _lines(0, 3510).splitlines()


def _rotated(directory: Path, name: str, parts: list[bytes], plain: int = 2) -> None:
    """``parts`` (oldest first) as logrotate leaves them with ``compress`` and
    ``delaycompress``: ``name.N.gz`` ... ``name.2.gz``, then ``name.1`` and ``name``
    plain, each last written in turn."""
    count = len(parts)
    for age, part in enumerate(parts):
        number = count - 1 - age
        path = directory / (f"{name}.{number}" if number else name)
        if age < count - plain:
            path = path.with_name(path.name + ".gz")
            part = gzip.compress(part)
        path.write_bytes(part)
        os.utime(path, ns=(10**18 + age * 10**9,) * 2)


def _poll_until_done(sources: list[Source], budget: int) -> bytes:
    data = b""
    for _ in range(10_000):
        data += _poll_all(sources, rounds=1, budget=budget)
        if all(s.caught_up() for s in sources):
            return data
    raise AssertionError("never caught up")


def test_a_servers_rotated_logs_are_read_oldest_first_archives_before_the_plain_files(
    tmp_path: Path,
) -> None:
    """``serve`` started beside a server's rotated logs reads them in the order they were
    written, a read at a time: ``slow.log.11.gz`` (the oldest) to ``slow.log.2.gz``, then
    ``slow.log.1`` and ``slow.log``. Windows close behind what was read; out of turn
    (archives in name order, ``.10`` before ``.2``, and beside the plain files), the
    older ones' records were late: 520,071 events, and 91,835 of 188,507 windows counted
    otherwise than ``score`` counts them, replaying 28 days of a MariaDB server's on UTC
    (``bench/replay_mariadb.py --as-rotated``)."""
    parts = [_lines(i * 300, 300) for i in range(12)]
    _rotated(tmp_path, "slow.log", parts)
    data = _poll_until_done(_open(str(tmp_path / "slow.log*")), budget=4096)
    assert data == b"".join(parts)


def test_a_damaged_archive_is_read_to_its_damage_named_and_the_logs_after_it_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An archive damaged in the middle (a disk error, a copy gone wrong): its records
    before the damage are read, the ones after it are reported lost, by file, among the
    service's problems, and the logs after it are read (before: every pass failed on it
    and began again from the last checkpoint, nothing after it ever read)."""
    parts = [_lines(i * 3000, 3000) for i in range(4)]
    _rotated(tmp_path, "slow.log", parts)
    damaged = tmp_path / "slow.log.2.gz"
    packed = bytearray(damaged.read_bytes())
    packed[len(packed) // 2 : len(packed) // 2 + 64] = b"\xff" * 64
    damaged.write_bytes(packed)
    os.utime(damaged, ns=(10**18 + 10**9,) * 2)  # long ago: not one being written
    sources = _open(str(tmp_path / "slow.log*"))
    data = _poll_until_done(sources, budget=1 << 20)
    kept = data[len(parts[0]) : len(data) - len(parts[2]) - len(parts[3])]
    assert data.startswith(parts[0]) and data.endswith(parts[2] + parts[3])
    assert parts[1].startswith(kept) and len(kept) < len(parts[1])
    (problem,) = [p for s in sources for p in s.problems()]
    assert problem.startswith(f"{damaged}: a damaged archive, not read past line ")
    assert problem in caplog.text
    restarted = _open(str(tmp_path / "slow.log*"), _saved(sources))
    assert _poll_until_done(restarted, budget=1 << 20) == b""  # not tried again
    assert [p for s in restarted for p in s.problems()] == [problem]
    damaged.rename(tmp_path / "damaged-slow.log.2.gz.bad")  # the loss known: moved away
    assert not [p for s in restarted for p in s.problems()]


def test_an_archive_still_being_compressed_is_read_once_whole(tmp_path: Path) -> None:
    """logrotate compressing a rotated log the follower never saw (rotated while
    ``serve`` was stopped): half written, the archive ends too soon. It is read as far
    as it goes and waited for, not given up as damaged; then read on to its end. The
    log being written is not held back for it meanwhile (a writer of ``.gz`` files
    would hold it for ever)."""
    text = _lines(0, 20_000)
    packed = gzip.compress(text)
    archive = tmp_path / "slow.log.2.gz"
    archive.write_bytes(packed[: len(packed) // 2])  # now: still being written
    (tmp_path / "slow.log").write_bytes(_lines(20_000, 10))
    sources = _open(str(tmp_path / "slow.log*"))
    data = _poll_all(sources, rounds=3)
    assert data.endswith(_lines(20_000, 10))  # read meanwhile
    assert not all(s.caught_up() for s in sources)
    assert not [p for s in sources for p in s.problems()]
    archive.write_bytes(packed)
    data += _poll_until_done(sources, budget=1 << 20)
    assert sorted(data.splitlines()) == _lines(0, 20_010).splitlines()  # each line once
