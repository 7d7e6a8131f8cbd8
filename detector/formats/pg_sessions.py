"""PostgreSQL sessions carried from chunk to chunk of one stderr log.

A stderr line names its session only through what ``log_line_prefix`` prints. Without
``%c`` the session is derived from the process id and the number of ``connection
received`` lines of that process so far (``<pid>.<n>``), and without ``%u``/``%d``/``%a``
/``%h`` its user, database, application and client are those its connection lines
gave. A chunk (a 64 MiB piece of a file read in batch, or what one poll of ``serve``
read) sees only its own lines: it numbers its sessions from 0 and knows only the users
of the sessions it saw open. :class:`OpenSessions` keeps what the earlier chunks said,
per process, and puts each chunk's events in the sessions a whole-file parse gives:

* a derived ``<pid>.<k>`` of the chunk becomes ``<pid>.<k + sessions the process opened
  in earlier chunks>``;
* an event missing its user (and the rest) takes its session's, and an AUDIT event whose
  session no connection line ever named (a parallel worker's partial copy) is dropped,
  as it is within a chunk.

Its state is one row per process that logged a connection: bounded by the processes,
not by the log. All of it is whole-frame Polars work on the chunk's events and
connection lines.
"""

from __future__ import annotations

import polars as pl

from detector import schema as S
from detector.formats.base import Parsed
from detector.formats.pgaudit import SESSION_ATTRIBUTES

# Event columns of the session attributes, in the order of SESSION_ATTRIBUTES.
_EVENT_COLUMNS = (S.ACCOUNT, S.DATABASE, S.APPLICATION, S.CLIENT_IP)
_STATE_SCHEMA = pl.Schema(
    {
        "pid": pl.Int64,
        "opened": pl.Int64,
        "session": pl.String,
        **dict.fromkeys(SESSION_ATTRIBUTES, pl.String),
    }
)


class OpenSessions:
    """What the chunks read so far said about each process's latest session.

    ``derived``: the session ids are ``<pid>.<k>`` numbered within each chunk (the
    prefix has no ``%c``), to be renumbered.
    """

    def __init__(self, derived: bool) -> None:
        self.derived = derived
        self.state = pl.DataFrame(schema=_STATE_SCHEMA)

    def carry(self, parsed: Parsed) -> Parsed:
        """``parsed`` (of the chunk after those already carried) with its events in
        their file-wide sessions and given their sessions' attributes; the state moves
        past the chunk."""
        opened = parsed.sessions
        parsed.sessions = None
        events = parsed.events
        if self.derived:
            events = self._renumbered(events)
        events = self._filled(events)
        # An AUDIT event whose session no connection line named: a parallel worker's.
        parsed.events = events.filter(pl.col(S.ACCOUNT).is_not_null() | ~pl.col(S.SUCCESS))
        if opened is not None and opened.height:
            self._update(opened)
        return parsed

    def _renumbered(self, events: pl.DataFrame) -> pl.DataFrame:
        # Only processes that opened sessions before renumber theirs (none, in a log
        # with no ``connection received`` lines: log_connections off).
        before = self.state.filter(pl.col("opened") > 0).select(
            "pid", pl.col("opened").alias("_before")
        )
        if events.is_empty() or before.is_empty():
            return events
        parts = pl.col(S.SESSION).str.split_exact(".", 1)
        pid = parts.struct.field("field_0").cast(pl.Int64, strict=False)
        k = parts.struct.field("field_1").cast(pl.Int64, strict=False)
        return (
            events.with_columns(pid.alias("_pid"), k.alias("_k"))
            .join(before, left_on="_pid", right_on="pid", how="left", maintain_order="left")
            .with_columns(
                pl.when(pl.col("_before").is_not_null() & pl.col("_k").is_not_null())
                .then(pl.format("{}.{}", pl.col("_pid"), pl.col("_k") + pl.col("_before")))
                .otherwise(pl.col(S.SESSION))
                .alias(S.SESSION)
            )
            .drop("_pid", "_k", "_before")
        )

    def _filled(self, events: pl.DataFrame) -> pl.DataFrame:
        if events.is_empty() or self.state.is_empty():
            return events
        missing = pl.any_horizontal(pl.col(c).is_null() for c in _EVENT_COLUMNS)
        if not events.select(missing.any()).item():
            return events
        known = self.state.select(
            pl.col("session").alias(S.SESSION),
            *(
                pl.col(a).alias(f"_{c}")
                for a, c in zip(SESSION_ATTRIBUTES, _EVENT_COLUMNS, strict=True)
            ),
        )
        return (
            events.join(known, on=S.SESSION, how="left", maintain_order="left")
            .with_columns(pl.coalesce(c, f"_{c}").alias(c) for c in _EVENT_COLUMNS)
            .drop(f"_{c}" for c in _EVENT_COLUMNS)
        )

    def _update(self, opened: pl.DataFrame) -> None:
        """Move the state past a chunk whose connection lines opened ``opened``."""
        new = opened.select(
            pl.col("pid").cast(pl.Int64),
            pl.col("opened").cast(pl.Int64),
            pl.col("session_id").alias("session"),
            *(pl.col(a).cast(pl.String) for a in SESSION_ATTRIBUTES),
        ).filter(pl.col("pid").is_not_null())
        old = self.state.rename({c: f"_old_{c}" for c in self.state.columns if c != "pid"})
        joined = new.join(old, on="pid", how="left")
        if self.derived:  # the chunk's last session, numbered in the file
            k = pl.col("session").str.split_exact(".", 1).struct.field("field_1")
            session = pl.format(
                "{}.{}", pl.col("pid"), k.cast(pl.Int64) + pl.col("_old_opened").fill_null(0)
            )
        else:
            session = pl.col("session")
        joined = joined.with_columns(session.alias("session"))
        same = pl.col("session") == pl.col("_old_session")
        merged = joined.select(
            "pid",
            (pl.col("opened") + pl.col("_old_opened").fill_null(0)).alias("opened"),
            "session",
            *(
                pl.when(same).then(pl.coalesce(a, f"_old_{a}")).otherwise(pl.col(a)).alias(a)
                for a in SESSION_ATTRIBUTES
            ),
        )
        kept = self.state.filter(~pl.col("pid").is_in(merged["pid"].implode()))
        self.state = pl.concat([kept, merged.select(self.state.columns)])
