"""What a format is: something that turns a chunk of lines into events and rejects."""

from __future__ import annotations

from collections.abc import Callable
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
    ``cut`` counts the events whose statement text was too long to keep whole.
    """

    events: pl.DataFrame
    rejects: pl.DataFrame = field(default_factory=empty_rejects)
    context: int = 0
    cut: int = 0  # events kept with their statement text cut (a record over 1 MB)
    # Lines timed in an abbreviation several zones print (CST), by abbreviation, read in
    # a zone guessed (``detector.formats.zones.guessed``): no server zone was told.
    guessed: dict[str, int] = field(default_factory=dict)
    # The sessions the chunk's connection lines open, for a parser that carries sessions
    # from chunk to chunk (``detector.formats.pg_sessions``); None for the others.
    sessions: pl.DataFrame | None = None


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
#   fast_batches(path) -> Iterator[Parsed]   a whole-file fast path for clean input
#   parse_alone(chunk) -> Parsed      ``parse`` without state carried from earlier chunks,
#   carry(parsed) -> Parsed           ... and the carrying, in file order: parse_alone may
#                                     run in threads, carry runs on its results in order
#   share_sessions(servers, server)   the state carry keeps goes on from one file of a
#                                     server to its next (``pg_sessions.Servers``)
#   finish(events) -> events          a whole-file step after all chunks are parsed
#                                     (PostgreSQL: after all of a server's files)


def read_halving(
    records: pl.DataFrame, read: Callable[[pl.DataFrame], pl.DataFrame | None]
) -> tuple[list[tuple[pl.DataFrame, pl.DataFrame]], pl.DataFrame]:
    """``records`` (one record per row, in order) read by ``read`` in batches, for
    formats whose reader (Polars' CSV reader, say) takes many records at once but can
    lose count on a broken one (a quote not doubled runs into the next records).

    A batch that ``read`` cannot read, or reads as another number of rows, is halved
    until each broken record is alone: broken records cost a few reads each (about log2
    of the records), never a read per record. Returns the (batch, rows read) pairs, in
    order, and the records read as no single row.
    """
    read_ok: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    broken: list[pl.DataFrame] = [records.clear()]
    batches = [records] if records.height else []
    while batches:
        batch = batches.pop()
        table = read(batch)
        if table is not None and table.height == batch.height:
            read_ok.append((batch, table))
        elif batch.height == 1:
            broken.append(batch)
        else:  # the left half popped first: records stay in order
            half = batch.height // 2
            batches += [batch.slice(half), batch.slice(0, half)]
    return read_ok, pl.concat(broken)
