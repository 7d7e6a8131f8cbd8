"""Following log files as they grow: through rotation, truncation and restarts, exactly once.

A :class:`Follower` watches the files matching some glob patterns (globbed again at every
poll, so new files are picked up) and hands out what was appended to them as
:class:`Read` batches of whole records. It keeps the guarantees of Filebeat, Fluent Bit
and Vector:

* **A file is known by its first bytes**, not by its path or inode (inodes are reused):
  the fingerprint is the SHA-256 of its first ``min(size, 1024)`` bytes, and the number
  of bytes hashed is kept, so a file first seen short keeps its identity as it grows (the
  fingerprint is then extended to 1 KiB). An empty file is not followed until it has data.
* **Rotation by rename** (``log`` -> ``log.1``, new ``log``): the old file is kept open, so
  it is read to its end even when renamed out of the patterns (as Filebeat's
  ``close_renamed: false``; it is closed once read to its end and idle for
  ``close_inactive`` seconds, or deleted); a renamed file still under a pattern is found
  again by its fingerprint and continued where it was left, after a restart too.
* **copytruncate** (``log`` copied to ``log.1``, then ``log`` truncated): the truncation is
  seen (size below the position, or first bytes changed) and ``log`` is read again from
  byte 0; a copy under a pattern has the fingerprint of what was being read and is
  continued from the same position, not read again.
* **Truncation in place** (size below the position): the file is read again from byte 0.
* **Whole records**: data ends with a newline, and only before a line matching the
  format's ``record_start`` pattern, so a record continued on later lines (a stderr
  statement continued with tabs, a CSV field holding newlines) is never split between
  reads. The last record, which may still be continued, is held back until the file has
  not grown for ``idle_flush`` seconds; a last line without its newline (a writer
  paused in the middle of it) until the file has not grown for ``partial_flush``
  seconds, or was rotated away (renamed, and either not grown since the previous poll
  or with a file at its old path holding data: its writer has moved on); then it is
  released, even without its final newline.
* **Older files first**: in each poll a rotated file's tail is read before the other
  files, and a directory's files of one suffix (``postgresql-Sun.log``,
  ``postgresql-Mon.log``: a writer rotating to a new file, the old keeping its name) in
  the order they were last written, an older one's last record let go once a later one
  has data and the older ends with a whole line. So a new file's head comes after the
  old file's tail: a session opened at the end of one log goes on in the next, and a
  parser carrying sessions sees its connection line first.
* **Bounded memory**: a poll returns at most ``max_bytes`` of data, or one record when
  the first record is larger than that (at most ``max_line_bytes + 1`` bytes read).
  A line longer than ``max_line_bytes`` is never held whole: its first
  :data:`TOO_LONG_KEPT` bytes and line number are reported in :attr:`Read.too_long` and it
  is skipped to its newline. For files whose ``keep_long(path)`` is True, the line is
  instead reported once its newline is read, in :attr:`Read.cut`: its first
  ``max_line_bytes``, a marker giving the bytes cut, and its last bytes
  (:func:`detector.reader.cut_line`), so that a parser can still read what the line's
  head and end say (pgAudit's account, objects and rows). A record of several lines
  longer than ``max_line_bytes`` is returned in pieces at line boundaries (the parser
  then rejects the pieces).
* **Exact resume**: :meth:`Follower.positions` (everything returned so far) or
  :meth:`Follower.committed` (only what was :meth:`~Follower.commit`-ted) is a JSON-able
  dict keyed by fingerprint; a follower built from it goes on exactly after it: no line
  lost, none read twice, line numbers continued.
* **Bounded state**: a file not found under the patterns for ``forget_after`` seconds is
  forgotten; a file is never forgotten in a poll where it is seen. Files idle for
  ``close_inactive`` seconds are closed (and found again cheaply by a stat check).

What no follower can guarantee, and this one does not:

* **The copytruncate race.** Lines written between the copy and the truncation are in
  neither file afterwards; unless a poll happened to read them in between, they are lost.
  Every tool has this race; rotate by renaming where the writer allows it.
* A file rotated *out of the patterns while the follower is stopped* cannot be found
  again: its unread tail is lost. Include the rotated names in the patterns
  (``app.log*``), as the old file is then found by its fingerprint.
* A file truncated and written past the old position between two polls, starting with
  the same first bytes as before, looks like a file that only grew.
* Two files whose first 1 KiB are identical are one file (a fixed banner longer than
  1 KiB defeats the fingerprint); a file no larger than another followed one and starting
  with exactly its bytes is taken for a copy of it, and not read until it grows past it.
* A writer pausing in the middle of a line for longer than ``partial_flush`` (a minute)
  gets the line released in two parts; each part then counts as a line for line
  numbers.

Typical use (reads processed before the next poll)::

    follower = Follower(["/var/log/postgresql/*.log*"], saved_positions)
    while running:
        for read in follower.poll():
            process(read.data, read.first_line, read.too_long)
        save(follower.positions())

When reads are processed later (handed to a worker), call ``follower.commit(reads)`` once
they are, and save ``follower.committed()`` instead.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

from detector.reader import CUT_TAIL_BYTES, RecordStart, _split_point, cut_line

FINGERPRINT_BYTES: Final = 1024  # a file is known by the hash of this many first bytes
TOO_LONG_KEPT: Final = 8 * 1024  # bytes of a too-long line reported (for the quarantine)
SKIP_BLOCK: Final = 1 << 20  # bytes read at a time while skipping a too-long line

Ident = tuple[int, int]  # (st_dev, st_ino): the file an open descriptor holds


class Position(TypedDict):
    """Where reading of one file stands, as saved in a checkpoint (JSON-able)."""

    offset: int  # bytes before this were returned (or skipped as too long)
    line: int  # 1-based number of the line starting at ``offset``
    hashed: int  # bytes the fingerprint covers
    path: str  # where the file was last seen
    skipping: bool  # ``offset`` is inside a too-long line: drop bytes up to its newline


@dataclass(frozen=True)
class Read:
    """Whole records appended to one file, and the position to save once they are processed.

    ``data`` holds whole lines, each ending with a newline, except a final line released
    without one (the file was rotated away, or idle). ``first_line`` is the 1-based line
    number of its first line; the lines of ``too_long`` (line number, first bytes) follow
    ``data`` in the file and are not in it. ``start`` and ``end`` are byte offsets in the
    file: ``end`` is past ``data`` and the skipped lines, where reading resumes.
    ``position`` is the follower's position for this file after this read (None for reads
    not made by a :class:`Follower`).
    """

    source: str  # the file's path when read
    fingerprint: str
    data: bytes
    first_line: int
    start: int
    end: int
    too_long: list[tuple[int, bytes]] = field(default_factory=list)
    position: Position | None = None
    _origin: tuple[int, int] = field(default=(-1, -1), repr=False, compare=False)
    # Too-long lines of a ``keep_long`` file, after ``data``: (line number, cut line).
    cut: list[tuple[int, bytes]] = field(default_factory=list)
    # Lines in ``data``, as the follower counted them (None: not counted): counting the
    # newlines of a 16 MB read again takes about 20 ms.
    n_lines: int | None = None


@dataclass(eq=False)
class _File:
    """One followed file: its saved position, and what is known of it in this run."""

    uid: int
    fingerprint: str
    hashed: int
    offset: int
    line: int
    path: str
    skipping: bool = False
    generation: int = 0  # bumped when the file is read again from 0
    committed: tuple[int, int, bool] | None = None  # offset, line, skipping
    fd: int | None = None  # kept open: a renamed or deleted file stays readable
    ident: Ident | None = None
    stat_key: tuple[int, ...] | None = None  # the stat last seen, to skip unchanged files
    head: bytes = b""  # its first bytes when last looked at (up to FINGERPRINT_BYTES)
    size: int = -1  # size last seen (-1: not seen in this run)
    grew: bool = False  # the size changed in this poll
    deleted: bool = False
    examined: int = 0  # bytes up to here were searched for a record boundary
    changed_at: float = 0.0
    seen_at: float = 0.0
    rotated: bool = False  # renamed, or out of the patterns: no longer the live file
    moved_from: str | None = None  # its path before it was rotated
    keep_long: bool = False  # too-long lines are given cut (``Read.cut``), not only counted
    long_head: bytes | None = None  # while skipping a too-long line to keep: its head
    long_start: int = 0  # ... and the offset where that line starts
    replaced: Ident | None = None  # its file's content was replaced: found there, read from 0
    pattern: RecordStart | None = None
    bound_once: bool = False

    def rotate(self) -> None:
        """No longer the live file: remember the path it was live at (``moved_from``)."""
        if not self.rotated:
            self.moved_from = self.path
        self.rotated = True


@dataclass(eq=False)
class _Found:
    """A file under the patterns that no open follower state holds."""

    path: str
    fd: int
    st: os.stat_result
    head: bytes
    used: bool = False  # bound, or known for a copy
    kept: bool = False  # its descriptor now belongs to a followed file
    _digests: dict[int, str] = field(default_factory=dict)

    @property
    def ident(self) -> Ident:
        return _ident(self.st)

    def matches(self, f: _File) -> bool:
        """The file begins with the bytes ``f`` was fingerprinted over (or, shorter than
        those, with what ``f``'s first bytes were when last seen in this run)."""
        if len(self.head) < f.hashed:
            return bool(f.head) and f.head.startswith(self.head)
        if f.hashed not in self._digests:
            self._digests[f.hashed] = _digest(self.head[: f.hashed])
        return self._digests[f.hashed] == f.fingerprint

    def copies(self, f: _File) -> bool:
        """No larger than ``f``'s file and starting as it does: an earlier copy of it."""
        return self.st.st_size <= f.size and f.head.startswith(self.head)


class Follower:
    """Follows the files matching ``patterns``; see the module docstring for the guarantees.

    ``positions`` is what :meth:`positions` or :meth:`committed` returned in an earlier
    run (after a JSON round trip, if wanted). ``record_start(path)`` gives the pattern a
    line of that file must match at its start to begin a record, or None when every line
    is a record; it is asked once per file. ``exclude(path)`` is True for files matching
    the patterns that must not be followed (compressed archives, say).

    Times are in seconds of ``clock`` (tests pass a fake one to exercise them without
    sleeping): ``idle_flush``, how long a file must not grow before its held-back last
    record is released; ``partial_flush``, how long before a last line without its
    newline is (its writer paused mid-line, or died); ``close_inactive``, how long a file read to its end stays open
    without growing; ``forget_after``, how long the position of a file not found under
    the patterns is kept.
    """

    def __init__(
        self,
        patterns: Sequence[str],
        positions: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        max_line_bytes: int = 1_000_000,
        idle_flush: float = 2.0,
        partial_flush: float = 60.0,
        record_start: Callable[[str], RecordStart | None] = lambda path: None,
        keep_long: Callable[[str], bool] = lambda path: False,
        exclude: Callable[[str], bool] = lambda path: False,
        close_inactive: float = 300.0,
        forget_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.patterns = list(patterns)
        self.max_line_bytes = max_line_bytes
        self.idle_flush = idle_flush
        self.partial_flush = partial_flush
        self.close_inactive = close_inactive
        self.forget_after = forget_after
        self._record_start = record_start
        self._keep_long = keep_long
        self._exclude = exclude
        self._clock = clock
        self._files: dict[str, _File] = {}  # by fingerprint
        self._uids: dict[int, _File] = {}
        self._excluded: dict[str, tuple[int, ...]] = {}  # path -> stat when excluded
        # Files matched that cannot be opened (permissions: PostgreSQL's log_file_mode is
        # 0600 by default), path -> why; tried again at every poll.
        self.unreadable: dict[str, str] = {}
        self._next_uid = 0
        self._turn = 0
        self._polled = False
        self._scanned = 0.0  # clock time of the last poll's scan of the patterns
        now = clock()
        for fingerprint, pos in (positions or {}).items():
            f = self._add(fingerprint, int(pos["hashed"]), str(pos["path"]), now)
            f.offset = f.examined = int(pos["offset"])
            f.line = int(pos["line"])
            f.skipping = bool(pos.get("skipping", False))
            f.committed = (f.offset, f.line, f.skipping)

    # -- the public verbs ----------------------------------------------------------------

    def poll(self, max_bytes: int = 8 << 20) -> list[Read]:
        """What was appended since the last poll, as whole records: about ``max_bytes`` at most.

        Rotated-away files come first, then the others, taking turns across polls.
        Nothing is dropped when the budget runs out: the rest comes with later polls.
        """
        now = self._clock()
        found = self._scan()
        self._scanned = now
        at: dict[Ident, str] = {}
        for path, st in found.items():
            at.setdefault(_ident(st), path)
        taken = self._check_open(found, at, now)
        self._identify(found, at, taken, now)
        reads = self._read_all(max_bytes, now)
        self._tidy(now)
        self._polled = True
        return reads

    def positions(self) -> dict[str, Position]:
        """The position of every known file after everything returned so far, by fingerprint."""
        return {fp: self._position(f) for fp, f in self._files.items()}

    def origin(self, head: bytes) -> tuple[Position, bool] | None:
        """The known file another file beginning with ``head`` is a copy of (a rotated log
        compressed by logrotate, say), or None: its position after everything returned so
        far, and whether this follower still reads it itself (held open, or found under the
        patterns by the last poll: ask once :attr:`polled`)."""
        same = [
            f
            for f in self._files.values()
            if len(head) >= f.hashed and _digest(head[: f.hashed]) == f.fingerprint
        ]
        if not same:
            return None
        f = max(same, key=lambda f: f.hashed)
        return self._position(f), f.fd is not None or f.seen_at >= self._scanned

    @property
    def polled(self) -> bool:
        """True once the patterns were scanned: :meth:`origin` knows what is still read."""
        return self._polled

    def commit(self, reads: Iterable[Read]) -> None:
        """Record that ``reads`` were processed (in order, per file): :meth:`committed`
        moves past them. Reads of a file since read again from 0 are ignored."""
        for read in reads:
            uid, generation = read._origin
            f = self._uids.get(uid)
            if f is not None and f.generation == generation and read.position is not None:
                f.committed = (read.end, read.position["line"], read.position["skipping"])

    def committed(self) -> dict[str, Position]:
        """Positions after the committed reads only: what to save when reads are processed
        after the next poll. A file none of whose reads was committed is left out (a
        follower built from this reads it from byte 0)."""
        out: dict[str, Position] = {}
        for fp, f in self._files.items():
            if f.committed is not None:
                offset, line, skipping = f.committed
                out[fp] = Position(
                    offset=offset, line=line, hashed=f.hashed, path=f.path, skipping=skipping
                )
        return out

    def lag_bytes(self) -> dict[str, int]:
        """Bytes not yet returned, by path, as of the last poll (file size minus position)."""
        lag: dict[str, int] = {}
        for f in self._files.values():
            if f.size >= 0:
                lag[f.path] = lag.get(f.path, 0) + max(f.size - f.offset, 0)
        return lag

    def caught_up(self) -> bool:
        """True when, as of the last poll, no file has unread whole records (a held-back
        last record does not count)."""
        return self._polled and not self.behind()

    def behind(self) -> set[str]:
        """The paths with unread whole records as of the last poll."""
        return {f.path for f in self._files.values() if f.fd is not None and f.examined < f.size}

    def close(self) -> None:
        """Close every open file; positions stay readable."""
        for f in self._files.values():
            self._unbind(f, keep_stat=True)

    # -- finding the files ----------------------------------------------------------------

    def _scan(self) -> dict[str, os.stat_result]:
        found: dict[str, os.stat_result] = {}
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if path in found:
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[path] = st
        return found

    def _check_open(
        self, found: Mapping[str, os.stat_result], at: Mapping[Ident, str], now: float
    ) -> set[Ident]:
        """Check the files held open; return those still holding what was being read."""
        taken: set[Ident] = set()
        for f in list(self._files.values()):
            if f.fd is None or f.ident is None:
                continue
            st = os.fstat(f.fd)
            path = at.get(f.ident)
            if path is None or path != f.path:
                f.rotate()
            if path is not None:
                f.path, f.seen_at = path, now
            if self._same_content(f, st):
                taken.add(f.ident)
                f.deleted = st.st_nlink == 0
                self._observe(f, st, now)
            else:
                f.replaced = f.ident
                self._unbind(f, keep_stat=False)
        return taken

    def _same_content(self, f: _File, st: os.stat_result) -> bool:
        """The open file still begins as it did and is no shorter than the position."""
        if st.st_size < f.offset:
            return False
        if _stat_key(st) == f.stat_key:
            return True
        if st.st_size < f.hashed or f.fd is None:
            return False
        head = _pread(f.fd, FINGERPRINT_BYTES, 0)
        if _digest(head[: f.hashed]) != f.fingerprint:
            return False
        f.head = head
        self._fit(f, head)
        return True

    def _identify(
        self,
        found: Mapping[str, os.stat_result],
        at: Mapping[Ident, str],
        taken: set[Ident],
        now: float,
    ) -> None:
        """Match the files not held open to known states by fingerprint; follow new ones."""
        quiet = {f.stat_key: f for f in self._files.values() if f.fd is None and f.stat_key}
        present: list[_File] = [f for f in self._files.values() if f.fd is not None]
        candidates: list[tuple[str, os.stat_result]] = []
        for path, st in found.items():
            if _ident(st) in taken or at[_ident(st)] != path or st.st_size == 0:
                continue
            same = quiet.pop(_stat_key(st), None)
            if same is not None:  # closed while idle, unchanged since
                same.path, same.seen_at = path, now
                present.append(same)
            else:
                candidates.append((path, st))
        self._excluded = {p: k for p, k in self._excluded.items() if p in found}
        self.unreadable = {p: why for p, why in self.unreadable.items() if p in found}
        pool = [s for path, st in candidates if (s := self._open(path, st)) is not None]

        seen = {f.uid for f in present}
        loose = [f for f in self._files.values() if f.fd is None and f.uid not in seen]
        for f in sorted(loose, key=lambda f: -f.hashed):
            matching = [s for s in pool if not s.used and s.matches(f)]
            if not matching:
                continue
            more = [s for s in matching if s.ident != f.replaced and s.st.st_size >= f.offset]
            if more:  # the same file, renamed or copied: go on from the position
                self._bind(f, max(more, key=lambda s: (s.path == f.path, s.st.st_size)), now)
                continue
            stale = [s for s in matching if s.path != f.path and s.ident != f.replaced]
            if stale:  # copies of an earlier state: everything in them was read
                for s in stale:
                    s.used = True
                shortest = min((s.head for s in stale), key=len)
                if len(shortest) < f.hashed:  # then known by what is left of it
                    self._fit(f, shortest)
                f.seen_at = now
                continue
            self._reset(f)  # its own file, shorter than the position: truncated
            self._bind(f, matching[0], now)
        present += [f for f in loose if f.fd is not None]

        for s in sorted(pool, key=lambda s: -s.st.st_size):  # an original before its copies
            if s.used:
                continue
            key = _digest(s.head)
            original = next((f for f in present if s.copies(f)), None)
            if original is not None:  # a copy of a followed file: not read
                s.used = True
                self._fit(original, s.head)
                continue
            if key in self._files:  # the same first bytes as a known file: one file
                s.used = True
                continue
            new = self._add(key, len(s.head), s.path, now)
            self._bind(new, s, now)
            present.append(new)
        for s in pool:
            if not s.kept:
                os.close(s.fd)

    def _open(self, path: str, st: os.stat_result) -> _Found | None:
        if self._excluded.get(path) == _stat_key(st):
            return None
        if self._exclude(path):
            self._excluded[path] = _stat_key(st)
            return None
        try:  # non-blocking: should the path just have become a FIFO, do not hang on it
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:  # gone since the scan
            return None
        except OSError as exc:
            self.unreadable[path] = exc.strerror or str(exc)
            return None
        self.unreadable.pop(path, None)
        st = os.fstat(fd)  # the file actually opened, should it have just been replaced
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            os.close(fd)
            return None
        return _Found(path, fd, st, _pread(fd, FINGERPRINT_BYTES, 0))

    def _add(self, fingerprint: str, hashed: int, path: str, now: float) -> _File:
        self._next_uid += 1
        f = _File(self._next_uid, fingerprint, hashed, 0, 1, path)
        f.changed_at = f.seen_at = now
        self._files[fingerprint] = f
        self._uids[f.uid] = f
        return f

    def _bind(self, f: _File, s: _Found, now: float) -> None:
        s.used = s.kept = True
        if s.path != f.path:  # renamed, or a copy goes on for it: not the live file
            f.rotate()
        f.fd, f.ident, f.path, f.seen_at, f.replaced = s.fd, s.ident, s.path, now, None
        if not f.bound_once:
            f.pattern, f.bound_once = self._record_start(s.path), True
            f.keep_long = self._keep_long(s.path)
        f.head = s.head
        self._fit(f, s.head)
        f.deleted = False
        self._observe(f, s.st, now)

    def _fit(self, f: _File, head: bytes) -> None:
        """Make ``f``'s fingerprint the hash of ``head``, its first bytes (the same identity).

        Longer, as the file grows to 1 KiB. Shorter, for a copy of it that is shorter than
        the bytes hashed (a copytruncate copy of a file under 1 KiB): the saved position
        then still knows the copy after a restart, when first bytes are no longer in memory.
        """
        if len(head) == f.hashed:
            return
        key = _digest(head)
        if key in self._files:
            return
        del self._files[f.fingerprint]
        f.fingerprint, f.hashed = key, len(head)
        self._files[key] = f

    def _observe(self, f: _File, st: os.stat_result, now: float) -> None:
        f.grew = st.st_size != f.size
        if f.grew:
            f.size, f.changed_at = st.st_size, now
        f.stat_key = _stat_key(st)

    def _reset(self, f: _File) -> None:
        f.offset = f.examined = 0
        f.line, f.skipping, f.size = 1, False, -1
        f.generation += 1
        f.committed = None

    def _unbind(self, f: _File, *, keep_stat: bool) -> None:
        if f.fd is not None:
            os.close(f.fd)
        f.fd = f.ident = None
        if not keep_stat:
            f.stat_key = None

    def _tidy(self, now: float) -> None:
        """Close files read to their end that were deleted or stayed idle; forget files
        not seen under the patterns for ``forget_after`` seconds."""
        for f in list(self._files.values()):
            if f.fd is not None:
                done = f.offset >= f.size
                if done and (f.deleted or now - f.changed_at >= self.close_inactive):
                    self._unbind(f, keep_stat=not f.deleted)
            elif now - f.seen_at > self.forget_after:
                del self._files[f.fingerprint]
                del self._uids[f.uid]

    # -- reading --------------------------------------------------------------------------

    def _read_all(self, max_bytes: int, now: float) -> list[Read]:
        open_ = sorted((f for f in self._files.values() if f.fd is not None), key=_by_path)
        if open_:
            turn = self._turn % len(open_)
            open_ = open_[turn:] + open_[:turn]
        self._turn += 1
        # A directory's files of one suffix are one writer's files one after the other
        # (PostgreSQL's own rotation: postgresql-Sun.log, then postgresql-Mon.log, which
        # sorts first): oldest written first, in the places of the turns they had.
        series: dict[tuple[str, str], list[_File]] = {}
        for f in open_:
            series.setdefault(_series(f), []).append(f)
        for files in series.values():
            files.sort(key=_written)
        taken = {key: iter(files) for key, files in series.items()}
        open_ = [next(taken[_series(f)]) for f in open_]
        # A file renamed away, with data at its old path, or a file with a later one in
        # its series (ending with a whole line): the writer has moved on, so its last
        # record is whole.
        live = {f.path for f in open_ if not f.rotated and f.size > 0}
        reads: list[Read] = []
        budget = max_bytes
        behind: set[tuple[str, str]] = set()  # series with a file the budget cut short
        # Rotated files first (stable: keeps the turns), their tails before the new
        # files' heads: a session opened at the end of one goes on in the other.
        for f in sorted(open_, key=lambda f: not f.rotated):
            if budget <= 0:
                break
            if _series(f) in behind:  # a later file of a series waits for the earlier
                continue
            start = f.offset
            superseded = (f.rotated and f.moved_from in live) or (
                f is not series[_series(f)][-1] and self._ends_a_line(f)
            )
            reads += self._drain(f, budget, budget == max_bytes, now, superseded)
            budget -= f.offset - start
            if f.examined < f.size:
                behind.add(_series(f))
        return reads

    @staticmethod
    def _ends_a_line(f: _File) -> bool:
        """``f`` ends with a newline: a file beside it, written later, may be another
        writer's (``postgresql-15-main.log`` and ``postgresql-16-main.log``): only a
        whole line of ``f`` is let go for it."""
        if f.fd is None or f.offset >= f.size:
            return False
        return _pread(f.fd, 1, f.size - 1) == b"\n"

    def _drain(
        self, f: _File, budget: int, fresh: bool, now: float, superseded: bool = False
    ) -> list[Read]:
        """Read ``f`` from its position within ``budget`` bytes (more only for a single
        record larger than the whole budget of a ``fresh`` poll). The last record is
        released once ``f`` is idle, rotated and no longer growing, or ``superseded``
        (its writer writes to a newer file: the one now at its old path, or a later one
        of its directory and suffix), or idle for ``partial_flush``; once idle for
        ``idle_flush`` only if it ends with a newline (``whole``): a writer paused in the
        middle of a line is waited for (before: after 2 s the line was let go in two
        halves, each quarantined, its statement lost)."""
        size = f.size
        idle = now - f.changed_at
        release = f.offset < size and (
            idle >= self.partial_flush or (f.rotated and not f.grew) or superseded
        )
        whole = f.offset < size and idle >= self.idle_flush
        if f.examined >= size and not (release or whole):
            return []
        f.examined = f.offset
        reads: list[Read] = []
        start = f.offset
        while f.offset < size and f.offset - start < budget:
            spent = f.offset - start
            read = self._read_once(f, size, budget - spent, fresh and not spent, release, whole)
            if read is None:
                break
            if read.data or read.too_long or read.cut:
                reads.append(read)
        if f.offset >= size:
            f.examined = size
        return reads

    def _read_once(
        self, f: _File, size: int, budget: int, fresh: bool, release: bool, whole: bool = False
    ) -> Read | None:
        """One step from ``f.offset``: a read (maybe empty), or None when what is left is
        a record still being written (``f.examined`` then covers it) or does not fit.
        ``release``: the rest is let go as it is; ``whole``: the rest is let go if it ends
        with a newline."""
        assert f.fd is not None
        start, line = f.offset, f.line
        if f.skipping:
            buf = _pread(f.fd, min(size - start, max(budget, SKIP_BLOCK)), start)
            if not buf:
                return None
            newline = buf.find(b"\n")
            f.offset = start + (newline + 1 if newline >= 0 else len(buf))
            if newline >= 0 or (release and f.offset >= size):
                f.line, f.skipping = line + 1, False
                if f.keep_long:
                    end = start + (newline if newline >= 0 else len(buf))
                    return self._cut_end(f, start, line, end)
            return self._made(f, start, line, b"", [])
        avail = size - start
        buf = _pread(f.fd, min(avail, budget), start)
        cut = self._cut(buf, f.pattern, _lets_go(buf, avail, release, whole))
        if cut <= 0 and len(buf) == min(avail, budget) < min(avail, self.max_line_bytes + 1):
            if not fresh:
                return None  # the next record does not fit what is left of the budget
            # no whole record within the budget: one record, however long (up to the cap)
            buf = _pread(f.fd, min(avail, self.max_line_bytes + 1), start)
            cut = _first_cut(buf, f.pattern)
            if cut <= 0 and _lets_go(buf, avail, release, whole):
                cut = len(buf)
        if cut <= 0:
            if len(buf) <= self.max_line_bytes:
                f.examined = size  # a record still being written: held back
                return None
            last = buf.rfind(b"\n")
            if last < 0:  # one line too long, still unterminated here: skip it
                f.offset, f.skipping = start + len(buf), True
                if f.keep_long:  # reported with its end, once its newline is read
                    f.long_head, f.long_start = buf[: self.max_line_bytes], start
                    return self._made(f, start, line, b"", [])
                return self._made(f, start, line, b"", [(line, buf[:TOO_LONG_KEPT])])
            cut = last + 1  # a record of many lines too long: give it in whole lines
        data = buf[:cut]
        long_at = _long_line(data, self.max_line_bytes)
        if long_at < 0:
            f.offset = start + cut
            n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
            f.line = line + n_lines
            return self._made(f, start, line, data, [], n_lines=n_lines)
        before = data[:long_at].count(b"\n")  # lines before it, each ending with a newline
        newline = data.find(b"\n", long_at)
        end = newline if newline >= 0 else cut
        f.offset = start + (newline + 1 if newline >= 0 else cut)
        f.line = line + before + 1
        if f.keep_long:
            head = data[long_at : long_at + self.max_line_bytes]
            tail = data[max(long_at + len(head), end - CUT_TAIL_BYTES) : end]
            cut_lines = [(line + before, cut_line(head, tail, end - long_at))]
            return self._made(f, start, line, data[:long_at], [], cut_lines, before)
        too_long = [(line + before, data[long_at : min(end, long_at + TOO_LONG_KEPT)])]
        return self._made(f, start, line, data[:long_at], too_long, n_lines=before)

    def _cut_end(self, f: _File, start: int, line: int, end: int) -> Read:
        """The read ending a too-long line of a ``keep_long`` file at offset ``end``: the
        line cut (``Read.cut``), or only counted (``too_long``) when its head is not known
        (its reading began before a restart)."""
        head, f.long_head = f.long_head, None
        if head is None or f.fd is None:
            return self._made(f, start, line, b"", [(line, b"")])
        tail_from = max(f.long_start + len(head), end - CUT_TAIL_BYTES)
        tail = _pread(f.fd, end - tail_from, tail_from)
        return self._made(
            f, start, line, b"", [], [(line, cut_line(head, tail, end - f.long_start))]
        )

    @staticmethod
    def _cut(buf: bytes, pattern: RecordStart | None, release: bool) -> int:
        """Bytes of ``buf`` made of whole records (all of it when releasing), or -1."""
        if release:
            return len(buf)
        cut = _split_point(buf, pattern)
        if pattern is not None and 0 < cut == len(buf):
            # the pattern matched the empty rest: the next line is not written yet
            cut = _split_point(buf[:-1], pattern)
        return cut

    def _made(
        self,
        f: _File,
        start: int,
        line: int,
        data: bytes,
        too_long: list[tuple[int, bytes]],
        cut: list[tuple[int, bytes]] | None = None,
        n_lines: int | None = None,
    ) -> Read:
        return Read(
            f.path,
            f.fingerprint,
            data,
            line,
            start,
            f.offset,
            too_long,
            self._position(f),
            (f.uid, f.generation),
            cut or [],
            n_lines if data else None,
        )

    @staticmethod
    def _position(f: _File) -> Position:
        return Position(
            offset=f.offset, line=f.line, hashed=f.hashed, path=f.path, skipping=f.skipping
        )


def _lets_go(buf: bytes, avail: int, release: bool, whole: bool) -> bool:
    """``buf``, all that is left of the file, is let go as it is: ``release`` (rotated,
    superseded, or quiet for ``partial_flush``), or ``whole`` (quiet for ``idle_flush``)
    and ending with its newline."""
    return len(buf) == avail and (release or (whole and buf.endswith(b"\n")))


def _first_cut(buf: bytes, pattern: RecordStart | None) -> int:
    """Index just past the first record of ``buf`` (the next record's start is in ``buf``
    when there is a ``pattern``), or -1. Steps over the lines of one record only."""
    newline = buf.find(b"\n")
    while newline >= 0:
        after = newline + 1
        if pattern is None or (after < len(buf) and pattern.match(buf, after)):
            return after
        newline = buf.find(b"\n", after)
    return -1


def _long_line(data: bytes, limit: int) -> int:
    """Where the first line longer than ``limit`` bytes (newline not counted) starts, or -1.

    Jumps from the last newline within ``limit + 1`` bytes to the next, so whole lines of
    ordinary length are stepped over ``limit`` bytes at a time, not one by one.
    """
    start = 0
    while len(data) - start > limit:
        newline = data.rfind(b"\n", start, start + limit + 1)
        if newline < 0:
            return start
        start = newline + 1
    return -1


def _pread(fd: int, n: int, offset: int) -> bytes:
    """Up to ``n`` bytes at ``offset`` (fewer only at the end of the file)."""
    parts = []
    while n > 0:
        part = os.pread(fd, n, offset)
        if not part:
            break
        parts.append(part)
        n -= len(part)
        offset += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ident(st: os.stat_result) -> Ident:
    return (st.st_dev, st.st_ino)


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_MTIME: Final = 3  # the modification time's place in a _stat_key


def _by_path(f: _File) -> str:
    return f.path


def _series(f: _File) -> tuple[str, str]:
    """The directory and suffix of ``f``'s path, rotation left out: the files its writer
    writes one after the other, each rotation starting the next (``postgresql-%a.log``),
    or renaming the last (``slow.log`` to ``slow.log.1``, ``server_audit.log.01``)."""
    directory, name = os.path.split(f.path)
    return directory, os.path.splitext(rotated_from(name)[0])[1]


def _written(f: _File) -> tuple[int, tuple[int, int, str], int]:
    """When ``f`` was last written (its modification time), then what its name says of
    its age, then the order it was first followed in: the older of two files of one
    series comes first."""
    return (f.stat_key[_MTIME] if f.stat_key else 0), by_name(f.path), f.uid


# A rotated copy's name: its writer's name, then a rotation's number (logrotate's
# ``.1``, the MariaDB audit plugin's ``.01``) or date (logrotate's ``dateext``,
# ``-20261130``; ``.2026-11-30``), maybe a compressor's suffix.
_ROTATED: Final = re.compile(r"(?P<name>.+?)(?P<stamp>(?:[.-]\d+)+)?(?:\.(?:gz|bz2|xz|zst))?")
_NUMBERED: Final = re.compile(r"\.(\d{1,3})")  # ``.N``: the higher, the older


def rotated_from(name: str) -> tuple[str, str]:
    """The name a writer wrote ``name`` under, and the rotation's stamp it has since
    (``""`` for the file being written): ``slow.log.2.gz`` -> ``("slow.log", ".2")``."""
    found = _ROTATED.fullmatch(name)
    assert found is not None  # every name matches
    return found["name"], found["stamp"] or ""


def by_name(path: str) -> tuple[int, int, str]:
    """What a log's name says of its age, for files written at the same time (copied
    without their times): rotated copies before the file being written, a higher
    rotation number before a lower, dates in their order."""
    stamp = rotated_from(os.path.basename(path))[1]
    numbered = _NUMBERED.fullmatch(stamp)
    return (1 if not stamp else 0), -int(numbered[1]) if numbered else 0, path
