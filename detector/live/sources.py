"""Where live lines come from: followed files, compressed archives read once, stdin.

Every source hands out :class:`~detector.live.follow.Read` batches of whole records and
reports JSON-able positions. The service saves the positions in the same checkpoint as
the window state that holds those records' events, so after a crash each source resumes
exactly after what was saved.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from detector.live.follow import FINGERPRINT_BYTES, Follower, Read, by_name
from detector.reader import GZIP_MAGIC, UNREADABLE, Chunk, LineCap, open_binary, read_chunks

log = logging.getLogger(__name__)

# Seconds since an archive last changed within which one that ends too soon is taken for
# one still being written (logrotate compressing a rotated log), and tried again.
SETTLE = 60.0


def unmatched(pattern: str) -> list[str]:
    """Why the glob ``pattern`` gives no file to follow, if it gives none: its directory
    cannot be listed (not a directory, too many open files...: the glob says nothing of
    it), or no file there matches."""
    if glob.glob(pattern):
        return []
    unlisted = unlistable(pattern)
    return [unlisted if unlisted is not None else f"no file matches {pattern}"]


def unlistable(pattern: str) -> str | None:
    """Why the directory of the glob ``pattern`` cannot be listed (permissions, not a
    directory), if it cannot; a directory not made yet (the server not started) can."""
    directory = os.path.dirname(pattern) or "."
    if glob.has_magic(directory):
        return None
    try:
        os.listdir(directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot list {directory} for {pattern}: {exc.strerror or exc}"
    return None


def cannot_read(path: str, why: str) -> str:
    """What to say of a followed file that cannot be opened, and what to do."""
    return (
        f"cannot read {path}: {why}; nothing of it is scored. Give the user serve runs as "
        f"({_user()}) read access through the file's group (PostgreSQL: log_file_mode = "
        "0640; the unit's SupplementaryGroups; docs/operations.md)"
    )


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a name (a container's)
        return f"uid {os.geteuid()}"


class Source(Protocol):
    label: str  # bounded: a glob or "stdin", used as a metric label

    def poll(self, max_bytes: int) -> list[Read]: ...

    def positions(self) -> dict[str, Any]: ...

    def caught_up(self) -> bool: ...

    def behind(self) -> set[str]:
        """The inputs (``Read.source``) with whole records not read yet."""
        ...

    def lag_bytes(self) -> int: ...

    def problems(self) -> list[str]: ...

    def close(self) -> None: ...


def is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


class Files:
    """Plain log files matching a glob, followed as they grow (see ``Follower``)."""

    def __init__(
        self,
        pattern: str,
        positions: dict[str, Any] | None,
        *,
        max_line_bytes: int,
        record_start: Callable[[str], Any],
        keep_long: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.label = pattern
        self.pattern = pattern
        self.follower = Follower(
            [pattern],
            positions,
            max_line_bytes=max_line_bytes,
            record_start=record_start,
            keep_long=keep_long,
            exclude=is_gzip,
        )
        # The same glob's compressed archives: its oldest records (see ``open_sources``).
        self.older: Archives | None = None

    def poll(self, max_bytes: int) -> list[Read]:
        if self.older is not None and self.older.pending():
            max_bytes = 0  # the archives' records first; the follower only looks meanwhile
        told = dict(self.follower.unreadable)
        reads = self.follower.poll(max_bytes)
        for path, why in self.follower.unreadable.items():
            if told.get(path) != why:
                log.warning("%s", cannot_read(path, why))
        return reads

    def positions(self) -> dict[str, Any]:
        return self.follower.positions()

    def caught_up(self) -> bool:
        return self.follower.caught_up()

    def behind(self) -> set[str]:
        return self.follower.behind()

    def lag_bytes(self) -> int:
        return sum(self.follower.lag_bytes().values())

    def problems(self) -> list[str]:
        return unmatched(self.pattern) + self.unreadable()

    def unreadable(self) -> list[str]:
        """The matched files that cannot be opened, each with what to do."""
        return [cannot_read(p, why) for p, why in sorted(self.follower.unreadable.items())]

    def close(self) -> None:
        self.follower.close()


class Archives:
    """Compressed logs matching a glob (rotated ``.gz`` files, the bundled samples):
    complete files, each read once, in record-aligned chunks.

    An archive beginning as a file that ``files`` (the same glob's followed files)
    knows is that file compressed by logrotate: what the follower read of it is not
    read again. It adds nothing while the follower still reads the file itself, else
    only the tail the follower did not reach (rotated and compressed while stopped).
    """

    def __init__(
        self,
        pattern: str,
        positions: dict[str, Any] | None,
        *,
        record_start: Callable[[str], Any],
        chunk_bytes: int = 8 << 20,
        files: Files | None = None,
    ) -> None:
        self.label = pattern
        self.pattern = pattern
        self._files = files
        self._done: dict[str, Any] = dict(positions or {})
        self._record_start = record_start
        self._chunk_bytes = chunk_bytes
        self._keys: dict[str, tuple[tuple[int, int, int], str | None]] = {}  # path -> stat, key
        # The file being read, kept open between polls so it is decompressed once.
        self._reading: tuple[str, Iterator[tuple[Chunk, int]]] | None = None
        self._growing: set[str] = set()  # archives that ended too soon, still being written

    def _key(self, path: str) -> tuple[str | None, int]:
        """The file's identity (None: not compressed, or no regular file: a FIFO, whose
        opening would wait for a writer), read again only when its stat changes, and
        when it was last written (ns)."""
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None, st.st_mtime_ns
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._keys.get(path)
        if known is None or known[0] != stamp:
            known = (stamp, _digest(path))
            self._keys[path] = known
        return known[1], st.st_mtime_ns

    def _todo(self) -> list[tuple[str, str]]:
        """The archives not read to their end, oldest first: by when they were last
        written (``gzip`` and logrotate keep the log's time), then by what their names
        say (``slow.log.27.gz`` before ``slow.log.3.gz``)."""
        todo = []
        for path in glob.glob(self.pattern):
            try:
                key, written = self._key(path)
            except OSError:  # gone since the glob; or unreadable, which ``files`` tells
                continue
            if key is not None and not self._done.get(key, {}).get("done"):
                todo.append((written, by_name(path), key, path))
        return [(key, path) for *_, key, path in sorted(todo)]

    def _start(self, path: str) -> dict[str, Any] | None:
        """Where to begin an archive not begun yet; None: not yet (the follower has not
        looked at its files)."""
        fresh: dict[str, Any] = {"path": path, "offset": 0, "line": 1}
        if self._files is None:
            return fresh
        follower = self._files.follower
        if not follower.polled:
            return None
        try:
            with open_binary(Path(path)) as fh:
                head = fh.read(FINGERPRINT_BYTES)
        except UNREADABLE:  # not whole yet, or damaged: read (and refused) as before
            return fresh
        found = follower.origin(head)
        if found is None:
            return fresh
        position, reading = found
        if reading:  # the follower reads the file itself: the copy adds nothing
            return {**fresh, "done": True}
        return {"path": path, "offset": position["offset"], "line": position["line"]}

    def poll(self, max_bytes: int) -> list[Read]:
        reads: list[Read] = []
        size = 0
        for key, path in self._todo():
            state = self._done.get(key) or self._start(path)
            if state is None:
                continue
            self._done[key] = state
            if state.get("done"):
                continue
            if self._reading is None or self._reading[0] != key:
                chunks = read_chunks(Path(path), self._record_start(path), self._chunk_bytes)
                self._reading = (key, _skip(chunks, state["offset"]))
            try:
                for chunk, start in self._reading[1]:  # resumes where the last poll stopped
                    end = start + len(chunk.data)
                    reads.append(Read(path, key, chunk.data, chunk.first_line, start, end, []))
                    state.update(offset=end, line=chunk.first_line + chunk.n_lines)
                    size += len(chunk.data)
                    if size >= max_bytes:
                        return reads
            except UNREADABLE as exc:
                self._reading = None
                if _changed_within(path, SETTLE):  # still being written: tried again later
                    self._growing.add(key)
                    return reads
                state["damaged"] = str(exc)
                log.warning("%s", self._damage(state))
            state["done"] = True
            self._reading = None
        return reads

    @staticmethod
    def _damage(state: dict[str, Any]) -> str:
        return (
            f"{state['path']}: a damaged archive, not read past line {state['line']}"
            f" ({state['damaged']}): the records after it are lost"
        )

    def positions(self) -> dict[str, Any]:
        return {k: dict(v) for k, v in self._done.items()}

    def caught_up(self) -> bool:
        return not self._todo()

    def pending(self) -> bool:
        """Archives to read before the glob's plain files: not read yet, and not one
        still being written (a writer of ``.gz`` files must not hold the logs back)."""
        return any(key not in self._growing for key, _ in self._todo())

    def behind(self) -> set[str]:
        return {path for _, path in self._todo()}

    def lag_bytes(self) -> int:
        return 0

    def problems(self) -> list[str]:
        return unmatched(self.pattern) + self.damaged()

    def damaged(self) -> list[str]:
        """What was lost of each damaged archive still under the glob (once it is moved
        away, its loss is known)."""
        damaged = [s for s in self._done.values() if "damaged" in s]
        paths = set(glob.glob(self.pattern)) if damaged else set()
        return [self._damage(s) for s in damaged if s["path"] in paths]

    def close(self) -> None:
        pass


def _changed_within(path: str, seconds: float) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime < seconds
    except OSError:  # gone: nothing more will come of it
        return False


def _skip(chunks: Iterator[Chunk], offset: int) -> Iterator[tuple[Chunk, int]]:
    """The chunks after ``offset`` (a resumed file, or a line where a follower stopped
    reading the file compressed), each with its start offset."""
    start = 0
    for chunk in chunks:
        end = start + len(chunk.data)
        if end > offset:
            if start < offset:  # begins inside this chunk, at a line
                cut = offset - start
                line = chunk.first_line + chunk.data.count(b"\n", 0, cut)
                chunk, start = Chunk(chunk.path, chunk.data[cut:], line), offset
            yield chunk, start
        start = end


def _digest(path: str, n: int = 4096) -> str | None:
    """A compressed file's identity: a hash of its first bytes, as the follower's; None
    for a file that is not compressed."""
    with open(path, "rb") as fh:
        head = fh.read(n)
    return hashlib.sha256(head).hexdigest() if head.startswith(GZIP_MAGIC) else None


class Stdin:
    """Lines from standard input, read by a thread into a bounded queue: when the
    service falls behind, the thread blocks (and so does the writer), nothing is dropped.
    Standard input cannot be re-read, so a restart continues with what comes next.
    Lines over 1 MB are cut to their head and end as they come (``reader.LineCap``):
    a stream without newlines is never held whole."""

    label = "stdin"

    def __init__(self, stream: BinaryIO | None = None, block_bytes: int = 1 << 20) -> None:
        self._stream = stream if stream is not None else sys.stdin.buffer
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._carry = b""
        self._cap = LineCap()
        self._line = 1
        self._offset = 0
        self._eof = False
        self._block = block_bytes
        threading.Thread(target=self._pump, name="trovewatch-stdin", daemon=True).start()

    def _pump(self) -> None:
        while True:
            block = (
                self._stream.read1(self._block)
                if hasattr(self._stream, "read1")
                else self._stream.read(self._block)
            )
            self._queue.put(block or None)
            if not block:
                return

    def poll(self, max_bytes: int) -> list[Read]:
        data = bytearray()
        while len(data) < max_bytes:
            try:
                block = self._queue.get(timeout=0.05 if not data else 0)
            except queue.Empty:
                break
            if block is None:
                self._eof = True
                break
            data += block
        buf = self._carry + self._cap.feed(bytes(data))
        if self._eof:
            buf += self._cap.close()
        cut = buf.rfind(b"\n") + 1
        if self._eof:
            cut = len(buf)
        whole, self._carry = buf[:cut], buf[cut:]
        if not whole:
            return []
        read = Read(
            "stdin", "stdin", whole, self._line, self._offset, self._offset + len(whole), []
        )
        self._line += whole.count(b"\n")
        self._offset += len(whole)
        return [read]

    def positions(self) -> dict[str, Any]:
        return {"stdin": {"offset": self._offset, "line": self._line}}

    def caught_up(self) -> bool:
        return self._queue.empty()

    def behind(self) -> set[str]:
        return set() if self.caught_up() else {"stdin"}

    def lag_bytes(self) -> int:
        return len(self._carry)

    def problems(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


def open_sources(
    patterns: Sequence[str],
    saved: dict[str, Any],
    *,
    max_line_bytes: int,
    record_start: Callable[[str], Any],
    keep_long: Callable[[str], bool] = lambda path: False,
    stdin: Stdin | None = None,
) -> list[Source]:
    """One source per ``--follow`` pattern ('-' is stdin: ``stdin`` if given, so a
    reopened service keeps the one reader of the stream), resumed from ``saved``."""
    sources: list[Source] = []
    for pattern in patterns:
        if pattern == "-":
            sources.append(stdin or Stdin())
            continue
        files = Files(
            pattern,
            saved.get(f"files:{pattern}"),
            max_line_bytes=max_line_bytes,
            record_start=record_start,
            keep_long=keep_long,
        )
        archives = Archives(
            pattern, saved.get(f"archives:{pattern}"), record_start=record_start, files=files
        )
        # Compressed archives are rotated logs, older than the files still plain: read
        # first, so that windows close behind their records, not before them.
        files.older = archives
        sources += [files, archives]
    return sources


def source_key(source: Source) -> str:
    kind = {"Files": "files", "Archives": "archives", "Stdin": "stdin"}[type(source).__name__]
    return f"{kind}:{source.label}"
