"""A base backup and a logical stream on a real PostgreSQL 15 + pgAudit: pgAudit audits
neither (they are replication commands, not SQL the executor runs), so a stolen
replication role could copy the whole cluster unseen. With ``log_replication_commands =
on`` the server logs them, and trovewatch reads them as exports of their account.

The server runs under libfaketime: five days of ordinary work (an application's and a
report's reads; the replication role's nightly heartbeat check, a 1-row read), then on
the sixth day's ordinary work, at 22:17, the replication role's credentials run
``pg_basebackup``, at 23:41 ``pg_recvlogical`` streams the publication ``pub_all``, and at
23:52 the role reads a slot's changes through SQL (``pg_logical_slot_get_changes``). A
model trained on the five days flags the base backup's window and the SQL read's, saying
what each copied, by whom and from where.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from detector import model, settings
from detector import schema as S
from detector.live.service import Service
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import cli, free_port, pg_cluster, require_postgres, wait_for_logs

pytestmark = pytest.mark.postgres

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
SPLIT = DAY0 + timedelta(days=5)  # train on days 1-5, score day 6
BACKUP_AT = SPLIT + timedelta(hours=22, minutes=17)
STREAM_AT = SPLIT + timedelta(hours=23, minutes=41)
SQL_STREAM_AT = SPLIT + timedelta(hours=23, minutes=52)
SETTINGS = {
    "pgaudit.log": "read,write,ddl,role,misc",
    "log_replication_commands": "on",
    "wal_level": "logical",  # for pg_recvlogical; a base backup needs only replica
}


@dataclass
class Run:
    logs: Path
    tmp: Path
    changes: int  # the rows pg_logical_slot_get_changes gave the client


def _require_faketime() -> None:
    from pg_cluster import LIBFAKETIME

    if LIBFAKETIME is None:
        reason = "libfaketime not found (Debian package faketime)"
        if os.environ.get("TROVEWATCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}; required in CI")
        pytest.skip(reason)


def _workday(pg: Any, day: datetime) -> None:
    """A day's ordinary work: the shop's reads, a report, the replication role's check."""
    sessions = [
        (3, 5, "rep_user", "ops", "SELECT * FROM ops.heartbeat"),
        (7, 20, "reporting", "shop", "SELECT city, count(*) FROM shop.customers GROUP BY city"),
        *(
            (hour, 10, "web_shop", "shop", f"SELECT * FROM shop.customers WHERE id <= {hour * 3}")
            for hour in (9, 11, 14, 16)
        ),
    ]
    for hour, minute, user, database, query in sessions:
        pg.set_clock(day + timedelta(hours=hour, minutes=minute))
        with psycopg.connect(pg.dsn(user, database), application_name="psql") as conn:
            conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def run(
    server_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    require_postgres()
    _require_faketime()
    from pg_cluster import PgCluster

    tmp = tmp_path_factory.mktemp("replication")
    served = server_dir("pg_replication")
    pg = PgCluster(served / "pg", free_port(), SETTINGS, faketime_file=served / "faketime")
    pg.set_clock(DAY0 - timedelta(hours=12))
    pg.start()
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("CREATE ROLE rep_user WITH REPLICATION LOGIN")
            for role in ("web_shop", "reporting"):
                admin.execute(f"CREATE ROLE {role} LOGIN")
            admin.execute("CREATE DATABASE shop")
            admin.execute("CREATE DATABASE ops")
        with psycopg.connect(pg.dsn(dbname="shop"), autocommit=True) as shop:
            shop.execute("CREATE SCHEMA shop")
            shop.execute("CREATE TABLE shop.customers(id int primary key, city text, card text)")
            shop.execute(
                "INSERT INTO shop.customers SELECT g, 'city' || g % 9, md5(g::text)"
                " FROM generate_series(1, 5000) g"
            )
            shop.execute("GRANT USAGE ON SCHEMA shop TO web_shop, reporting")
            shop.execute("GRANT SELECT ON shop.customers TO web_shop, reporting")
            shop.execute("CREATE PUBLICATION pub_all FOR ALL TABLES")
        with psycopg.connect(pg.dsn(dbname="ops"), autocommit=True) as ops:
            ops.execute("CREATE SCHEMA ops")
            ops.execute("CREATE TABLE ops.heartbeat(id int, at timestamptz)")
            ops.execute("INSERT INTO ops.heartbeat VALUES (1, now())")
            ops.execute("GRANT USAGE ON SCHEMA ops TO rep_user")
            ops.execute("GRANT SELECT ON ops.heartbeat TO rep_user")
        for day in range(6):  # the scored day's ordinary work too, at its usual hours
            _workday(pg, DAY0 + timedelta(days=day))
        tool = Path(pg._bin("pg_basebackup")).parent
        connect: list[str | Path] = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "rep_user"]
        pg.set_clock(BACKUP_AT)
        subprocess.run(
            [tool / "pg_basebackup", *connect, "-D", tmp / "copy", "-c", "fast"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        pg.set_clock(STREAM_AT)
        recv: list[str | Path] = [
            tool / "pg_recvlogical",
            *connect,
            "-d",
            "shop",
            "--slot",
            "exfil",
        ]
        subprocess.run([*recv, "--create-slot", "-P", "pgoutput"], check=True, timeout=60)
        with psycopg.connect(pg.dsn(dbname="shop"), autocommit=True) as shop:
            shop.execute("UPDATE shop.customers SET card = 'x' WHERE id = 1")
            end = shop.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        subprocess.run(
            [*recv, "--start", "-o", "proto_version=1", "-o", "publication_names=pub_all",
             "-E", str(end), "-f", tmp / "stream.out"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        # The same changes read through SQL, no replication connection: the slot's
        # functions are open to any REPLICATION role.
        pg.set_clock(SQL_STREAM_AT)
        with psycopg.connect(pg.dsn("rep_user", "shop"), autocommit=True) as sql:
            sql.execute("SELECT pg_create_logical_replication_slot('sql_slot', 'test_decoding')")
            with psycopg.connect(pg.dsn(dbname="shop"), autocommit=True) as shop:
                shop.execute("UPDATE shop.customers SET card = 'y' WHERE id <= 200")
            changes = "SELECT * FROM pg_logical_slot_get_changes('sql_slot', NULL, NULL)"
            run_changes = len(sql.execute(changes).fetchall())  # type: ignore[arg-type]
            sql.execute("SELECT pg_drop_replication_slot('sql_slot')")
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_drop_replication_slot('exfil')")
            admin.execute("SELECT 'replication test done'")
        wait_for_logs(pg.log_dir, "replication test done")
    finally:
        pg.stop()
    yield Run(pg.log_dir, tmp, run_changes)


def exports(run: Run, output: str) -> pl.DataFrame:
    events, _ = parse(run.logs / OUTPUTS[output])
    return events.filter(pl.col(S.EXPORT) & (pl.col(S.ACCOUNT) == "rep_user"))


def test_a_base_backup_is_an_export_of_the_cluster_by_its_replication_role(
    run: Run, output: str
) -> None:
    """The BASE_BACKUP pgAudit never sees: one export of (cluster) by rep_user, from
    pg_basebackup at its client's address, with no row count (the protocol logs none);
    its WAL stream (``-X stream``, a second connection) is part of it, no export."""
    backup = exports(run, output).filter(pl.col(S.COMMAND) == "BASE_BACKUP")
    assert backup.select(
        S.ACCOUNT, S.APPLICATION, S.CLIENT_IP, S.OBJECTS, S.CLASS, S.ROWS
    ).rows() == [("rep_user", "pg_basebackup", "127.0.0.1", ["(cluster)"], "READ", None)]
    assert backup[S.TIME].item() - BACKUP_AT < timedelta(minutes=1)
    by_tool = exports(run, output).filter(pl.col(S.APPLICATION) == "pg_basebackup")
    assert by_tool.height == 1


def test_a_logical_stream_is_an_export_of_its_publication(run: Run, output: str) -> None:
    """pg_recvlogical's START_REPLICATION of a pgoutput slot: an export of the publication
    it names, in the database it streams; creating the slot is none, nor is the
    ``SELECT pg_catalog.set_config('search_path', '', false)`` each of its connections
    sends first a read (it was a 1-row read of nothing)."""
    stream = exports(run, output).filter(pl.col(S.APPLICATION) == "pg_recvlogical")
    assert stream.select(S.COMMAND, S.DATABASE, S.OBJECTS, S.ROWS).rows() == [
        ("START_REPLICATION", "shop", ["(publication pub_all)"], None)
    ]
    events, _ = parse(run.logs / OUTPUTS[output])
    # the search_path libpq's replication clients set first: the server's state, no read
    own = events.filter(pl.col(S.APPLICATION) == "pg_recvlogical")
    assert own.filter(pl.col(S.COMMAND) == "SELECT")[S.CLASS].to_list() == ["CATALOG"] * 2
    # pg_recvlogical's slot, and pg_basebackup's temporary one for its WAL stream
    slot = events.filter(pl.col(S.COMMAND) == "CREATE_REPLICATION_SLOT")
    assert sorted(slot[S.APPLICATION]) == ["pg_basebackup", "pg_recvlogical"]
    assert set(slot[S.CLASS]) == {"MISC"} and not slot[S.EXPORT].any()


def test_changes_read_through_sql_are_an_export_of_their_database(run: Run, output: str) -> None:
    """``SELECT * FROM pg_logical_slot_get_changes(...)``, which pgAudit logs as a READ
    naming no table (it was a read of nothing in particular): the SQL form of
    pg_recvlogical's stream, an export of ``(database shop)``, with the rows the client
    got (every change to the database's tables since the slot was made)."""
    read = exports(run, output).filter(pl.col(S.QUERY).str.contains("slot_get_changes"))
    assert read.select(S.DATABASE, S.OBJECTS, S.CLASS, S.ROWS).rows() == [
        ("shop", ["(database shop)"], "READ", run.changes)
    ]
    assert run.changes >= 200  # the 200 rows updated, each a change


def test_a_model_trained_on_ordinary_work_flags_the_base_backup(run: Run, output: str) -> None:
    """Trained on five days in which rep_user only read its heartbeat, ``score`` of the
    sixth flags the base backup's window, by the guardrail on an export by an account that
    never exports, and says in database terms what was copied, by whom, from where."""
    log = run.logs / OUTPUTS[output]
    model, scores = run.tmp / f"model-{output}", run.tmp / f"scores-{output}.ndjson"
    cli("train", "--model-dir", model, "--until", SPLIT.isoformat(), log)
    cli("score", "--model-dir", model, "--since", SPLIT.isoformat(), "--out", scores, log)
    flagged = pl.read_ndjson(scores).filter("flagged")
    backup = flagged.filter(
        (pl.col("account") == "rep_user")
        & (pl.col("window_start").str.to_datetime(time_zone="UTC") <= BACKUP_AT)
        & (pl.col("window_end").str.to_datetime(time_zone="UTC") > BACKUP_AT)
    )
    assert backup.height == 1, flagged.select("account", "window_start", "reasons").rows()
    said = "\n".join(backup["reasons"].item())
    assert (
        "1 export statement(s) (base backup, replication stream, COPY ... TO, cursor FETCH, "
        "dump or INTO OUTFILE) of (cluster): a base backup of the whole cluster (every table "
        "of every database) by rep_user from pg_basebackup; row count not logged; this "
        "account never exported data in training"
    ) in said, said
    # ... and the changes read through SQL, in database terms too
    sql_read = flagged.filter(
        (pl.col("account") == "rep_user")
        & (pl.col("window_start").str.to_datetime(time_zone="UTC") <= SQL_STREAM_AT)
        & (pl.col("window_end").str.to_datetime(time_zone="UTC") > SQL_STREAM_AT)
    )
    said = "\n".join(sql_read["reasons"].explode())
    assert "of (database shop)" in said and "never exported data in training" in said, said
    # the ordinary accounts' day is not flagged
    assert set(flagged["account"]) == {"rep_user"}, flagged.select("account", "reasons").rows()


def test_serve_alerts_on_the_base_backup_as_score_does(run: Run) -> None:
    """``serve`` following the sixth day's log, with the model of the five before, stores
    the base backup's alert with the same reason, and the SQL read of the slot's
    changes."""
    log = run.logs / OUTPUTS["jsonlog"]
    model_dir = run.tmp / "model-serve"
    cli("train", "--model-dir", model_dir, "--until", SPLIT.isoformat(), log)
    followed = run.tmp / "followed"
    followed.mkdir()
    scored_day = b"".join(
        line
        for line in log.read_bytes().splitlines(keepends=True)
        if line[14:24] >= SPLIT.strftime("%Y-%m-%d").encode()
    )
    conf = settings.Settings(
        state_dir=run.tmp / "state", follow=[str(followed / "*")], lateness="5s"
    )
    service = Service(model.load(model_dir), conf, conf.follow, model_dir)
    try:
        (followed / "postgresql.json").write_bytes(scored_day)
        # the follower's idle_flush (2 s: a last record that may still grow), then the
        # lateness of quiet for the wall clock to close the day's last window
        for _ in range(5):
            service.step()
            time.sleep(2.1)
        _, alerts = service.store.alerts()
        backup = [a for a in alerts if a["account"] == "rep_user" and "(cluster)" in str(a)]
        assert len(backup) == 1, alerts
        assert (
            "a base backup of the whole cluster (every table of every database) by rep_user"
            in str(backup[0])
        )
        # and the changes read through SQL, as score says them
        sql_read = [a for a in alerts if "of (database shop): a logical" in str(a)]
        assert len(sql_read) == 1, alerts
    finally:
        service.stop()


def test_a_base_backup_takes_its_account_from_the_connection_line_with_the_default_prefix(
    server_dir: Callable[[str], Path],
) -> None:
    """With PostgreSQL's default ``log_line_prefix = '%m [%p] '`` the BASE_BACKUP line
    names no user, application or client: the session's ``connection received`` and
    ``replication connection authorized: user=rep_user application_name=pg_basebackup``
    lines do."""
    plain = {**SETTINGS, "log_line_prefix": "%m [%p] ", "log_destination": "stderr"}
    with pg_cluster(server_dir("pg_replication_prefix"), plain) as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("CREATE ROLE rep_user WITH REPLICATION LOGIN")
        copy = server_dir("pg_replication_copy") / "copy"
        subprocess.run(
            [Path(pg._bin("pg_basebackup")), "-h", "127.0.0.1", "-p", str(pg.port),
             "-U", "rep_user", "-D", copy, "-c", "fast"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute("SELECT 'prefix test done'")
        deadline = time.monotonic() + 10
        log = pg.log_dir / "postgresql.log"
        while "prefix test done" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    events, _ = parse(log)
    backup = events.filter(pl.col(S.EXPORT))
    assert backup.select(S.ACCOUNT, S.APPLICATION, S.CLIENT_IP, S.COMMAND, S.OBJECTS).rows() == [
        ("rep_user", "pg_basebackup", "127.0.0.1", "BASE_BACKUP", ["(cluster)"])
    ]
