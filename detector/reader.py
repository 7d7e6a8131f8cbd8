"""Reading log files as frames of lines: plain or gzip, in record-aligned chunks.

A chunk is a ``pl.DataFrame`` with ``line_no`` (1-based, UInt64) and ``line`` (String).
Bytes that are not valid UTF-8 are replaced with U+FFFD rather than failing the file;
the parser then rejects or keeps the line on its own merits.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

import polars as pl

CHUNK_BYTES: Final = 64 * 1024 * 1024
GZIP_MAGIC: Final = b"\x1f\x8b"
# A line longer than LONG_LINE_BYTES is never held whole: its first LONG_LINE_BYTES and
# its last CUT_TAIL_BYTES are kept, with a marker giving the bytes cut between them
# (:func:`cut_line`). The tail keeps a record's end: pgAudit's row count is there.
LONG_LINE_BYTES: Final = 1_000_000
CUT_TAIL_BYTES: Final = 4096
MAX_RECORD_BYTES: Final = 256 * 1024 * 1024  # a record of several lines longer is cut at a line
# ``[trovewatch cut N bytes]``: no quote, backslash or comma, so that a CSV or JSON line
# stays one. Formats find it with this expression.
CUT_MARKER_RE: Final = r"\[trovewatch cut (\d+) bytes\]"


# What reading a compressed file cut short or damaged raises: gzip's errors, an end of
# file before the stream's end, and zlib's for a damaged stream ("invalid distance too
# far back").
UNREADABLE: Final = (OSError, EOFError, zlib.error)


class RecordStart(Protocol):
    """Where a record may start: ``match(buf, pos)`` is truthy for a line beginning at
    ``pos`` in ``buf`` before which records may be cut (a compiled pattern, or an object
    that also looks at the lines after ``pos``)."""

    def match(self, buf: bytes, pos: int, /) -> object: ...


class NotALogError(Exception):
    """The input cannot be a log at all (binary, empty, unknown format)."""


@dataclass
class Chunk:
    """A run of whole records from one file: its text and the number of its first line."""

    path: str
    data: bytes
    first_line: int
    _lines: pl.DataFrame | None = None
    _text: str | None = None
    _n_lines: int | None = None

    @property
    def text(self) -> str:
        """The chunk as text; bytes that are not UTF-8 become U+FFFD."""
        if self._text is None:
            self._text = self.data.decode("utf-8", "replace")
        return self._text

    @property
    def lines(self) -> pl.DataFrame:
        """The chunk as a frame: ``line_no`` (UInt64, 1-based in the file), ``line``."""
        if self._lines is None:
            # A text ending in a newline splits into one more, empty, string: the slice
            # drops it (a copy of the text without its newline cost more).
            self._lines = (
                pl.DataFrame({"line": [self.text]})
                .select(pl.col("line").str.split("\n").list.explode())
                .slice(0, self.n_lines)
                .with_columns(pl.col("line").str.strip_suffix("\r"))
                .with_row_index("line_no", offset=self.first_line)
                .with_columns(pl.col("line_no").cast(pl.UInt64))
            )
        return self._lines

    @property
    def n_lines(self) -> int:
        """Lines in the chunk; a chunk ends with a newline except, maybe, a file's last."""
        if self._n_lines is None:
            self._n_lines = self.data.count(b"\n") + (0 if self.data.endswith(b"\n") else 1)
        return self._n_lines


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open ``path`` for reading bytes, transparently decompressing gzip (by magic, not name)."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")
    return path.open("rb")


# How far into a file the head is looked for past lines too long to be in it.
HEAD_SCAN_BYTES: Final = 16 * 1024 * 1024


def head_lines(path: Path, n: int = 20, max_bytes: int = 256 * 1024) -> list[str]:
    """The first ``n`` lines of ``path`` (decompressed), for format detection
    (:func:`head_of`)."""
    try:
        with open_binary(path) as fh:
            return head_of(fh, n, max_bytes)
    except UNREADABLE as exc:
        raise NotALogError(f"{path}: cannot read: {exc}") from exc


def head_of(fh: io.BufferedIOBase, n: int = 20, max_bytes: int = 256 * 1024) -> list[str]:
    """The first ``n`` lines read from ``fh`` (a file, a pushed body), for format
    detection: about ``max_bytes`` of them at most.

    A line longer than ``max_bytes`` (a statement with a giant ``IN`` list, say) is left
    out and the lines after it are taken, as far as :data:`HEAD_SCAN_BYTES` in: a log
    that begins with one is detected by its other lines (cut into the head, its first
    record read as no format's). Nothing but such lines gives the first, cut to
    ``max_bytes``."""
    kept: list[bytes] = []
    cut: bytes | None = None  # the first line too long to keep, cut
    size = scanned = 0
    while len(kept) < n and size < max_bytes and scanned < HEAD_SCAN_BYTES:
        line = fh.readline(max_bytes + 1)
        scanned += len(line)
        if not line:
            break
        if len(line) <= max_bytes:
            kept.append(line)
            size += len(line)
            continue
        cut = line[:max_bytes] if cut is None else cut
        while line and not line.endswith(b"\n") and scanned < HEAD_SCAN_BYTES:
            line = fh.readline(1 << 20)  # the rest of the long line, passed over
            scanned += len(line)
    if not kept and cut is not None:
        kept = [cut]
    return b"".join(kept).decode("utf-8", "replace").splitlines()[:n]


def last_written(path: str | Path) -> datetime | None:
    """When ``path`` was last written (None: no such file, a pushed or piped stream)."""
    try:
        return datetime.fromtimestamp(Path(path).stat().st_mtime, UTC)
    except OSError:
        return None


def looks_binary(path: Path) -> bool:
    """Mostly control bytes at the start: a binary file, not a log. (A few NUL bytes
    inside a text log are only bad lines, for the parser to quarantine.)"""
    return not_text(path) is not None


def not_text(path: Path) -> str | None:
    """Why ``path`` is no text log to read (:func:`not_text_data` of its first bytes),
    or None."""
    try:
        with open_binary(path) as fh:
            head = fh.read(4096)
    except UNREADABLE:
        return None
    return not_text_data(head)


def not_text_data(data: bytes) -> str | None:
    """Why ``data`` (the first bytes of a file or a body) is no text log to read, or
    None: UTF-16 text (what Windows tools write as "Unicode": a byte-order mark, or a
    NUL beside each character), or other binary data (:func:`is_binary`)."""
    head = data[:4096]
    half = len(head) // 2
    nuls = sorted((head[0::2].count(0), head[1::2].count(0)))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (
        half >= 32 and nuls[1] > 0.9 * half and nuls[0] < 0.1 * half
    ):
        return "UTF-16 text; trovewatch reads UTF-8: convert it first (iconv -f UTF-16 -t UTF-8)"
    if is_binary(head):
        return "binary data, not a text log"
    return None


def is_binary(data: bytes) -> bool:
    """More than a tenth control bytes in the first 4 KiB of ``data``."""
    head = data[:4096]
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return control > len(head) // 10


def cut_marker(n: int) -> bytes:
    """The marker put where ``n`` bytes of a too-long line were cut (:data:`CUT_MARKER_RE`)."""
    return b"[trovewatch cut %d bytes]" % n


def safe_head(head: bytes) -> bytes:
    """``head`` without an end that a cut would leave dangling: part of a UTF-8
    character, a quote (maybe half of a CSV ``""``), a backslash or a JSON escape."""
    end = len(head)
    for _ in range(2):
        while end and (head[end - 1] & 0xC0) == 0x80:
            end -= 1
        if end and head[end - 1] >= 0xC0:
            end -= 1
        escape = head.rfind(b"\\", max(end - 6, 0), end)
        if escape >= 0:
            end = escape
        while end and head[end - 1] in b'"\\':
            end -= 1
    return head[:end]


def safe_tail(tail: bytes) -> bytes:
    """``tail`` without a start that a cut would leave dangling (:func:`safe_head`)."""
    start = 0
    while start < len(tail) and ((tail[start] & 0xC0) == 0x80 or tail[start] in b'"\\'):
        start += 1
    return tail[start:]


def cut_line(head: bytes, tail: bytes, length: int) -> bytes:
    """A line of ``length`` bytes (newline not counted), as its ``head``, a marker
    giving the bytes cut, and its ``tail`` (the line whole when they are all of it)."""
    if len(head) + len(tail) >= length:
        return head + tail
    head, tail = safe_head(head), safe_tail(tail)
    return head + cut_marker(length - len(head) - len(tail)) + tail


class LineCap:
    """A byte stream with every line longer than ``limit`` cut (:func:`cut_line`): its
    first ``limit`` bytes and its last ``tail`` bytes kept. Blocks without such a
    line go through uncopied; memory holds one block and one tail, however long a line
    (or a file without newlines) is."""

    def __init__(self, limit: int = LONG_LINE_BYTES, tail: int = CUT_TAIL_BYTES) -> None:
        self.limit = limit
        self.tail_bytes = tail
        self.run = 0  # bytes of the current line given out so far
        self.cutting = False
        self.kept = 0  # bytes of the line being cut given out (its head)
        self.length = 0  # bytes of the line being cut so far
        self.tail = b""
        self.cut = 0  # lines cut so far

    def feed(self, block: bytes) -> bytes:
        """The next bytes of the stream, long lines cut."""
        parts: list[bytes | memoryview] = []
        view = memoryview(block)
        pos = emit = 0
        n = len(block)
        while pos < n:
            if self.cutting:
                newline = block.find(b"\n", pos)
                self._grow(view[pos : newline if newline >= 0 else n])
                if newline < 0:
                    pos = emit = n
                    break
                parts.append(self._finish())
                pos = emit = newline  # the newline goes out with what follows
                continue
            room = self.limit - self.run
            # The last newline within reach: every line before it fits, so ordinary lines
            # are stepped over a whole limit at a time, not one by one.
            newline = block.rfind(b"\n", pos, pos + room + 1)
            if newline >= 0:
                pos, self.run = newline + 1, 0
                continue
            if n - pos <= room:
                self.run += n - pos
                pos = n
                break
            # the line passes the limit here: the head ends, the rest is cut
            head_end = pos + len(safe_head(block[pos : pos + room]))
            parts.append(view[emit:head_end])
            self.cutting, self.kept = True, self.run + head_end - pos
            self.length, self.tail = self.kept, b""
            pos = emit = head_end
        if not parts:
            return block if emit == 0 else b""
        parts.append(view[emit:pos])
        return b"".join(parts)

    def close(self) -> bytes:
        """The end of a line still being cut when the stream ends (no newline)."""
        return self._finish() if self.cutting else b""

    def _grow(self, part: memoryview) -> None:
        self.length += len(part)
        self.tail = (self.tail + bytes(part[-self.tail_bytes :]))[-self.tail_bytes :]

    def _finish(self) -> bytes:
        if self.length - self.kept <= len(self.tail):  # nothing between: the line is whole
            end = self.tail
        else:
            tail = safe_tail(self.tail)
            end = cut_marker(self.length - self.kept - len(tail)) + tail
            self.cut += 1
        self.cutting, self.tail, self.run, self.length = False, b"", 0, 0
        return end


def _split_point(buf: bytes, record_start: RecordStart | None) -> int:
    """Index just past the last newline in ``buf`` after which a new record starts, or -1."""
    end = len(buf)
    while True:
        cut = buf.rfind(b"\n", 0, end)
        if cut < 0:
            return -1
        if record_start is None or record_start.match(buf, cut + 1):
            return cut + 1
        end = cut


def read_chunks(
    path: Path,
    record_start: RecordStart | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    max_line: int = LONG_LINE_BYTES,
) -> Iterator[Chunk]:
    """Yield ``path`` as chunks of whole lines, each ending where a record may start.

    ``record_start`` is matched at the beginning of a line; chunks are only cut before a
    line that matches it, so a multi-line record (a stderr statement continued with tabs,
    a csvlog field with embedded newlines) is never split between chunks, unless it is
    longer than :data:`MAX_RECORD_BYTES` (then it comes in pieces, at lines).
    Lines longer than ``max_line`` bytes are cut (:class:`LineCap`), so memory stays
    bounded whatever the file holds. Each chunk's bytes are copied once (the short tail
    carried over is the only other copy).
    """
    name = str(path)
    next_line = 1
    carry = b""
    cap = LineCap(max_line)
    with open_binary(path) as fh:
        while True:
            raw = fh.read(chunk_bytes)
            # A short read is the file's end (a buffered read returns less only there):
            # what is left is whole records, so the last line is not parsed alone (away
            # from its statement's other lines and its session's connection line).
            at_end = len(raw) < chunk_bytes
            block = cap.feed(raw)
            if at_end:
                data = b"".join((carry, block, cap.close()))
                if data:
                    yield Chunk(name, data, next_line)
                return
            cut = _split_point(block, record_start)
            if cut <= 0 and len(carry) + len(block) > MAX_RECORD_BYTES:
                cut = block.rfind(b"\n") + 1  # no record is this long: cut at a line
            if cut <= 0:
                carry += block
                continue
            # One copy of the chunk's bytes: ``carry + block[:cut]`` would make two, and
            # two fresh 16-64 MiB allocations cost more in page faults than the copying.
            data = b"".join((carry, memoryview(block)[:cut])) if carry else block[:cut]
            chunk = Chunk(name, data, next_line)
            carry = block[cut:]
            next_line += chunk.n_lines
            yield chunk
