"""Reading log files as frames of lines: plain or gzip, in record-aligned chunks.

A chunk is a ``pl.DataFrame`` with ``line_no`` (1-based, UInt64) and ``line`` (String).
Bytes that are not valid UTF-8 are replaced with U+FFFD rather than failing the file;
the parser then rejects or keeps the line on its own merits.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

CHUNK_BYTES: Final = 64 * 1024 * 1024
GZIP_MAGIC: Final = b"\x1f\x8b"


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


def head_lines(path: Path, n: int = 20, max_bytes: int = 256 * 1024) -> list[str]:
    """The first ``n`` lines of ``path`` (decompressed), for format detection."""
    try:
        with open_binary(path) as fh:
            data = fh.read(max_bytes)
    except (OSError, EOFError) as exc:
        raise NotALogError(f"{path}: cannot read: {exc}") from exc
    return data.decode("utf-8", "replace").splitlines()[:n]


def looks_binary(path: Path) -> bool:
    """Mostly control bytes at the start: a binary file, not a log. (A few NUL bytes
    inside a text log are only bad lines, for the parser to quarantine.)"""
    try:
        with open_binary(path) as fh:
            head = fh.read(4096)
    except (OSError, EOFError):
        return False
    return is_binary(head)


def is_binary(data: bytes) -> bool:
    """More than a tenth control bytes in the first 4 KiB of ``data``."""
    head = data[:4096]
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return control > len(head) // 10


def _split_point(buf: bytes, record_start: re.Pattern[bytes] | None) -> int:
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
    record_start: re.Pattern[bytes] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[Chunk]:
    """Yield ``path`` as chunks of whole lines, each ending where a record may start.

    ``record_start`` is matched at the beginning of a line; chunks are only cut before a
    line that matches it, so a multi-line record (a stderr statement continued with tabs,
    a csvlog field with embedded newlines) is never split between chunks. Each chunk's
    bytes are copied once (the short tail carried over is the only other copy).
    """
    name = str(path)
    next_line = 1
    carry = b""
    with open_binary(path) as fh:
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                if carry:
                    yield Chunk(name, carry, next_line)
                return
            # A short read is the file's end (a buffered read returns less only there):
            # what is left is whole records, so the last line is not parsed alone (away
            # from its statement's other lines and its session's connection line).
            at_end = len(block) < chunk_bytes
            cut = len(block) if at_end else _split_point(block, record_start)
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
