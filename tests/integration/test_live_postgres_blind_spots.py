"""pgAudit settings that hide the volume read, on a real PostgreSQL 15 + pgAudit: a
server whose ``pgaudit.log`` has no ``read`` logs no SELECT and no ``COPY ... TO`` (the
most common production setting is ``'write, ddl'``), and one with ``pgaudit.log_rows =
off`` logs reads without their rows. Neither is an error in the log, so nothing else
would tell the DBA that trovewatch cannot see a bulk read there: ``score`` and
``train`` say it in their paragraph, ``serve`` in its log, with the setting to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import asyncpg
import polars as pl
import psycopg
import pytest
from pg_cluster import PgCluster

from detector import model, settings
from detector import schema as S
from detector.live import service as service_module
from detector.live.service import Service
from detector.pipeline import read_events
from detector.rejects import Quarantine
from tests.conftest import OUTPUTS
from tests.integration.conftest import pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "reads and rows": {"pgaudit.log": "'read,write,ddl'"},
    "no read": {"pgaudit.log": "'write,ddl'"},
    "no rows": {"pgaudit.log": "'read,write,ddl'", "pgaudit.log_rows": "off"},
}
SAID = {
    "reads and rows": [],
    "no read": ["statements: if the database was read meanwhile, pgaudit.log lacks read"],
    "no rows": ["reads gives its rows (set pgaudit.log_rows = on): a bulk read is judged by "
                "its statements, objects and exports only"],
}  # fmt: skip


def workload(pg: PgCluster, reads: int) -> None:
    """An application's day in small: a table made and filled, ``reads`` reads of it and
    a few writes, over one connection; then 300 rows read through a portal and left
    unfinished, three ways (:func:`portal_reads_never_ended`)."""
    with psycopg.connect(pg.dsn(), autocommit=True) as db:
        db.execute("CREATE TABLE customers(id int primary key, email text)")
        db.execute("INSERT INTO customers SELECT g, 'u'||g FROM generate_series(1, 500) g")
        for n in range(reads):
            db.execute("SELECT * FROM customers WHERE id <= %s", (n % 50 + 1,)).fetchall()
            if n % 10 == 0:
                db.execute("UPDATE customers SET email = email WHERE id = %s", (n % 500 + 1,))
    assert set(asyncio.run(portal_reads_never_ended(pg)).values()) == {300}
    with psycopg.connect(pg.dsn(), autocommit=True) as db:
        db.execute("DO $$BEGIN RAISE LOG 'end-of-blind-workload'; END$$")
    wait_for_logs(pg.log_dir, "end-of-blind-workload")


# A read through a portal for each way a client can leave it unfinished.
PORTAL_READS = {
    "rolled back": "SELECT * FROM customers WHERE id > 100",
    "ended by an error": "SELECT * FROM customers WHERE id > 150",
    "dropped with its connection": "SELECT * FROM customers WHERE id > 200",
}


async def portal_reads_never_ended(pg: PgCluster) -> dict[str, int]:
    """Rows read 50 at a time through a portal (the extended protocol's Execute with a row
    limit: JDBC with a fetch size, asyncpg's and node-postgres' cursors), 300 of each of
    :data:`PORTAL_READS`, then left unfinished that way: the rows reached the client,
    the read never ended."""
    fetched = {}
    for ending, query in PORTAL_READS.items():
        conn = await asyncpg.connect(
            host="127.0.0.1", port=pg.port, user="postgres", database="postgres"
        )
        transaction = conn.transaction()
        await transaction.start()
        portal = await conn.cursor(query)
        fetched[ending] = sum([len(await portal.fetch(50)) for _ in range(6)])
        if ending == "dropped with its connection":
            conn.terminate()
            continue
        if ending == "ended by an error":
            with contextlib.suppress(asyncpg.DivisionByZeroError):
                await conn.execute("SELECT 1/0")
        await transaction.rollback()
        await conn.close()
    return fetched


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def server(request: pytest.FixtureRequest, server_dir: Callable[[str], Path]) -> tuple[str, Path]:
    name = str(request.param)
    with pg_cluster(server_dir("pg-blind"), SETTINGS[name]) as pg:
        workload(pg, reads=1100)
        return name, Path(pg.log_dir)


def test_score_says_when_the_settings_hide_every_read_or_its_rows(
    server: tuple[str, Path], output: str
) -> None:
    name, log_dir = server
    _, summary = read_events([log_dir / OUTPUTS[output]], quarantine=Quarantine(None))
    said = summary.blind_spots()
    assert len(said) == len(SAID[name])
    assert all(phrase in text for text, phrase in zip(said, SAID[name], strict=True))
    assert all(text in summary.paragraph() for text in said)


@pytest.mark.parametrize("ending", sorted(PORTAL_READS))
def test_a_portal_read_never_ended_is_logged_only_without_log_rows(
    server: tuple[str, Path], output: str, ending: str
) -> None:
    """With ``log_rows = on`` pgAudit logs a read when it ends, with its rows: 300 rows
    fetched through a portal and then rolled back, ended by an error or dropped with the
    connection never end, and leave no line at all. With ``log_rows = off`` it logs the
    read when it starts: a read of the table, rows unknown. (README, PostgreSQL
    settings.)"""
    name, log_dir = server
    events, _ = read_events([log_dir / OUTPUTS[output]], quarantine=Quarantine(None))
    portal = events.filter(pl.col(S.QUERY) == PORTAL_READS[ending])
    if name == "no rows":
        assert portal.select(S.CLASS, S.OBJECTS, S.ROWS).rows() == [
            ("READ", ["public.customers"], None)
        ]
    else:
        assert portal.is_empty()


def test_serve_says_it_once_in_its_log(
    server: tuple[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In its log, once. (Logs without rows, under a model trained with them, are
    refused on /readyz, naming the rows: that says it.)"""
    name, log_dir = server
    monkeypatch.setattr(service_module, "BLIND_AFTER", 100)  # under the 112 logged with no read
    log = log_dir / "postgresql.json"
    models = ROOT / "models" / "default"
    conf = settings.Settings(state_dir=tmp_path / "state", follow=[str(log)], lateness="3650d")
    with caplog.at_level(logging.WARNING, logger=service_module.log.name):
        service = Service(model.load(models), conf, conf.follow, models)
        try:
            for _ in range(3):
                service.step()
            problems = service.problems()
        finally:
            service.stop()
    blind = ("No read among the", "reads gives its rows")
    said = [m for r in caplog.records if any(b in (m := r.getMessage()) for b in blind)]
    if name == "no rows":
        assert said == [] and len(problems) == 1 and "rows differ" in problems[0], problems
        return
    assert problems == []
    assert len(said) == len(SAID[name]), said
    assert all(phrase in text for text, phrase in zip(said, SAID[name], strict=True))
