"""``log_line_prefix`` settings met in the field, on a real PostgreSQL 15 + pgAudit: the
stderr output counts each account's statements, rows read and exports under its real
name, database and client, as the server's jsonlog and csvlog do.

* Amazon RDS's prefix ``%t:%r:%u@%d:[%p]:``, which cannot be changed there, with a
  client over IPv6 (``%r`` is then ``::1(46968)``, holding the ``:`` separator).
* Roles named as directories name them (``jane.doe@corp.com``, Azure AD or LDAP
  style) in a ``%u@%d`` prefix; one on a database whose name holds an ``@`` too. The
  session's connection line says where the names split; without connection lines
  (RDS's default) the split is at the last ``@``, which misreads only the latter.
* A client on the unix socket, named by the connection lines (``host=[local]``) when
  the prefix has no ``%r`` (Debian's ``%m [%p] %q%u@%d ``): ``local``, as in jsonlog,
  csvlog and ``%r``.
* pgBadger's recommended prefix ``%t [%p]: user=%u,db=%d,app=%a,client=%h ``, found
  without ``--log-line-prefix``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from pg_cluster import PgCluster

from detector import features as F
from detector import ingest
from detector import schema as S
from detector.formats.pg_stderr import PgStderr
from detector.ingest import Summary, event_batches
from detector.reader import read_chunks
from detector.rejects import Quarantine
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

README_PREFIX = "%m [%p] %q%u@%d %r %a "
# Each server: its log_line_prefix and other settings.
SERVERS: dict[str, tuple[str, dict[str, str]]] = {
    "rds": ("%t:%r:%u@%d:[%p]:", {}),
    "readme": (README_PREFIX, {}),
    "debian": ("%m [%p] %q%u@%d ", {}),  # clients from the connection lines only
    "default": ("%m [%p] ", {}),  # PostgreSQL's own: users from the connection lines only
    "pgbadger": ("%t [%p]: user=%u,db=%d,app=%a,client=%h ", {}),
    # No connection lines to say where the user's name ends and the database's begins.
    "readme, no connection lines": (
        README_PREFIX,
        {"log_connections": "off", "log_disconnections": "off"},
    ),
}
# Each role: its database, how it connects (host), its application, and the rows its
# one SELECT reads; each also copies the table out (an export).
ROLES = {
    "jane.doe@corp.com": ("shop", "127.0.0.1", "Report, Q3 [prod]", 17),
    "jane.doe": ("shop", "127.0.0.1", "psql", 3),  # not to be merged with the one above
    "bob@corp.com": ("sales@eu", "127.0.0.1", "psql", 11),
    "Mixed_Case": ("shop", "::1", "psql", 31),
    "svc reporting": ("shop", "::1", "cron job: nightly", 29),
    "sock": ("shop", "socket", "psql", 5),
}
CLIENT = {"127.0.0.1": "127.0.0.1", "::1": "::1", "socket": "local"}
GUESSED = "guessed"  # a role whose password someone guesses: its logins are refused
TABLE_ROWS = 100


def workload(pg: PgCluster) -> None:
    quiet = "-c pgaudit.log=none"  # the set-up, not audited
    with psycopg.connect(pg.dsn(), autocommit=True, options=quiet) as admin:
        for db in sorted({db for db, *_ in ROLES.values()}):
            admin.execute(f'CREATE DATABASE "{db}"')
        for role in ROLES:
            admin.execute(f'CREATE ROLE "{role}" LOGIN')
    for db in sorted({db for db, *_ in ROLES.values()}):
        with psycopg.connect(pg.dsn(dbname=db), autocommit=True, options=quiet) as conn:
            conn.execute(
                f"CREATE TABLE public.t AS SELECT g AS id FROM generate_series(1, {TABLE_ROWS}) g"
            )
            for role, (role_db, *_) in ROLES.items():
                if role_db == db:
                    conn.execute(f'GRANT SELECT ON public.t TO "{role}"')
    for role, (db, host, app, rows) in ROLES.items():
        where = str(pg.base_dir) if host == "socket" else host
        with psycopg.connect(
            host=where, port=pg.port, user=role, dbname=db, application_name=app
        ) as conn:
            got = conn.execute(f"SELECT * FROM public.t WHERE id <= {rows}").fetchall()
            assert len(got) == rows
            with conn.cursor().copy("COPY public.t TO STDOUT") as copy:
                assert sum(1 for _ in copy.rows()) == TABLE_ROWS
    # Refused logins: two wrong passwords (a guesser's first tries). The server trusts
    # everyone else; this role needs its password.
    hba = pg.data_dir / "pg_hba.conf"
    hba.write_text(f"host all {GUESSED} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    with psycopg.connect(pg.dsn(), autocommit=True, options=quiet) as admin:
        admin.execute(f"CREATE ROLE {GUESSED} LOGIN PASSWORD 'right'")
        admin.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)  # the postmaster reloads on SIGHUP, after the call returns
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                host="127.0.0.1", port=pg.port, user=GUESSED, password="wrong", dbname="shop"
            ).close()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 'end-of-prefixes-workload'")
    wait_for_logs(pg.log_dir, "end-of-prefixes-workload")


@pytest.fixture(scope="module", params=sorted(SERVERS))
def logs(
    request: pytest.FixtureRequest, server_dir: Callable[[str], Path]
) -> Iterator[tuple[str, Path]]:
    """A server's name in :data:`SERVERS` and its log directory, after the workload."""
    name = str(request.param)
    prefix, extra = SERVERS[name]
    settings = {"log_line_prefix": prefix, "listen_addresses": "127.0.0.1,::1", **extra}
    with pg_cluster(server_dir("pg-prefix"), settings) as pg:
        workload(pg)
        yield name, Path(pg.log_dir)


def per_account(events: pl.DataFrame) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """(account, database, client) -> (statements, rows read, exports), of every account
    but the superuser that set the server up."""
    events = events.filter(~pl.col(S.ACCOUNT).is_in(["postgres", GUESSED]))
    activity = (
        F.window_activity(events.lazy(), "1d")
        .collect()
        .group_by(F.ACCOUNT)
        .agg(pl.col("statements", "rows_read", "exports").sum())
    )
    where = events.group_by(S.ACCOUNT).agg(pl.col(S.DATABASE, S.CLIENT_IP).unique())
    return {
        # an account seen on several databases or clients shows them all, sorted
        (
            row[F.ACCOUNT],
            " | ".join(sorted(row[S.DATABASE])),
            " | ".join(sorted(row[S.CLIENT_IP])),
        ): (
            row["statements"],
            row["rows_read"],
            row["exports"],
        )
        for row in activity.join(where, left_on=F.ACCOUNT, right_on=S.ACCOUNT).iter_rows(named=True)
    }


def expected(server: str, output: str) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """Each role ran its SELECT and its COPY: two statements, its rows, one export."""
    out = {(role, db, CLIENT[host]): (2, rows, 1) for role, (db, host, _, rows) in ROLES.items()}
    if output == "stderr" and "no connection lines" in server:
        # bob@corp.com@sales@eu split at the last "@", as nothing else says where (README).
        out[("bob@corp.com@sales", "eu", "127.0.0.1")] = out.pop(
            ("bob@corp.com", "sales@eu", "127.0.0.1")
        )
    return out


def test_each_account_is_counted_under_its_own_name_database_and_client(
    logs: tuple[str, Path], output: str
) -> None:
    """Found without ``--log-line-prefix``, nothing rejected: ``jane.doe@corp.com`` is
    not cut at its first ``@`` (nor merged with the role ``jane.doe``), the IPv6
    client's session is not lost, and the unix-socket client is ``local`` in all three
    outputs."""
    server, log_dir = logs
    events, quarantine = parse(log_dir / OUTPUTS[output])
    assert dict(quarantine.counts) == {}
    assert per_account(events) == expected(server, output)


def test_stderr_names_each_account_when_read_in_small_chunks(
    logs: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in chunks of 600 bytes to 1.5 KB, or a first chunk ending just before bob's
    SELECT, a session's statements come in a chunk after the one with its connection
    lines: its account and database are still those the connection line named
    (``bob@corp.com`` on ``sales@eu``, not ``bob@corp.com@sales`` on ``eu``)."""
    server, log_dir = logs
    path = log_dir / OUTPUTS["stderr"]
    body = path.read_bytes()
    mark = body.rindex(b"\n", 0, body.index(b"WHERE id <= 11,")) + 1  # bob's SELECT
    carried = 0  # chunkings where bob's statements come after his connection line's chunk
    for size in [mark + 10, *range(600, 1600, 100)]:
        texts = [c.text for c in read_chunks(path, PgStderr.record_start, size)]
        carried += any(
            "WHERE id <= 11," in text and "connection authorized: user=bob@corp.com" not in text
            for text in texts
        )
        monkeypatch.setattr(ingest, "STREAM_CHUNK_BYTES", size)
        quarantine = Quarantine(None)
        small = pl.concat(list(event_batches([path], Summary(), quarantine=quarantine)))
        assert dict(quarantine.counts) == {}
        assert per_account(small) == expected(server, "stderr"), size
    assert carried > 0


def test_refused_logins_are_failures_of_the_role_they_named(
    logs: tuple[str, Path], output: str
) -> None:
    """Two wrong passwords are two failures of the role they named, whatever the prefix:
    with PostgreSQL's default ``%m [%p] `` (or one without ``%u``) neither the prefix nor
    a connection line names the user of a login refused before it was authorized; the
    FATAL message does (before: no account, so not counted)."""
    _, log_dir = logs
    events, _ = parse(log_dir / OUTPUTS[output])
    refused = events.filter(pl.col(S.CLASS) == "CONNECT", ~pl.col(S.SUCCESS))
    assert refused[S.ACCOUNT].to_list() == [GUESSED, GUESSED], refused.to_dicts()
