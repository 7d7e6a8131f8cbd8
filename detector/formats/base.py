"""What a format is: something that turns a chunk of lines into events and rejects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from detector.reader import Chunk
from detector.rejects import empty_rejects


@dataclass
class Parsed:
    """What one chunk of input gave: events (the schema), rejects, and context lines.

    Context lines are well-formed lines that are not audit events themselves
    (connections, ``duration:`` lines, server messages); they are counted, not rejected.
    """

    events: pl.DataFrame
    rejects: pl.DataFrame = field(default_factory=empty_rejects)
    context: int = 0


class Format(Protocol):
    """A log format. ``name`` is what ``--format`` accepts."""

    name: str

    def sniff(self, head: list[str]) -> bool:
        """True if the first lines of a file look like this format."""
        ...

    def parse(self, chunk: Chunk) -> Parsed:
        """Events (``detector.schema.EVENT_SCHEMA``) and rejects for one chunk."""
        ...


# Optional, found with getattr by the pipeline:
#   record_start: re.Pattern[bytes]   chunks are cut only before a line matching it
#   chunk_bytes: int                  chunk size when parsing depends on where chunks end
#   fast_batches(path) -> Iterator[Parsed]   a whole-file fast path for clean input
#   finish(events) -> events          a whole-file step after all chunks are parsed
