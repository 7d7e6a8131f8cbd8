"""Sessions carried from chunk to chunk (``detector/formats/pg_sessions.py``), on real
PostgreSQL 15 + pgAudit stderr output with the common prefixes."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest

from detector import schema as S
from detector.formats import pg_sessions
from detector.formats.pg_sessions import Servers
from detector.formats.pg_stderr import PgStderr
from detector.reader import Chunk
from tests.conftest import PG_SCENARIOS
from tests.formats.common import parse_chunks

LOGS = sorted(
    p for p in (PG_SCENARIOS / "prefixes").glob("stderr_*.log") if p.name != "stderr_own.log"
)
COLUMNS = [
    S.TIME,
    S.ACCOUNT,
    S.SESSION,
    S.STATEMENT_ID,
    S.ROWS,
    S.OBJECTS,
    S.APPLICATION,
    S.CLIENT_IP,
]


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk_bytes", [300, 1000])
def test_a_session_cut_by_chunks_is_one_session_with_its_user(path: Path, chunk_bytes: int) -> None:
    """Cut into chunks of a few lines, with the connection lines in one chunk and the
    statements in others, the log gives the events it gives whole: same sessions,
    users, applications and clients. (A failed statement's ``STATEMENT`` line cut from
    its ``ERROR`` line loses the objects named in its text: not compared.)"""
    whole = parse_chunks(PgStderr(), path)
    cut = parse_chunks(PgStderr(), path, chunk_bytes)
    assert cut.chunks > 2 and whole.events.height
    key = [S.TIME, S.SESSION, S.STATEMENT_ID]
    objects = pl.when(S.SUCCESS).then(pl.col(S.OBJECTS))
    got, want = (
        e.with_columns(objects).select(COLUMNS).sort(key) for e in (cut.events, whole.events)
    )
    assert got.equals(want)


def test_a_session_id_continues_the_numbering_of_earlier_chunks() -> None:
    """Without %c, the n-th session of a process is ``<pid>.<n>`` in the whole file,
    not ``<pid>.0`` again in a chunk where it goes on."""
    path = PG_SCENARIOS / "prefixes" / "stderr_default.log"
    sessions = parse_chunks(PgStderr(), path, 300).events[S.SESSION]
    assert sessions.str.contains(r"^\d+\.[1-9]\d*$").all(), sessions.to_list()
    assert (
        pl.Series(sessions).n_unique()
        == parse_chunks(PgStderr(), path).events[S.SESSION].n_unique()
    )


# Lines as PostgreSQL 15 + pgAudit write them with the default prefix (stderr_default.log).
CONNECT = (
    "2026-11-29 08:51:08.369 UTC [{pid}] LOG:  connection received: host=127.0.0.1 port=42136\n"
    "2026-11-29 08:51:08.371 UTC [{pid}] LOG:  connection authorized: user={user} "
    "database=shop application_name=app\n"
)
READ = (
    "2026-11-29 08:51:08.382 UTC [{pid}] LOG:  AUDIT: SESSION,{n},1,READ,SELECT,TABLE,"
    "public.customers,SELECT * FROM customers,<none>,12\n"
)
DISCONNECT = (
    "2026-11-29 08:51:08.385 UTC [{pid}] LOG:  disconnection: session time: 0:00:00.016 "
    "user={user} database=shop host=127.0.0.1 port=42136\n"
)


def test_past_the_cap_ended_then_quietest_sessions_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sessions kept from chunk to chunk (and file to file) are bounded: past
    ``MAX_PROCESSES``, a session that ended goes first, then the one quiet longest; a
    session still reading is kept, however long ago it connected."""
    monkeypatch.setattr(pg_sessions, "MAX_PROCESSES", 2)
    alice, bob, carol, dave = (
        {"pid": pid, "user": user}
        for pid, user in ((100, "alice"), (101, "bob"), (102, "carol"), (103, "dave"))
    )
    chunks = [
        CONNECT.format(**alice) + READ.format(n=1, **alice)
        + CONNECT.format(**bob) + DISCONNECT.format(**bob),
        CONNECT.format(**carol),
        CONNECT.format(**dave) + READ.format(n=2, **alice),
        READ.format(n=3, **alice) + READ.format(n=1, **carol),
    ]  # fmt: skip
    fmt = PgStderr("%m [%p] ")
    line = 1
    read: list[tuple[str, int]] = []
    for text in chunks:
        events = fmt.parse(Chunk("postgresql.log", text.encode(), line)).events
        read += events.select(S.ACCOUNT, S.STATEMENT_ID).rows()
        line += text.count("\n")
    # bob (ended, yet newer) went before alice; then carol, quiet since she connected,
    # before alice, who read since.
    assert read == [("alice", "1.1"), ("alice", "2.1"), ("alice", "3.1")]


def test_saved_sessions_are_restored_from_a_base_and_small_deltas() -> None:
    """``serve`` saves the sessions at each checkpoint: the first save writes them all,
    later ones only the processes that connected since (a busy server's 100,000 are
    not rewritten every second), a save that failed is written with the next; restored
    from what was written, a parser goes on with every session and its user."""
    servers = Servers(saving=True)
    fmt = PgStderr("%m [%p] ")
    fmt.share_sessions(servers, "pg")
    database: dict[str, bytes] = {}

    def save(written: bool = True) -> dict[str, bytes | None]:
        blobs = servers.snapshot()
        if written:
            for name, data in blobs.items():
                if data is None:
                    database.pop(name, None)
                else:
                    database[name] = data
            servers.saved()
        return blobs

    users = [{"pid": 200 + n, "user": f"u{n}"} for n in range(6)]
    fmt.parse(Chunk("a.log", "".join(CONNECT.format(**u) for u in users[:4]).encode(), 1))
    assert list(save()) == ["sessions"]
    fmt.parse(Chunk("a.log", CONNECT.format(**users[4]).encode(), 9))
    unsaved = save(written=False)  # the commit failed (a full disk)
    fmt.parse(Chunk("a.log", CONNECT.format(**users[5]).encode(), 11))
    blobs = save()
    assert set(unsaved) < set(blobs) and len(blobs) == 2
    assert [pl.read_parquet(io.BytesIO(b))["pid"].to_list() for b in blobs.values() if b] == [
        [204],
        [205],
    ]
    restored = Servers(saving=True)
    restored.load(database)
    again = PgStderr("%m [%p] ")
    again.share_sessions(restored, "pg")
    text = "".join(READ.format(n=1, **u) for u in users)
    events = again.parse(Chunk("b.log", text.encode(), 1)).events
    assert events[S.ACCOUNT].to_list() == [u["user"] for u in users]
