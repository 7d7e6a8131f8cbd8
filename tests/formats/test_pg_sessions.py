"""Sessions carried from chunk to chunk (``detector/formats/pg_sessions.py``), on real
PostgreSQL 15 + pgAudit stderr output with the common prefixes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector import schema as S
from detector.formats.pg_stderr import PgStderr
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
