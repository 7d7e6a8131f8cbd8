"""PostgreSQL servers that log in another language (``lc_messages``), on a real
PostgreSQL 15 + pgAudit.

initdb takes ``lc_messages`` from the machine's locale. stderr then prints severities and
followers translated (``错误:``, ``ANWEISUNG:``, French's ``ASTUCE :``), csvlog its
severities, and every output the connection lines; with PostgreSQL's default
``log_line_prefix = '%m [%p] '`` only those lines name a session's user. Each output of
each language must give the events an English server's would: the clerk's read with
its rows, client and application, its failed statements, a refused login by a role that
does not exist, and a ``pg_basebackup`` of the cluster (``log_replication_commands``: no
AUDIT line), with no line rejected.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg
import pytest

from detector import schema as S
from detector.ingest import read_events
from detector.rejects import Quarantine
from tests.conftest import OUTPUTS, unavailable
from tests.integration.conftest import clerk_and_cases, free_port, require_postgres, wait_for_logs

pytestmark = pytest.mark.postgres

# Locales scripts/test.sh generates; English for the reference.
LANGUAGES = ("C", "de_DE.UTF-8", "fr_FR.UTF-8", "zh_CN.UTF-8")


def require_locale(name: str) -> None:
    if name == "C":
        return
    have = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    if name.replace("UTF-8", "utf8") in have:
        return
    unavailable(f"locale {name} not generated (scripts/test.sh: localedef, Debian package locales)")


@dataclass
class Server:
    language: str
    log_dir: Path


@pytest.fixture(scope="module", params=LANGUAGES)
def server(request: pytest.FixtureRequest, server_dir: Callable[[str], Path]) -> Iterator[Server]:
    require_postgres()
    require_locale(request.param)
    from pg_cluster import PgCluster

    settings = {
        "lc_messages": f"'{request.param}'",
        "log_line_prefix": "'%m [%p] '",  # PostgreSQL's default: no user, no client
        "pgaudit.log": "'read,write'",
        "log_min_duration_statement": "0",
        "log_replication_commands": "on",
    }
    base = server_dir("pg-lang")
    pg = PgCluster(base, free_port(), settings)
    pg.start()
    try:
        clerk_and_cases(pg, "rep_user WITH REPLICATION LOGIN")
        with psycopg.connect(pg.dsn("clerk"), autocommit=True, application_name="psql") as c:
            c.execute("SELECT * FROM cases WHERE id <= 12").fetchall()
            for failing in ("SELECT * FROM nosuch", "SELECT idd FROM cases"):  # the 2nd: a HINT
                with pytest.raises(psycopg.Error):
                    c.execute(failing)
        with pytest.raises(psycopg.OperationalError):  # FATAL: role "intruder" does not exist
            psycopg.connect(pg.dsn("intruder"))
        backup = [pg._bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(pg.port)]
        subprocess.run(
            [*backup, "-U", "rep_user", "-D", base / "copy", "-c", "fast"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("SELECT 'lang-done'")
        wait_for_logs(pg.log_dir, "lang-done")
        yield Server(request.param, pg.log_dir)
    finally:
        pg.stop()


@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_each_language_gives_the_clerks_events_an_english_server_gives(
    server: Server, output: str
) -> None:
    quarantine = Quarantine(None)
    events, _ = read_events([server.log_dir / OUTPUTS[output]], quarantine=quarantine)
    clerk = events.filter(pl.col(S.ACCOUNT) == "clerk").sort(S.TIME)
    assert quarantine.total == 0, dict(quarantine.counts)
    reads = clerk.filter(pl.col(S.CLASS) == "READ")
    assert reads[S.ROWS].to_list() == [12]
    assert reads[S.CLIENT_IP].to_list() == ["127.0.0.1"]
    assert reads[S.APPLICATION].to_list() == ["psql"]
    failed = clerk.filter(pl.col(S.CLASS) == "ERROR")
    assert failed.height == 2
    refused = events.filter(pl.col(S.ACCOUNT) == "intruder")
    assert refused.select(S.CLASS, S.COMMAND, S.SUCCESS).rows() == [("CONNECT", "LOGIN", False)]
    copied = events.filter(pl.col(S.OBJECTS).list.contains("(cluster)"))
    assert copied.select(S.ACCOUNT, S.APPLICATION, S.EXPORT).rows() == [
        ("rep_user", "pg_basebackup", True)
    ]
