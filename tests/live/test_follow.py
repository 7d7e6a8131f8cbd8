"""The file follower: every line exactly once, in order, through rotation, truncation,
restarts and giant lines. Real files in a temporary directory; a fake clock for
``idle_flush``; a model-based test (Hypothesis state machine) at the end."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from detector.live.follow import TOO_LONG_KEPT, Follower, Read, rotated_from
from detector.reader import CUT_TAIL_BYTES, Chunk, cut_marker
from detector.rejects import MAX_LINE_CHARS


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def lines(reads: Iterable[Read]) -> list[bytes]:
    """The lines in the reads' data, in order (a released last line counts too)."""
    out: list[bytes] = []
    for read in reads:
        parts = read.data.split(b"\n")
        if parts[-1] == b"":
            parts.pop()
        out += parts
    return out


def numbered(reads: Iterable[Read]) -> list[tuple[str, int, bytes]]:
    """(path, line number, line) for every line of the reads."""
    out = []
    for read in reads:
        for i, line in enumerate(lines([read])):
            out.append((read.source, read.first_line + i, line))
    return out


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def block(prefix: str, first: int, n: int) -> bytes:
    return b"".join(f"{prefix}{i}\n".encode() for i in range(first, first + n))


def restarted(follower: Follower, pattern: str, **kw: Any) -> Follower:
    """A new follower from the old one's positions, through JSON as a checkpoint would."""
    saved = json.loads(json.dumps(follower.positions()))
    follower.close()
    return Follower([pattern], saved, **kw)


def drain(follower: Follower, clock: Clock | None = None) -> list[Read]:
    """Poll until nothing more comes; with a clock, then let held-back tails go."""
    reads: list[Read] = []
    for _ in range(2 if clock else 1):
        for _ in range(100):
            got = follower.poll()
            reads += got
            if not got and follower.caught_up():
                break
        if clock:  # a last line without its newline waits the longest
            clock.advance(follower.partial_flush + 1)
    return reads


# ---------------------------------------------------------------------------------------
# Growing files


def test_appends_across_polls_partial_line_held_back_then_completed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"one\ntwo\nthr")
    follower = Follower([str(log)])

    first = follower.poll()
    assert lines(first) == [b"one", b"two"]
    assert (first[0].first_line, first[0].start, first[0].end) == (1, 0, 8)
    assert follower.poll() == []  # not grown: nothing

    append(log, b"ee\nfour\n")
    second = follower.poll()
    assert numbered(second) == [(str(log), 3, b"three"), (str(log), 4, b"four")]
    assert follower.caught_up()
    assert follower.lag_bytes() == {str(log): 0}


def test_partial_last_line_released_once_the_file_is_idle_for_partial_flush(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"one\nno newline yet")
    clock = Clock()
    follower = Follower([str(log)], idle_flush=2.0, partial_flush=60.0, clock=clock)
    assert lines(follower.poll()) == [b"one"]
    clock.advance(30.0)  # past idle_flush: a line without its newline still waits
    assert follower.poll() == []
    assert follower.lag_bytes() == {str(log): 14}  # said in the lag meanwhile
    clock.advance(31.0)
    released = follower.poll()
    assert numbered(released) == [(str(log), 2, b"no newline yet")]
    append(log, b"next\n")  # after a release, new bytes are a new line
    assert numbered(follower.poll()) == [(str(log), 3, b"next")]


def test_a_writer_pausing_mid_line_past_idle_flush_gives_one_whole_line(tmp_path: Path) -> None:
    """A writer that stops for seconds in the middle of a line (a slow disk or network
    file system, a stalled process) finishes it later: one line, not two halves (before,
    after idle_flush, 2 s, the first half was let go: both quarantined, the record lost)."""
    log = tmp_path / "app.log"
    log.write_bytes(b'{"one": 1}\n{"two": ')
    clock = Clock()
    follower = Follower([str(log)], idle_flush=2.0, clock=clock)
    assert lines(follower.poll()) == [b'{"one": 1}']
    clock.advance(5.0)
    assert follower.poll() == []
    append(log, b'2}\n{"three": 3}\n')
    assert numbered(follower.poll()) == [
        (str(log), 2, b'{"two": 2}'),
        (str(log), 3, b'{"three": 3}'),
    ]


def test_a_last_record_ending_with_its_newline_is_let_go_after_idle_flush(tmp_path: Path) -> None:
    """A multi-line record's last line may still be followed by continuation lines; once
    the file is quiet for idle_flush it is let go (the partial_flush wait is for a line
    without its newline only)."""
    log = tmp_path / "app.log"
    log.write_bytes(b"R1 first\n\tmore\nR2 second\n\tcontinued\n")
    clock = Clock()
    follower = Follower(
        [str(log)], idle_flush=2.0, record_start=lambda path: re.compile(rb"R\d"), clock=clock
    )
    assert lines(follower.poll()) == [b"R1 first", b"\tmore"]
    clock.advance(2.5)
    assert lines(follower.poll()) == [b"R2 second", b"\tcontinued"]


def test_empty_file_followed_once_it_has_data(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    follower = Follower([str(log)])
    assert follower.poll() == []
    assert follower.positions() == {}
    append(log, b"x\n")
    assert lines(follower.poll()) == [b"x"]


def test_new_files_matching_the_pattern_are_picked_up(tmp_path: Path) -> None:
    follower = Follower([str(tmp_path / "*.log")])
    assert follower.poll() == []
    (tmp_path / "a.log").write_bytes(b"a1\n")
    (tmp_path / "b.txt").write_bytes(b"not followed\n")
    assert lines(follower.poll()) == [b"a1"]
    (tmp_path / "b.log").write_bytes(b"b1\n")
    assert lines(follower.poll()) == [b"b1"]


def test_a_file_first_seen_short_keeps_its_identity_as_it_grows(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"0001 short\n")
    pattern = str(tmp_path / "app.log*")
    follower = Follower([pattern])
    assert lines(follower.poll()) == [b"0001 short"]
    saved = json.loads(json.dumps(follower.positions()))
    assert [p["hashed"] for p in saved.values()] == [11]
    follower.close()

    append(log, block("line ", 2, 200))  # grows well past 1 KiB while stopped
    follower = Follower([pattern], saved)
    assert numbered(follower.poll())[0] == (str(log), 2, b"line 2")
    assert [p["hashed"] for p in follower.positions().values()] == [1024]  # extended

    append(log, b"more\n")  # and still the same file
    assert numbered(follower.poll()) == [(str(log), 202, b"more")]


def test_excluded_files_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"a\n")
    (tmp_path / "a.log.gz").write_bytes(b"\x1f\x8bnot text\n")
    follower = Follower([str(tmp_path / "a.log*")], exclude=lambda p: p.endswith(".gz"))
    assert lines(follower.poll()) == [b"a"]
    assert follower.poll() == []


# ---------------------------------------------------------------------------------------
# Rotation and truncation


def test_rename_rotation_while_running(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(block("old ", 1, 3))
    follower = Follower([str(tmp_path / "app.log*")])
    assert lines(follower.poll()) == [b"old 1", b"old 2", b"old 3"]

    append(log, block("old ", 4, 2))  # written before the rename, not yet read
    log.rename(tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", b"old 6\n")  # the writer had not reopened yet
    log.write_bytes(block("new ", 1, 2))

    got = numbered(follower.poll())
    rotated = str(tmp_path / "app.log.1")
    assert got == [
        (rotated, 4, b"old 4"),  # the old file first, from where it was left
        (rotated, 5, b"old 5"),
        (rotated, 6, b"old 6"),
        (str(log), 1, b"new 1"),
        (str(log), 2, b"new 2"),
    ]
    assert follower.poll() == []


def test_file_renamed_out_of_the_pattern_is_drained_through_its_open_handle(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"old 1\n")
    follower = Follower([str(log)])
    assert lines(follower.poll()) == [b"old 1"]

    append(log, b"old 2\nold 3 unterminated")
    log.rename(tmp_path / "app.log.1")  # no longer matches the pattern
    log.write_bytes(b"new 1\n")
    got = lines(follower.poll())
    # the rotated file is drained in the poll that sees the rotation, its unterminated
    # last line too: the writer writes to the new file now, so the line is whole
    assert got == [b"old 2", b"old 3 unterminated", b"new 1"]
    assert lines(follower.poll()) == []


def test_rename_rotation_while_stopped(tmp_path: Path) -> None:
    pattern = str(tmp_path / "app.log*")
    log = tmp_path / "app.log"
    log.write_bytes(block("old ", 1, 3))
    follower = Follower([pattern])
    assert lines(follower.poll()) == [b"old 1", b"old 2", b"old 3"]
    saved = json.loads(json.dumps(follower.positions()))
    follower.close()

    append(log, block("old ", 4, 2))
    log.rename(tmp_path / "app.log.1")
    log.write_bytes(block("new ", 1, 2))
    follower = Follower([pattern], saved)
    got = numbered(follower.poll())
    assert got == [
        (str(tmp_path / "app.log.1"), 4, b"old 4"),
        (str(tmp_path / "app.log.1"), 5, b"old 5"),
        (str(log), 1, b"new 1"),
        (str(log), 2, b"new 2"),
    ]


def test_copytruncate_while_running_continues_the_copy(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(block("old ", 1, 3))
    follower = Follower([str(tmp_path / "app.log*")])
    assert len(lines(follower.poll())) == 3

    append(log, block("old ", 4, 2))  # unread when the copy is taken
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    append(log, b"new 1\n")
    got = numbered(follower.poll())
    assert got == [
        (str(tmp_path / "app.log.1"), 4, b"old 4"),  # from the copy, not from 0
        (str(tmp_path / "app.log.1"), 5, b"old 5"),
        (str(log), 1, b"new 1"),  # the truncated file from byte 0
    ]
    append(log, b"new 2\n")
    assert numbered(follower.poll()) == [(str(log), 2, b"new 2")]


def test_copytruncate_seen_between_copy_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(block("old ", 1, 3))
    follower = Follower([str(tmp_path / "app.log*")])
    assert len(lines(follower.poll())) == 3
    shutil.copyfile(log, tmp_path / "app.log.1")
    assert follower.poll() == []  # the copy is a copy: not read again
    append(log, b"old 4\n")  # the race: in the original only, and read from there
    assert lines(follower.poll()) == [b"old 4"]
    os.truncate(log, 0)
    append(log, b"new 1\n")
    assert lines(drain(follower)) == [b"new 1"]  # the copy, shorter, holds nothing unread


def test_restart_between_copy_and_truncation_reads_the_copy_never(tmp_path: Path) -> None:
    pattern = str(tmp_path / "app.log*")
    log = tmp_path / "app.log"
    log.write_bytes(block("old ", 1, 3))
    follower = Follower([pattern])
    assert len(lines(follower.poll())) == 3
    saved = json.loads(json.dumps(follower.positions()))
    follower.close()

    shutil.copyfile(log, tmp_path / "app.log.1")
    append(log, b"old 4\n")  # the original has grown since the copy
    follower = Follower([pattern], saved)
    assert numbered(follower.poll()) == [(str(log), 4, b"old 4")]
    assert follower.poll() == []


def test_original_and_its_copy_first_seen_together_the_copy_is_not_read(
    tmp_path: Path,
) -> None:
    original = tmp_path / "b.log"
    original.write_bytes(b"one\n")
    shutil.copyfile(original, tmp_path / "a.log")  # sorts first; taken before "two"
    append(original, b"two\n")
    follower = Follower([str(tmp_path / "*.log")])
    assert numbered(follower.poll()) == [(str(original), 1, b"one"), (str(original), 2, b"two")]


def test_copytruncate_while_stopped(tmp_path: Path) -> None:
    pattern = str(tmp_path / "app.log*")
    log = tmp_path / "app.log"
    log.write_bytes(block("old ", 1, 3))
    follower = Follower([pattern])
    assert len(lines(follower.poll())) == 3
    saved = json.loads(json.dumps(follower.positions()))
    follower.close()

    append(log, block("old ", 4, 2))
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    append(log, block("new ", 1, 30))  # longer than what was read: a size check alone fails
    follower = Follower([pattern], saved)
    got = lines(follower.poll())
    assert got == [b"old 4", b"old 5", *(f"new {i}".encode() for i in range(1, 31))]


def test_truncation_in_place_restarts_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(block("old ", 1, 5))
    follower = Follower([str(log)])
    assert len(lines(follower.poll())) == 5
    with log.open("r+b") as fh:
        fh.truncate(0)
        fh.write(b"new 1\n")
    assert numbered(follower.poll()) == [(str(log), 1, b"new 1")]


def test_truncation_below_the_position_with_the_same_first_kib(tmp_path: Path) -> None:
    header = b"#" * 1_100 + b"\n"  # the fingerprint cannot tell: only the size can
    log = tmp_path / "app.log"
    log.write_bytes(header + block("old ", 1, 50))
    follower = Follower([str(log)])
    assert len(lines(follower.poll())) == 51
    with log.open("r+b") as fh:
        fh.truncate(0)
        fh.write(header + b"new 1\n")
    assert numbered(follower.poll()) == [(str(log), 1, header[:-1]), (str(log), 2, b"new 1")]


def test_truncation_to_empty_then_same_first_bytes_reads_from_zero(tmp_path: Path) -> None:
    header = b"# fixed header\n"
    log = tmp_path / "app.log"
    log.write_bytes(header + b"old 1\n")
    follower = Follower([str(log)])
    assert len(lines(follower.poll())) == 2
    os.truncate(log, 0)
    assert follower.poll() == []  # seen empty: truncated
    log.write_bytes(header + block("new ", 1, 20))  # same start, past the old position
    got = lines(follower.poll())
    assert got[0] == b"# fixed header" and got[-1] == b"new 20" and len(got) == 21


def test_a_new_file_at_the_same_path_is_read_from_zero(tmp_path: Path) -> None:
    pattern = str(tmp_path / "app.log")
    log = tmp_path / "app.log"
    log.write_bytes(block("first ", 1, 10))
    follower = Follower([pattern])
    assert len(lines(follower.poll())) == 10

    # while running: the old file is deleted, another takes its name
    log.unlink()
    log.write_bytes(b"second 1\n")
    assert numbered(follower.poll()) == [(pattern, 1, b"second 1")]

    # while stopped: the inode may well be reused; only the first bytes tell
    saved = json.loads(json.dumps(follower.positions()))
    follower.close()
    log.unlink()
    log.write_bytes(b"third 1\nthird 2\n")
    follower = Follower([pattern], saved)
    assert numbered(follower.poll()) == [(pattern, 1, b"third 1"), (pattern, 2, b"third 2")]


def test_unchanged_files_stay_known_after_closing_idle_ones(tmp_path: Path) -> None:
    clock = Clock()
    log = tmp_path / "app.log"
    log.write_bytes(b"a\n")
    follower = Follower([str(log)], close_inactive=10, clock=clock)
    assert lines(follower.poll()) == [b"a"]
    clock.advance(11)
    assert follower.poll() == []  # closed now: idle and read to its end
    clock.advance(100)
    assert follower.poll() == []  # found again by a stat check: not re-read
    append(log, b"b\n")
    assert numbered(follower.poll()) == [(str(log), 2, b"b")]


def test_positions_of_vanished_files_are_forgotten_but_not_while_present(
    tmp_path: Path,
) -> None:
    clock = Clock()
    pattern = str(tmp_path / "*.log")
    (tmp_path / "a.log").write_bytes(b"a\n")
    (tmp_path / "b.log").write_bytes(b"b\n")
    follower = Follower([pattern], forget_after=60, clock=clock)
    follower.poll()
    assert {p["path"] for p in follower.positions().values()} == {
        str(tmp_path / "a.log"),
        str(tmp_path / "b.log"),
    }
    (tmp_path / "b.log").unlink()
    for _ in range(3):
        clock.advance(40)
        follower.poll()
    assert {p["path"] for p in follower.positions().values()} == {str(tmp_path / "a.log")}

    # restored positions of a file that is not there are forgotten the same way
    gone = {"0" * 64: {"offset": 5, "line": 2, "hashed": 5, "path": "/nowhere.log"}}
    follower = Follower([pattern], gone, forget_after=60, clock=clock)
    follower.poll()
    assert "0" * 64 in follower.positions()
    clock.advance(61)
    follower.poll()
    assert "0" * 64 not in follower.positions()


# ---------------------------------------------------------------------------------------
# Record alignment

STDERR_START = re.compile(rb"[^\t]")  # pg_stderr: a continuation line starts with a tab
CSV_START = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")  # pg_csvlog: a timestamp


def test_stderr_record_split_between_writes_is_returned_whole(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    clock = Clock()
    follower = Follower([str(log)], record_start=lambda path: STDERR_START, clock=clock)
    log.write_bytes(b"LOG:  statement: SELECT 1\nLOG:  statement: SELECT a,\n")
    assert lines(follower.poll()) == [b"LOG:  statement: SELECT 1"]  # the last may go on
    append(log, b"\t\tb FROM t\n")
    assert follower.poll() == []  # still the same record
    append(log, b"LOG:  statement: SELECT 3\n")
    got = follower.poll()
    assert got[0].data == b"LOG:  statement: SELECT a,\n\t\tb FROM t\n"
    assert got[0].first_line == 2
    clock.advance(3)
    assert numbered(follower.poll()) == [(str(log), 4, b"LOG:  statement: SELECT 3")]


def test_csv_record_with_a_quoted_newline_split_between_writes(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.csv"
    follower = Follower([str(log)], record_start=lambda path: CSV_START)
    log.write_bytes(
        b'2024-05-01 10:00:00.001 UTC,"alice",1,"SELECT 1"\n'
        b'2024-05-01 10:00:00.002 UTC,"alice",2,"SELECT\n'
    )
    assert lines(follower.poll()) == [b'2024-05-01 10:00:00.001 UTC,"alice",1,"SELECT 1"']
    append(log, b"  a FROM\n")  # inside the quoted field
    assert follower.poll() == []
    append(log, b'  t"\n2024-05-01 10:00:00')  # the next record begins: this one is whole
    got = follower.poll()
    assert [(r.data, r.first_line) for r in got] == [
        (b'2024-05-01 10:00:00.002 UTC,"alice",2,"SELECT\n  a FROM\n  t"\n', 2)
    ]
    append(log, b'.003 UTC,"bob",3,"SELECT 3"\n')
    assert follower.poll() == []  # the last record may still go on


def test_held_record_released_when_the_file_is_rotated_away(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    follower = Follower([str(log)], record_start=lambda path: STDERR_START)
    log.write_bytes(b"LOG:  one\nLOG:  two\n\tcontinued\n")
    assert lines(follower.poll()) == [b"LOG:  one"]
    log.rename(tmp_path / "postgresql.log.1")
    log.write_bytes(b"LOG:  three\n")
    assert lines(follower.poll()) == [b"LOG:  two", b"\tcontinued"]  # not grown: let go


def test_a_session_opened_just_before_a_rename_rotation_is_read_before_its_statements(
    tmp_path: Path,
) -> None:
    """PostgreSQL's default prefix names a session's user on its connection line only.
    A session connects just before the log is renamed away and runs statements in the
    new file, all between two polls: the old file's tail (the connection line, which
    grew it in this poll) is read before the new file's statements, so a parser
    carrying sessions from read to read knows their user (before, the connection line
    was held back a poll while the statements were read)."""
    log = tmp_path / "postgresql.log"
    follower = Follower([str(tmp_path / "postgresql.log*")], record_start=lambda p: STDERR_START)
    log.write_bytes(b"2026-11-29 10:00:00.000 UTC [7] LOG:  database system is ready\n")
    follower.poll()
    append(log, b"2026-11-29 10:00:00.100 UTC [42] LOG:  connection received: host=[local]\n")
    append(
        log,
        b"2026-11-29 10:00:00.101 UTC [42] LOG:  connection authorized: user=clerk"
        b" database=corp application_name=desk\n",
    )
    log.rename(tmp_path / "postgresql.log.1")
    log.write_bytes(
        b"2026-11-29 10:00:00.200 UTC [42] LOG:  AUDIT: SESSION,1,1,READ,SELECT,TABLE,"
        b"big.people,SELECT 1,<none>\n"
        b"2026-11-29 10:00:00.300 UTC [42] LOG:  AUDIT: SESSION,2,1,READ,SELECT,TABLE,"
        b"big.people,SELECT 2,<none>\n"
    )
    first = follower.poll()
    assert [r.source for r in first] == [str(tmp_path / "postgresql.log.1"), str(log)]
    assert [line.split(b"LOG:  ")[1][:22] for line in lines(first)] == [
        b"database system is rea",
        b"connection received: h",
        b"connection authorized:",
        b"AUDIT: SESSION,1,1,REA",  # the last record (SELECT 2) may still go on
    ]


def test_postgresqls_own_rotation_reads_the_old_files_tail_before_the_new_files_head(
    tmp_path: Path,
) -> None:
    """PostgreSQL's logging collector rotates by starting a new file (``postgresql-%a.log``:
    Sunday's, then Monday's, which sorts first by name); the old file keeps its name. A
    session connects at the end of Sunday's file and runs statements in Monday's, all
    between two polls: Sunday's tail, its last line too (the writer has moved on), is
    read before Monday's head."""
    sunday, monday = tmp_path / "postgresql-Sun.log", tmp_path / "postgresql-Mon.log"
    follower = Follower([str(tmp_path / "postgresql-*.log")], record_start=lambda p: STDERR_START)
    sunday.write_bytes(b"2026-11-29 23:59:00.000 UTC [7] LOG:  checkpoint starting: time\n")
    follower.poll()
    append(sunday, b"2026-11-29 23:59:59.900 UTC [42] LOG:  connection received: host=[local]\n")
    append(sunday, b"2026-11-29 23:59:59.901 UTC [42] LOG:  connection authorized: user=clerk\n")
    os.utime(sunday, ns=(10**18, 10**18))  # written before Monday's file, as at midnight
    monday.write_bytes(
        b"2026-11-30 00:00:00.200 UTC [42] LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1,<none>\n"
        b"2026-11-30 00:00:00.300 UTC [42] LOG:  AUDIT: SESSION,2,1,READ,SELECT,,,SELECT 2,<none>\n"
    )
    os.utime(monday, ns=(10**18 + 300_000_000, 10**18 + 300_000_000))
    got = numbered(follower.poll())
    assert [(Path(path).name, n) for path, n, _ in got] == [
        ("postgresql-Sun.log", 1),
        ("postgresql-Sun.log", 2),
        ("postgresql-Sun.log", 3),
        ("postgresql-Mon.log", 1),  # its last line (SELECT 2) may still go on
    ]


def test_a_servers_old_files_are_read_oldest_first_when_the_follower_starts(
    tmp_path: Path,
) -> None:
    """``serve`` started on a directory of ``postgresql-%a.log`` files reads Sunday's
    (older) whole before Monday's, whose name sorts first."""
    sunday, monday = tmp_path / "postgresql-Sun.log", tmp_path / "postgresql-Mon.log"
    sunday.write_bytes(b"2026-11-29 23:59:59.901 UTC [42] LOG:  connection authorized\n")
    monday.write_bytes(b"2026-11-30 00:00:00.200 UTC [42] LOG:  AUDIT: SESSION,1\n" * 2)
    os.utime(sunday, ns=(10**18, 10**18))
    os.utime(monday, ns=(10**18 + 300_000_000, 10**18 + 300_000_000))
    follower = Follower([str(tmp_path / "postgresql-*.log")], record_start=lambda p: STDERR_START)
    got = numbered(follower.poll())
    assert [(Path(path).name, n) for path, n, _ in got] == [
        ("postgresql-Sun.log", 1),
        ("postgresql-Mon.log", 1),
    ]


@pytest.mark.parametrize(
    ("names", "times_kept"),
    [
        (["slow.log.3", "slow.log.2", "slow.log.1", "slow.log"], True),  # logrotate
        (["server_audit.log.02", "server_audit.log.01", "server_audit.log"], True),  # MariaDB
        (["postgresql.log-20261128", "postgresql.log-20261129", "postgresql.log"], True),
        (["slow.log.10", "slow.log.9", "slow.log.1", "slow.log"], False),  # copied anew
    ],
)
def test_a_writers_rotated_copies_are_read_oldest_first_whatever_their_names(
    tmp_path: Path, names: list[str], times_kept: bool
) -> None:
    """``serve`` started beside a server's rotated logs reads them in the order they were
    written, a read at a time: ``slow.log.3`` whole before ``slow.log.2``, the live file
    last (a window closes behind what was read: a file read out of turn makes the older
    ones' records late). By their times, or, copied without them, by their names."""
    for age, name in enumerate(names):
        (tmp_path / name).write_bytes(block(f"{name} line ", 0, 50))
        if times_kept:
            os.utime(tmp_path / name, ns=(10**18 + age * 10**9,) * 2)
        else:
            os.utime(tmp_path / name, ns=(10**18,) * 2)
    follower = Follower([str(tmp_path / f"{rotated_from(names[-1])[0]}*")])
    reads: list[Read] = []
    while not follower.caught_up() or not reads:
        reads += follower.poll(max_bytes=300)  # a read of a few lines: far less than a file
    assert lines(reads) == [line for name in names for line in lines_of(tmp_path / name)]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


# ---------------------------------------------------------------------------------------
# Giant lines, bounded reads


def test_too_long_line_is_reported_and_skipped(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    giant = b"G" * 5_000
    log.write_bytes(b"one\n" + giant + b"\nthree\nfour\n")
    follower = Follower([str(log)], max_line_bytes=1_000)
    reads = follower.poll()
    assert [(n, head) for r in reads for n, head in r.too_long] == [(2, giant[:TOO_LONG_KEPT])]
    assert numbered(reads) == [
        (str(log), 1, b"one"),
        (str(log), 3, b"three"),
        (str(log), 4, b"four"),
    ]


def test_too_long_line_written_across_polls_and_a_restart(tmp_path: Path) -> None:
    pattern = str(tmp_path / "app.log")
    log = tmp_path / "app.log"
    log.write_bytes(b"one\n" + b"G" * 1_500)
    follower = Follower([pattern], max_line_bytes=1_000)
    reads = follower.poll()
    assert lines(reads) == [b"one"]
    assert [n for r in reads for n, _ in r.too_long] == [2]
    assert follower.positions()[reads[-1].fingerprint]["skipping"] is True

    append(log, b"G" * 3_000)  # more of the same line: dropped, not held
    assert follower.poll() == []
    follower = restarted(follower, pattern, max_line_bytes=1_000)
    append(log, b"G" * 10 + b"\nthree\n")
    assert numbered(follower.poll()) == [(pattern, 3, b"three")]


def test_giant_line_does_not_stop_a_small_budget(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"x" * 900 + b"\n" + b"y\n" * 10)
    follower = Follower([str(log)], max_line_bytes=MAX_LINE_CHARS)
    first = follower.poll(max_bytes=100)  # one record larger than the budget still comes
    assert lines(first) == [b"x" * 900]
    assert not follower.caught_up()
    rest = drain(follower)
    assert lines(rest) == [b"y"] * 10


def test_poll_returns_about_max_bytes_and_nothing_is_dropped(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(block("a", 0, 2_000))
    b.write_bytes(block("b", 0, 2_000))
    follower = Follower([str(tmp_path / "*.log")])
    got: list[bytes] = []
    for _ in range(200):
        reads = follower.poll(max_bytes=1_000)
        assert sum(len(r.data) for r in reads) <= 1_000
        got += lines(reads)
        if not reads:
            break
    assert sorted(got) == sorted((a.read_bytes() + b.read_bytes()).splitlines())
    assert follower.caught_up()


# ---------------------------------------------------------------------------------------
# Positions


def test_restart_from_positions_resumes_exactly(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.log")
    (tmp_path / "a.log").write_bytes(block("a", 1, 50) + b"a-partial")
    (tmp_path / "b.log").write_bytes(block("b", 1, 50))
    follower = Follower([pattern])
    before = numbered(follower.poll(max_bytes=300))  # stops part way
    for _ in range(3):
        follower = restarted(follower, pattern)
        before += numbered(follower.poll(max_bytes=300))
    append(tmp_path / "a.log", b"\n")
    follower = restarted(follower, pattern)
    before += numbered(drain(follower))
    expected = [(str(tmp_path / "a.log"), i, f"a{i}".encode()) for i in range(1, 51)]
    expected += [(str(tmp_path / "a.log"), 51, b"a-partial")]
    expected += [(str(tmp_path / "b.log"), i, f"b{i}".encode()) for i in range(1, 51)]
    assert sorted(before) == sorted(expected)
    assert len(before) == len(expected)


def test_committed_positions_redeliver_what_was_not_processed(tmp_path: Path) -> None:
    pattern = str(tmp_path / "app.log")
    log = tmp_path / "app.log"
    log.write_bytes(b"one\ntwo\n")
    follower = Follower([pattern])
    processed = follower.poll()
    follower.commit(processed)
    append(log, b"three\n")
    lost = follower.poll()  # returned, then the process dies before handling it
    assert lines(lost) == [b"three"]
    saved = json.loads(json.dumps(follower.committed()))
    follower.close()
    follower = Follower([pattern], saved)
    assert numbered(follower.poll()) == [(pattern, 3, b"three")]


# ---------------------------------------------------------------------------------------
# The model: what was written is read, once, in order per file

EXAMPLES = int(os.environ.get("FOLLOW_EXAMPLES", "60"))
MACHINE = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    database=None,
    derandomize=os.environ.get("CI") == "true",  # CI runs the same examples every time
    suppress_health_check=[HealthCheck.too_slow],
)
MAX_LINE = 2_000
TEXT = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"_"))
MORE = st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\n", b"_"))


class Stream:
    """What the writer put in one file, wherever that file now is (it may be renamed, or
    its content copied elsewhere): lines in order, and an unfinished last line."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.lines: list[bytes] = []
        self.pending: bytes | None = None


class FollowMachine(RuleBasedStateMachine):
    """A writer appends to ``app.log`` (whole lines, an unfinished line finished later,
    lines too long); the log is rotated by rename or copytruncate (older copies shifted,
    ``app.log.N``, all under the pattern), or truncated in place; the follower polls with
    any budget, is stopped cleanly or killed and started again from its saved positions.

    Model: every line written is read exactly once, in the order of its file, except the
    lines a truncation in place destroyed before they were read; an unfinished line is
    read as a line once its file is rotated away (the writer starts a new file) or is
    idle (the clock only moves in ``settle``). Between copy and truncation the follower
    may look or restart, and lines may be written, but then the follower reads them
    before the truncation: lines lost to the copytruncate race (written in between and
    never read, in every follower) are kept out of the model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="trovewatch-follow-"))
        self.live = self.dir / "app.log"
        self.live.touch()
        self.pattern = str(self.dir / "app.log*")
        self.clock = Clock()
        self.serial = 0
        self.rotations = 0
        self.streams = [Stream(0)]
        self.where: dict[int, tuple[Stream, int, bytes]] = {}  # serial -> stream, index, line
        self.readable: set[int] = set()  # serials that must be read
        self.destroyed: set[int] = set()
        self.got: list[int] = []  # serials processed, in order
        self.last: dict[int, int] = {}  # stream -> index of the last line processed
        self.held: list[Read] = []  # returned, not processed yet
        self.saved: dict[str, Any] | None = None
        self.follower: Follower | None = self._follower(None)

    def _follower(self, saved: dict[str, Any] | None) -> Follower:
        return Follower([self.pattern], saved, max_line_bytes=MAX_LINE, clock=self.clock)

    @property
    def current(self) -> Stream:
        return self.streams[-1]

    def _line(self, text: bytes, size: int = 0) -> bytes:
        self.serial += 1
        line = f"{self.serial:06d} ".encode() + text
        return line + b"L" * max(size - len(line), 0)

    def _complete(self, stream: Stream, line: bytes) -> None:
        serial = int(line[:6])
        self.where[serial] = (stream, len(stream.lines), line)
        stream.lines.append(line)
        self.readable.add(serial)

    def _finish_pending(self) -> None:
        stream = self.current
        if stream.pending is not None:
            append(self.live, b"\n")
            self._complete(stream, stream.pending)
            stream.pending = None

    def _abandon(self) -> None:
        """The writer moves to a new file: an unfinished line stays as the old one's last."""
        if self.current.pending is not None:
            self._complete(self.current, self.current.pending)
            self.current.pending = None
        self.streams.append(Stream(len(self.streams)))

    def _shift(self) -> None:
        for n in range(self.rotations, 0, -1):
            os.rename(f"{self.live}.{n}", f"{self.live}.{n + 1}")
        self.rotations += 1

    # -- the writer and the rotations ---------------------------------------------------

    @rule(texts=st.lists(TEXT, max_size=4), unfinished=st.none() | TEXT)
    def write(self, texts: list[bytes], unfinished: bytes | None) -> None:
        self._finish_pending()
        new = [self._line(t) for t in texts]
        append(self.live, b"".join(line + b"\n" for line in new))
        for line in new:
            self._complete(self.current, line)
        if unfinished is not None:
            pending = self._line(unfinished)
            append(self.live, pending)
            self.current.pending = pending
            self.where[int(pending[:6])] = (self.current, len(self.current.lines), pending)

    @rule()
    def write_too_long(self) -> None:
        self._finish_pending()
        line = self._line(b"", MAX_LINE + 500)
        append(self.live, line + b"\n")
        self._complete(self.current, line)

    @rule()
    def rotate_rename(self) -> None:
        self._shift()
        self.live.rename(f"{self.live}.1")
        self.live.touch()
        self._abandon()

    @precondition(lambda self: self.follower is not None)
    @rule(first=TEXT, rest=MORE)
    def rotate_rename_mid_line(self, first: bytes, rest: bytes) -> None:
        """The writer is in the middle of a line when the log is renamed, and finishes it
        in the renamed file before it reopens ``app.log``; the follower looks in between.
        The old file grew since the follower's previous look, so the unfinished line must
        be held back, not released as the last line of a rotated file."""
        self._finish_pending()
        line = self._line(first)
        append(self.live, line)
        self.poll(1 << 20, process=False)
        append(self.live, rest)
        self._shift()
        self.live.rename(f"{self.live}.1")
        self.live.touch()
        self.poll(1 << 20, process=False)
        append(Path(f"{self.live}.1"), b"\n")
        self._complete(self.current, line + rest)
        self.streams.append(Stream(len(self.streams)))

    @rule(between=st.sampled_from(["nothing", "poll", "restart", "write, poll", "write, restart"]))
    def copytruncate(self, between: str) -> None:
        """Copy, then truncate. In between, the follower may look or restart; lines may be
        written to the original, and then the follower reads them before the truncation
        (otherwise they would be lost to the copytruncate race, in any follower)."""
        self._shift()
        shutil.copyfile(self.live, f"{self.live}.1")
        if between.startswith("write") and self.follower is not None:
            self.write([b"late"], None)
        elif between.startswith("write"):
            return self._truncate_copied()
        if between.endswith("restart") and self.follower is not None:
            self.stop(crash=False)
            self.start()
        if between != "nothing":
            self.poll(1 << 20, process=True)
        self._truncate_copied()

    def _truncate_copied(self) -> None:
        os.truncate(self.live, 0)
        self._abandon()

    @precondition(lambda self: not self.held)
    @rule()
    def truncate_in_place(self) -> None:
        # what was not read yet is gone (with nothing held, read means processed)
        processed = set(self.got)
        for line in self.current.lines:
            serial = int(line[:6])
            if serial not in processed:
                self.destroyed.add(serial)
                self.readable.discard(serial)
        self.current.pending = None
        os.truncate(self.live, 0)
        self.streams.append(Stream(len(self.streams)))

    # -- the follower ------------------------------------------------------------------

    def _process(self) -> None:
        assert self.follower is not None
        for read in self.held:
            found = [(read.first_line + i, line) for i, line in enumerate(lines([read]))]
            if read.data:  # the parser is told the count: it must be the chunk's own
                assert read.n_lines == Chunk(read.source, read.data, 1).n_lines
            found += read.too_long
            for number, line in found:
                serial = int(line[:6])
                assert serial in self.where, f"read a line never written: {line[:40]!r}"
                stream, index, written = self.where[serial]
                assert line == written or (len(written) > MAX_LINE and written.startswith(line)), (
                    f"line read as {line[:40]!r}, written as {written[:40]!r}"
                )
                assert number == index + 1, f"{line[:40]!r} numbered {number}, is {index + 1}"
                assert index > self.last.get(stream.number, -1), f"{line[:40]!r} out of order"
                self.last[stream.number] = index
                self.got.append(serial)
        self.follower.commit(self.held)
        self.held = []

    @precondition(lambda self: self.follower is not None)
    @rule(budget=st.sampled_from([1, 40, 300, 1 << 20]), process=st.booleans())
    def poll(self, budget: int, process: bool) -> None:
        if self.follower is None:
            return
        self.held += self.follower.poll(budget)
        if process:
            self._process()

    @precondition(lambda self: self.follower is not None)
    @rule(crash=st.booleans())
    def stop(self, crash: bool) -> None:
        assert self.follower is not None
        if crash:  # what was returned but not processed is lost with the process
            self.held = []
            saved: dict[str, Any] = dict(self.follower.committed())
        else:
            self._process()
            saved = dict(self.follower.positions())
        self.saved = json.loads(json.dumps(saved))
        self.follower.close()
        self.follower = None

    @precondition(lambda self: self.follower is None)
    @rule()
    def start(self) -> None:
        self.follower = self._follower(self.saved)

    @precondition(lambda self: self.follower is not None)
    @rule()
    def settle(self) -> None:
        """Read everything there is, let idle tails go, and compare with the model."""
        assert self.follower is not None
        self._process()
        self._read_up()
        if self.current.pending is not None:  # idle from now on: released as a line
            self._complete(self.current, self.current.pending)
            self.current.pending = None
        self.clock.advance(self.follower.partial_flush + 1)
        self._read_up()
        missing = sorted(self.readable - set(self.got))
        assert not missing, f"never read: {[self.where[s][2] for s in missing]}"

    def _read_up(self) -> None:
        assert self.follower is not None
        for _ in range(200):
            self.held += self.follower.poll()
            if not self.held and self.follower.caught_up():
                return
            self._process()
        raise AssertionError("the follower never caught up")

    @invariant()
    def each_line_at_most_once(self) -> None:
        assert len(self.got) == len(set(self.got)), "a line was read twice"
        assert not self.destroyed & set(self.got)

    def teardown(self) -> None:
        try:
            if self.follower is None:
                self.start()
            self.settle()
        finally:
            if self.follower is not None:
                self.follower.close()
            shutil.rmtree(self.dir, ignore_errors=True)


FollowMachine.TestCase.settings = MACHINE
TestFollowModel = FollowMachine.TestCase


def test_a_too_long_line_of_a_kept_file_comes_cut_with_its_head_and_end(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    giant = b"HEAD" + b"G" * 20_000 + b"ROWS=42"
    log.write_bytes(b"one\n" + giant + b"\nthree\n")
    follower = Follower([str(log)], max_line_bytes=1_000, keep_long=lambda path: True)
    reads = follower.poll()
    assert [r.too_long for r in reads] == [[], []]
    [(number, cut)] = [c for r in reads for c in r.cut]
    assert number == 2 and cut.startswith(b"HEAD") and cut.endswith(b"ROWS=42")
    assert cut_marker(len(giant) - 1_000 - CUT_TAIL_BYTES) in cut
    assert numbered(reads) == [(str(log), 1, b"one"), (str(log), 3, b"three")]


def test_a_too_long_line_of_a_kept_file_written_across_polls_comes_cut_once(
    tmp_path: Path,
) -> None:
    pattern = str(tmp_path / "app.log")
    log = tmp_path / "app.log"
    log.write_bytes(b"one\n" + b"HEAD" + b"G" * 1_500)
    follower = Follower([pattern], max_line_bytes=1_000, keep_long=lambda path: True)
    assert lines(follower.poll()) == [b"one"]
    append(log, b"G" * 30_000)
    assert follower.poll() == []  # the line is not over: nothing yet, nothing held but its head
    append(log, b"G" * 10 + b"END\nthree\n")
    reads = follower.poll()
    [(number, cut)] = [c for r in reads for c in r.cut]
    assert number == 2 and cut.startswith(b"HEAD") and cut.endswith(b"GEND")
    assert cut_marker(4 + 31_510 + 3 - 1_000 - CUT_TAIL_BYTES) in cut
    assert numbered(reads) == [(pattern, 3, b"three")]
