"""Lines that cannot be parsed: counted by a reason from a fixed set and quarantined.

A malformed line is data, not an exception. Each format reports its rejects as a frame
(``line_no``, ``reason``, ``line``); :class:`Quarantine` counts them and appends them,
with the file they came from, to an NDJSON quarantine file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import IO, Final

import polars as pl


class Reason(StrEnum):
    """Why a line was rejected. A small fixed set, so it can be a metric label."""

    INVALID_JSON = "invalid_json"  # a JSON-lines input line that is not a JSON object
    UNRECOGNISED = "unrecognised"  # does not look like a line of the detected format
    TRUNCATED = "truncated"  # a record cut short: too few fields, unterminated AUDIT record
    BAD_FIELD = "bad_field"  # a field with an impossible value: unparsable time, bad number
    # a time in a zone abbreviation of several zones (CST: China or the central United
    # States) or none known: the server's zone is to be told (postgres_timezone)
    UNKNOWN_ZONE = "unknown_zone"
    NOT_AUDIT = "not_audit"  # a well-formed record lacking the fields an audit event needs
    TOO_LONG = "too_long"  # a record longer than MAX_LINE_CHARS bytes


REJECT_SCHEMA: Final = pl.Schema({"line_no": pl.UInt64, "reason": pl.String, "line": pl.String})
MAX_LINE_CHARS: Final = 1_000_000  # bytes; a longer record is quarantined, not parsed


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def rejects(frame: pl.DataFrame, mask: pl.Expr, reason: Reason) -> pl.DataFrame:
    """The rows of ``frame`` selected by ``mask`` as rejects.

    ``frame`` needs ``line_no``; its ``line`` (the raw text) is kept when it has one, and
    is otherwise filled in later by :func:`with_raw_lines`.
    """
    line = pl.col("line") if "line" in frame.columns else pl.lit(None)
    return frame.filter(mask).select(
        pl.col("line_no").cast(pl.UInt64),
        pl.lit(reason.value).alias("reason"),
        line.cast(pl.String).alias("line"),
    )


def split_too_long(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``lines`` (``line_no``, ``line``: a line's or a record's text) of at most
    :data:`MAX_LINE_CHARS` bytes, and the others as ``too_long`` rejects."""
    long = pl.col("line").str.len_bytes() > MAX_LINE_CHARS
    return lines.filter(~long), rejects(lines, long, Reason.TOO_LONG)


def with_raw_lines(found: pl.DataFrame, lines: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """Rejects with their raw text taken from ``lines()`` (``line_no``, ``line``) where missing.

    ``lines`` is only called when some reject lacks its text: splitting a chunk into lines
    costs time that clean input should not pay.
    """
    if found.is_empty() or found["line"].null_count() == 0:
        return found
    raw = lines().select("line_no", pl.col("line").alias("_raw"))
    return (
        found.join(raw, on="line_no", how="left", maintain_order="left")
        .with_columns(pl.coalesce("line", "_raw").alias("line"))
        .drop("_raw")
    )


class QuarantineError(OSError):
    """The quarantine file cannot be written: the user's path, not the log being read."""


class Quarantine:
    """Counts rejected lines by reason and writes them to ``path`` (NDJSON) if given.

    With ``max_bytes`` the file is rotated before it would grow past that size, keeping
    one previous file (``<path>.1``): a flood of garbage (gigabytes appended to a
    followed log) keeps the latest rejects, at most twice ``max_bytes`` on disk, and
    cannot fill the disk that ``serve``'s state is on. Every line is counted all the same.
    """

    def __init__(self, path: Path | None, max_bytes: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.counts: Counter[str] = Counter()
        self._fh: IO[bytes] | None = None

    def add(self, source: str, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        for reason, n in frame.group_by("reason").len().iter_rows():
            self.counts[reason] += n
        if self.path is None:
            return
        records = frame.select(
            pl.lit(source).alias("file"),
            pl.col("line_no").alias("line"),
            "reason",
            pl.col("line").str.slice(0, 10_000).alias("raw"),
        )
        buffer = io.BytesIO()
        records.write_ndjson(buffer)
        try:
            if self.max_bytes is None:
                self._append(self._open(), buffer.getvalue())
            else:
                self._write_bounded(buffer.getvalue(), self.max_bytes)
        except OSError as exc:
            raise QuarantineError(
                f"quarantine file {self.path}: cannot be written ({exc})"
            ) from exc

    def _open(self) -> IO[bytes]:
        assert self.path is not None
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Rejected lines may carry statement text and its literals: the owner's only.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            # Unbuffered: each batch of rejects is in the file once add() returns, before
            # the positions past them are saved (before: the last 4 KiB waited in this
            # process's buffer until close, and a kill -9 lost them, counted though).
            self._fh = os.fdopen(fd, "ab", buffering=0)
        return self._fh

    @staticmethod
    def _append(fh: IO[bytes], data: bytes) -> None:
        """All of ``data`` or none of it: a write cut short (a full disk) is taken back,
        so the file holds whole lines only (before: a torn record, which the next write
        after space returned was glued to)."""
        before = fh.tell()
        try:
            view = memoryview(data)
            while view:
                written = fh.write(view)
                if not written:
                    raise OSError(errno.EIO, "nothing written")
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fh.fileno(), before)
            raise

    def _write_bounded(self, data: bytes, limit: int) -> None:
        """Append whole lines of ``data``, rotating the file whenever the next ones would
        take it past ``limit`` (a single line longer than that is written alone)."""
        assert self.path is not None
        while data:
            fh = self._open()
            room = limit - fh.tell()
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1
            if cut == 0 and fh.tell() > 0:
                fh.close()
                self._fh = None
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                continue
            if cut == 0:  # one line longer than the limit, in an empty file
                cut = data.find(b"\n") + 1 or len(data)
            self._append(fh, data[:cut])
            data = data[cut:]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
