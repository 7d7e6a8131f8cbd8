"""The ``score`` output: NDJSON, one line per scored account-window, sorted by window
start, then account.

A batch run scores its accounts a batch at a time (:func:`detector.pipeline.score_period`),
each batch's rows sorted by window start, then account. :class:`WindowOrder` puts them
back in the output's order without holding them all: it cuts each batch into time
slices chosen beforehand, spills the pieces to Arrow IPC files, and gives the slices
back one after another, each read, sorted and handed out whole. Memory then follows the
largest slice and batch, not the log.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import polars as pl

from detector import features as F


def write_ndjson(scored: pl.DataFrame | Iterable[pl.DataFrame], out: Path | None) -> None:
    """Write scored windows as NDJSON (ISO-8601 UTC times) to ``out`` or stdout.

    ``scored``: one frame, or frames written one after the other (NDJSON is one line per
    row, so the parts' lines are the lines of the whole)."""
    parts = [scored] if isinstance(scored, pl.DataFrame) else scored
    if out is None:
        for part in parts:
            sys.stdout.write(_formatted(part).write_ndjson())
        return
    # Polars writes the bytes into the file itself: the same bytes as through a Python
    # string, in less than half the time (no 60 MB str built and encoded).
    with out.open("wb") as fh:
        for part in parts:
            try:
                _formatted(part).write_ndjson(fh)
            except OSError as exc:
                raise _as_python_error(exc, out) from exc


def _as_python_error(exc: OSError, path: Path) -> OSError:
    """The error Python's own write would raise: Polars' writer gives neither the errno
    nor the file, only "... (os error 28)" at the end of its message."""
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if exc.errno is not None or found is None:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def _formatted(scored: pl.DataFrame) -> pl.DataFrame:
    return scored.with_columns(
        pl.col(F.WINDOW).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("window_end").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def time_slices(windows: pl.Series, most: int) -> list[datetime]:
    """Window starts at which a new slice begins, so that each slice holds at most
    ``most`` of ``windows`` (one row's window start each, in any order), unless a single
    window start has more rows (then it is a slice of its own)."""
    counts = windows.rename(F.WINDOW).value_counts(name="n").sort(F.WINDOW)
    firsts = (
        counts.with_columns(((pl.col("n").cum_sum() - pl.col("n")) // most).alias("slice"))
        .group_by("slice", maintain_order=True)
        .agg(pl.col(F.WINDOW).first())
    )
    return firsts[F.WINDOW].to_list()[1:]


class WindowOrder:
    """Scored batches of disjoint accounts, given back sorted by window start, then
    account, one time slice at a time (:func:`time_slices`).

    Each batch must be sorted by window start, then account (the ``score`` output's
    order). A single batch is kept as it is and given back whole; from the second one
    on, batches are cut into their slices and spilled to ``directory``.
    """

    def __init__(self, bounds: list[datetime], directory: Path) -> None:
        self.bounds = pl.Series(F.WINDOW, bounds, dtype=pl.Datetime("us", "UTC"))
        self.directory = directory
        self.held: pl.DataFrame | None = None
        self.spilled = 0  # batches written to disk

    def add(self, batch: pl.DataFrame) -> None:
        """Take one scored batch (sorted by window start, then account)."""
        if self.held is None and not self.spilled:
            self.held = batch
            return
        if self.held is not None:
            self._spill(self.held)
            self.held = None
        self._spill(batch)

    def _spill(self, batch: pl.DataFrame) -> None:
        cuts = batch[F.WINDOW].search_sorted(self.bounds, side="left").to_list()
        for piece, (start, end) in enumerate(pairwise([0, *cuts, batch.height])):
            if end > start:
                name = f"{piece:06d}-{self.spilled:06d}.arrow"
                batch.slice(start, end - start).write_ipc(self.directory / name)
        self.spilled += 1

    def slices(self) -> Iterator[pl.DataFrame]:
        """Every row added, in slices sorted by window start, then account; the spilled
        files are removed as their slice is given out."""
        if self.held is not None:
            yield self.held
            return
        for piece in range(self.bounds.len() + 1):
            files = sorted(self.directory.glob(f"{piece:06d}-*.arrow"))
            if not files:
                continue
            rows = pl.concat([pl.read_ipc(f) for f in files])
            for f in files:
                f.unlink()
            yield rows.sort(F.WINDOW, F.ACCOUNT)
