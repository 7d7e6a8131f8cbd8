"""PostgreSQL sessions carried from chunk to chunk, and file to file, of a server's stderr logs.

A stderr line names its session only through what ``log_line_prefix`` prints. Without
``%c`` the session is derived from the process id and the number of ``connection
received`` lines of that process so far (``<pid>.<n>``), and without ``%u``/``%d``/``%a``
/``%h`` its user, database, application and client are those its connection lines
gave. A chunk (a 16 MiB piece of a file read in batch, or what one poll of ``serve``
read) sees only its own lines: it numbers its sessions from 0 and knows only the users
of the sessions it saw open. :class:`OpenSessions` keeps what the earlier chunks said,
per process, and puts each chunk's events in the sessions a whole-file parse gives:

* a derived ``<pid>.<k>`` of the chunk becomes ``<pid>.<k + sessions the process opened
  in earlier chunks>``;
* an event missing its user (and the rest) takes its session's, and an AUDIT event whose
  session no connection line ever named (a parallel worker's partial copy) is dropped,
  as it is within a chunk.

A server's sessions go on from one of its files to the next (the logging collector
starts a new file at each rotation, and a pool's sessions live for days): the parsers of
one server's files, read oldest first (:func:`detector.ingest.in_time_order`), share
its :class:`OpenSessions` through :class:`Servers`, which
``serve`` also saves in its checkpoints, so that a restart does not lose them either.

The state is one row per process that logged a connection, at most
:data:`MAX_PROCESSES`: past that, those whose session ended (a ``disconnection`` line)
go first, then those whose session has been quiet longest. All of it is whole-frame
Polars work on the chunk's events and connection lines.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Final

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
        "closed": pl.Boolean,
    }
)
# Processes whose sessions are remembered (about 80 bytes each): far more than a
# server's connections at once, so that only a session quiet while this many others
# connected is forgotten (its next statements then carry no user, and are dropped).
MAX_PROCESSES: Final = 100_000


class OpenSessions:
    """What the chunks read so far said about each process's latest session.

    ``derived``: the session ids are ``<pid>.<k>`` numbered within each chunk (the
    prefix has no ``%c``), to be renumbered.
    """

    def __init__(self, derived: bool, saving: bool = False) -> None:
        self.derived = derived
        self.state = pl.DataFrame(schema=_STATE_SCHEMA)
        self.saving = saving  # keep ``updates`` for Servers.snapshot
        self.updates: list[pl.DataFrame] = []  # rows changed since the last snapshot

    def carry(self, parsed: Parsed) -> Parsed:
        """``parsed`` (of the chunk after those already carried) with its events in
        their file-wide sessions and given their sessions' attributes; the state moves
        past the chunk."""
        opened = parsed.sessions
        parsed.sessions = None
        events = parsed.events
        if self.derived:
            events = self._renumbered(events)
        events = self._named(self._filled(events))
        # An AUDIT event whose session no connection line named: a parallel worker's.
        parsed.events = events.filter(pl.col(S.ACCOUNT).is_not_null() | ~pl.col(S.SUCCESS))
        self._touch(parsed.events)
        if opened is not None and opened.height:
            self._update(opened)
        return parsed

    def _touch(self, events: pl.DataFrame) -> None:
        """The processes of the sessions with events here move to the end of the state
        (the last to be forgotten)."""
        if events.is_empty() or self.state.height < MAX_PROCESSES // 2:
            return  # the order matters only once the state nears its cap
        active = pl.col("session").is_in(events[S.SESSION].unique().implode())
        self.state = pl.concat([self.state.filter(~active), self.state.filter(active)])

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

    def _named(self, events: pl.DataFrame) -> pl.DataFrame:
        """``events`` whose account and database read together (``jane.doe@corp.com@shop``,
        from a prefix's ``%u@%d``) as those of their session's connection line, split
        where it splits them. Only a name with an ``@`` can be split wrongly: the state
        is looked at only once a connection line named such a user or database."""
        if events.is_empty() or self.state.is_empty():
            return events
        named = pl.col("user").str.contains("@", literal=True)
        if not self.state.select(
            (named | pl.col("dbname").str.contains("@", literal=True)).any()
        ).item():
            return events
        known = self.state.select(
            pl.col("session").alias(S.SESSION),
            pl.col("user").alias("_u"),
            pl.col("dbname").alias("_d"),
        )
        account, database = pl.col(S.ACCOUNT), pl.col(S.DATABASE)
        same = (account + "@" + database) == (pl.col("_u") + "@" + pl.col("_d"))
        return (
            events.join(known, on=S.SESSION, how="left", maintain_order="left")
            .with_columns(
                pl.when(same).then("_u").otherwise(account).alias(S.ACCOUNT),
                pl.when(same).then("_d").otherwise(database).alias(S.DATABASE),
            )
            .drop("_u", "_d")
        )

    def _update(self, opened: pl.DataFrame) -> None:
        """Move the state past a chunk whose connection lines opened (and maybe closed)
        ``opened``."""
        new = opened.select(
            pl.col("pid").cast(pl.Int64),
            pl.col("opened").cast(pl.Int64),
            pl.col("session_id").alias("session"),
            *(pl.col(a).cast(pl.String) for a in SESSION_ATTRIBUTES),
            pl.col("closed").cast(pl.Boolean),
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
            "closed",
        )
        merged = merged.select(self.state.columns)
        kept = self.state.filter(~pl.col("pid").is_in(merged["pid"].implode()))
        self.state = _within_cap(pl.concat([kept, merged]))  # ended first, then quietest
        if self.saving:
            self.updates.append(merged)


class Servers:
    """The open sessions of each server (``server``: what tells its files from other
    servers', e.g. their directory) whose stderr files are read one after the other:
    the sessions open at the end of one file go on in the next.

    Saved as named blobs (:meth:`snapshot`, for ``serve``'s checkpoints): a base holding
    every server's state, then one small blob per save with only the processes whose
    connection lines came since, so a busy server's 100,000 processes are not written
    again at every checkpoint; the base is rewritten once :data:`DELTAS` have piled up.
    """

    def __init__(self, saving: bool = False) -> None:
        self.saving = saving  # snapshots wanted (else nothing is kept for them)
        self._open: dict[str, OpenSessions] = {}
        self._stored: set[str] = set()  # names of the blobs in the database
        self._pending: dict[str, bytes | None] = {}  # the last snapshot, until saved
        self._seq = 0

    def of(self, server: str, derived: bool) -> OpenSessions:
        """``server``'s sessions (new ones if its prefix changed between files)."""
        found = self._open.get(server)
        if found is None or found.derived != derived:
            found = self._open[server] = OpenSessions(derived, self.saving)
        return found

    def attach(self, fmt: object, server: str) -> None:
        """Give ``fmt`` ``server``'s sessions if it carries sessions (stderr); the other
        formats name the session's user on every line."""
        share = getattr(fmt, "share_sessions", None)
        if share is not None:
            share(self, server)

    def snapshot(self) -> dict[str, bytes | None]:
        """The blobs to write for what changed since the last :meth:`saved` snapshot
        (``None``: a blob to delete), with those of snapshots not saved (a failed
        commit); empty when nothing changed."""
        changed = [(n, s) for n, s in self._open.items() if s.updates]
        if not changed:
            return dict(self._pending)
        deltas = {n for n in [*self._stored, *self._pending] if n != BASE}
        if len(deltas) >= DELTAS or BASE not in [*self._stored, *self._pending]:
            rows = [_labelled(s.state, n, s.derived) for n, s in self._open.items()]
            new = {BASE: _parquet(rows), **dict.fromkeys(deltas)}
        else:
            self._seq += 1
            rows = [_labelled(u, n, s.derived) for n, s in changed for u in s.updates]
            new = {f"{BASE}.{self._seq:012d}": _parquet(rows)}
        for _, sessions in changed:
            sessions.updates = []
        self._pending = {**self._pending, **new}
        return dict(self._pending)

    def saved(self) -> None:
        """The last :meth:`snapshot` is in the database."""
        for name, data in self._pending.items():
            (self._stored.add if data is not None else self._stored.discard)(name)
        self._pending = {}

    def load(self, state: Mapping[str, bytes | None]) -> None:
        """The sessions :meth:`snapshot` saved in ``state`` (the blobs of other names are
        not looked at); none saved: no session known."""
        self._open, self._pending = {}, {}
        names = sorted(n for n, data in state.items() if is_saved(n) and data is not None)
        self._stored = set(names)
        self._seq = max((int(n.rpartition(".")[2]) for n in names if n != BASE), default=0)
        if not names:
            return
        # The base, then each delta in order: a process's latest row wins.
        frame = pl.concat([pl.read_parquet(io.BytesIO(state[n] or b"")) for n in names])
        frame = frame.unique(["server", "pid"], keep="last", maintain_order=True)
        for (server, derived), part in frame.partition_by(
            "server", "derived", as_dict=True, maintain_order=True
        ).items():
            sessions = self.of(str(server), bool(derived))
            sessions.state = _within_cap(part.select(_STATE_SCHEMA.names()).cast(_STATE_SCHEMA))


BASE: Final = "sessions"  # the blobs' names: "sessions", then "sessions.<n>"
DELTAS: Final = 64  # delta blobs before the base is rewritten


def is_saved(name: str) -> bool:
    """True for the name of a blob :class:`Servers` saves."""
    return name == BASE or name.startswith(BASE + ".")


def _within_cap(state: pl.DataFrame) -> pl.DataFrame:
    """``state`` (oldest first) within :data:`MAX_PROCESSES`: ended sessions go first."""
    if state.height <= MAX_PROCESSES:
        return state
    return state.sort("closed", descending=True, maintain_order=True).tail(MAX_PROCESSES)


def _labelled(rows: pl.DataFrame, server: str, derived: bool) -> pl.DataFrame:
    return rows.with_columns(pl.lit(server).alias("server"), pl.lit(derived).alias("derived"))


def _parquet(frames: list[pl.DataFrame]) -> bytes:
    frame = (
        pl.concat(frames) if frames else _labelled(pl.DataFrame(schema=_STATE_SCHEMA), "", False)
    )
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()
