"""Exports and reads written the unusual ways real clients write them, on a real
PostgreSQL 15 + pgAudit (the held-out findings D3, D4, D7, D8, D12, D13, D14): each
must be counted with its table in all three of the server's log outputs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from detector import features as F
from detector import schema as S
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import wait_for_logs

pytestmark = pytest.mark.postgres

ROLES = (
    "hr_owner", "commenter", "mimic", "sys_reader", "joiner", "fetcher", "cte_user",
    "dumper", "dumper_par", "dumper_ins", "analyst", "stager", "returner", "inserter",
    "pusher",
)  # fmt: skip
NOTES = 600
PEOPLE, PAY = 1500, 800
DUMPED = ["hr.pay", "hr.people"]


def _copied(conn: psycopg.Connection[Any], statement: str) -> int:
    with conn.cursor().copy(statement) as copy:  # type: ignore[arg-type]
        return sum(bytes(block).count(b"\n") for block in copy)


@pytest.fixture(scope="module")
def workload(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    admin = psycopg.connect(postgres.dsn(), autocommit=True)
    for role in ROLES:
        admin.execute(f"CREATE ROLE {role} LOGIN")  # type: ignore[arg-type]
    admin.execute("CREATE DATABASE staff OWNER hr_owner")
    admin.execute("CREATE DATABASE elsewhere")  # another server, as postgres_fdw sees it
    admin.close()
    with psycopg.connect(postgres.dsn(dbname="elsewhere"), autocommit=True) as away:
        away.execute("CREATE TABLE drop_box(id int, name text, ssn text)")
    # The tables' owner loads them: pgAudit logs the server's foreign-key checks of the
    # owner's INSERT (one 1-row READ per row) and of its ALTER TABLE ... FOREIGN KEY.
    with psycopg.connect(postgres.dsn("hr_owner", "staff"), autocommit=True) as db:
        db.execute("CREATE SCHEMA hr")
        db.execute("CREATE SCHEMA sys")  # a user schema: Oracle migrations, pgloader
        db.execute("CREATE SCHEMA scratch")
        db.execute("GRANT CREATE, USAGE ON SCHEMA scratch TO analyst")
        db.execute("CREATE TABLE hr.people(id int primary key, name text, ssn text)")
        db.execute("CREATE TABLE hr.pay(id int primary key, person_id int, amount numeric)")
        db.execute("CREATE TABLE sys.users(id int primary key, login text)")
        db.execute(
            f"INSERT INTO hr.people SELECT g, 'n' || g, lpad(g::text, 9, '0')"
            f" FROM generate_series(1, {PEOPLE}) g"
        )
        db.execute("INSERT INTO hr.pay SELECT g, g, g % 97 FROM generate_series(1, 400) g")
        db.execute("ALTER TABLE hr.pay ADD FOREIGN KEY (person_id) REFERENCES hr.people")
        db.execute(f"INSERT INTO hr.pay SELECT g, g, g % 97 FROM generate_series(401, {PAY}) g")
        db.execute("INSERT INTO sys.users SELECT g, 'u' || g FROM generate_series(1, 500) g")
        db.execute("CREATE SCHEMA desk")  # not dumped (the dumps take hr)
        db.execute("GRANT USAGE ON SCHEMA desk TO returner, inserter")
        db.execute("CREATE TABLE desk.notes(id int primary key, body text)")
        db.execute("CREATE TABLE desk.notes_kept(id int primary key, body text)")
        db.execute(f"INSERT INTO desk.notes SELECT g, 'b' || g FROM generate_series(1, {NOTES}) g")
        db.execute("GRANT ALL ON desk.notes, desk.notes_kept TO returner, inserter")
        others = ", ".join(ROLES[1:])
        db.execute(f"GRANT USAGE ON SCHEMA hr, sys TO {others}")  # type: ignore[arg-type]
        db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA hr, sys TO {others}")  # type: ignore[arg-type]

    # A foreign table on the other server (postgres_fdw): rows written to it leave.
    with psycopg.connect(postgres.dsn(dbname="staff"), autocommit=True) as db:
        db.execute("CREATE EXTENSION postgres_fdw")
        db.execute(
            "CREATE SERVER away FOREIGN DATA WRAPPER postgres_fdw OPTIONS"  # type: ignore[arg-type]
            f" (host '127.0.0.1', port '{postgres.port}', dbname 'elsewhere')"
        )
        db.execute(
            "CREATE USER MAPPING FOR pusher SERVER away"
            " OPTIONS (user 'postgres', password_required 'false')"
        )
        db.execute("CREATE SCHEMA outbound AUTHORIZATION pusher")
        db.execute(
            "CREATE FOREIGN TABLE outbound.drop_box(id int, name text, ssn text) SERVER away"
            " OPTIONS (schema_name 'public', table_name 'drop_box')"
        )
        db.execute("ALTER FOREIGN TABLE outbound.drop_box OWNER TO pusher")
    with psycopg.connect(postgres.dsn("pusher", "staff"), autocommit=True) as c:
        c.execute("INSERT INTO outbound.drop_box SELECT * FROM hr.people")
        c.execute("INSERT INTO outbound.drop_box VALUES (0, 'typed', 'by the client')")
    with psycopg.connect(postgres.dsn(dbname="elsewhere")) as away:
        copied = away.execute("SELECT count(*) FROM drop_box").fetchone()[0]  # type: ignore[index]
        assert copied == PEOPLE + 1
    with psycopg.connect(postgres.dsn("commenter", "staff"), application_name="Metabase") as c:
        assert _copied(c, "/* metabase query 42 */ COPY hr.people TO STDOUT") == PEOPLE
        assert _copied(c, "-- nightly extract\nCOPY hr.pay TO STDOUT WITH (FORMAT csv)") == PAY
        assert _copied(c, "/*x*/ COPY (SELECT id, ssn FROM hr.people WHERE id <= 333) TO STDOUT")
        c.execute("/* c */ DECLARE sc CURSOR FOR SELECT * FROM hr.people WHERE id <= 50")
        assert len(c.execute("FETCH ALL FROM sc").fetchall()) == 50
    with psycopg.connect(postgres.dsn("mimic", "staff"), application_name="psql") as c:
        for query, rows in (
            ('SELECT fk."ssn" FROM ONLY "hr"."people" fk WHERE fk."id" <= 1200', 1200),
            ('SELECT 1 FROM ONLY "hr"."people" x WHERE "id" <= 700', 700),
        ):
            assert len(c.execute(query).fetchall()) == rows  # type: ignore[arg-type]
    with psycopg.connect(postgres.dsn("sys_reader", "staff"), application_name="psql") as c:
        assert len(c.execute("SELECT * FROM sys.users WHERE id <= 50").fetchall()) == 50
        assert _copied(c, "COPY sys.users TO STDOUT") == 500
    with psycopg.connect(postgres.dsn("joiner", "staff"), application_name="psql") as c:
        c.execute(
            "DECLARE j CURSOR FOR SELECT p.id, y.amount FROM hr.people p, hr.pay y"
            " WHERE y.person_id = p.id"
        )
        assert len(c.execute("FETCH ALL FROM j").fetchall()) == PAY
        c.execute("DECLARE k CURSOR FOR SELECT * FROM ONLY hr.pay WHERE id <= 70")
        assert len(c.execute("FETCH ALL FROM k").fetchall()) == 70
    with psycopg.connect(postgres.dsn("fetcher", "staff"), application_name="psql") as c:
        c.execute("DECLARE plain CURSOR FOR SELECT * FROM hr.pay WHERE id <= 100")
        fetched = len(c.execute("FETCH plain").fetchall())
        fetched += len(c.execute("FETCH 20 plain").fetchall())
        fetched += len(c.execute("FETCH ALL plain").fetchall())
        assert fetched == 100
    with psycopg.connect(postgres.dsn("cte_user", "staff"), application_name="psql") as c:
        assert _copied(
            c, "COPY (WITH x AS (SELECT * FROM hr.pay WHERE id <= 10) SELECT id FROM x) TO STDOUT"
        ) == 10  # fmt: skip

    with psycopg.connect(postgres.dsn("analyst", "staff"), autocommit=True) as c:
        assert len(c.execute("SELECT * FROM hr.pay WHERE id <= 40").fetchall()) == 40
        # a plan, and tables made on the server: no row of hr.pay reaches the client
        c.execute("EXPLAIN ANALYZE SELECT * FROM hr.pay WHERE id <= 500").fetchall()
        c.execute("CREATE TABLE scratch.snap AS SELECT * FROM hr.pay WHERE id <= 300")
        c.execute("SELECT * INTO TEMP tmp_pay FROM hr.pay WHERE id <= 200")

    # Rows read out through writes: every row a RETURNING clause gives back reaches the
    # client, whatever pgAudit's WRITE class says (a CTE's count is the top level's).
    with psycopg.connect(postgres.dsn("returner", "staff"), autocommit=True) as c:
        assert len(c.execute("UPDATE desk.notes SET body = body RETURNING *").fetchall()) == NOTES
        deleted = "WITH d AS (DELETE FROM desk.notes WHERE id > 550 RETURNING *) SELECT * FROM d"
        assert len(c.execute(deleted).fetchall()) == 50
        kept = "INSERT INTO desk.notes_kept SELECT * FROM desk.notes WHERE id <= 100 RETURNING *"
        assert len(c.execute(kept).fetchall()) == 100
    # An ORM's inserts get back their own keys; a literal holding the word is no clause.
    with psycopg.connect(postgres.dsn("inserter", "staff"), autocommit=True) as c:
        for key in range(1001, 1006):
            c.execute(f"INSERT INTO desk.notes_kept VALUES ({key}, 'x') RETURNING id")  # type: ignore[arg-type]
        c.execute("UPDATE desk.notes SET body = 'a returning customer' WHERE id <= 20")

    # Two sessions at once, each with its own temporary table of the same name: each lives
    # in its backend's own schema (pg_temp_N, N differing between concurrent sessions).
    with (
        psycopg.connect(postgres.dsn("stager", "staff"), application_name="etl") as one,
        psycopg.connect(postgres.dsn("stager", "staff"), application_name="etl") as two,
    ):
        for session in (one, two):
            session.execute("CREATE TEMP TABLE stage AS SELECT * FROM hr.pay WHERE id <= 30")
            assert len(session.execute("SELECT * FROM stage").fetchall()) == 30

    bin_dir = postgres.bin_dir
    connect = ["-h", "127.0.0.1", "-p", str(postgres.port), "-n", "hr"]
    out = tmp_path_factory.mktemp("dumps")
    for role, extra in (
        ("dumper", []),
        ("dumper_par", ["-Fd", "-j", "2", "-f", str(out / "par")]),
        ("dumper_ins", ["--inserts"]),
    ):
        subprocess.run(
            [str(bin_dir / "pg_dump"), *connect, "-U", role, *extra, "staff"],
            capture_output=True, check=True,
        )  # fmt: skip

    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 'end-of-exports-workload'")
    wait_for_logs(postgres.log_dir, "end-of-exports-workload")
    return Path(postgres.log_dir)


@pytest.fixture
def events(workload: Path, output: str) -> pl.DataFrame:
    found, quarantine = parse(workload / OUTPUTS[output])
    assert quarantine.total == 0, dict(quarantine.counts)
    return found.filter(pl.col(S.DATABASE) == "staff")


Day = Callable[[str], dict[str, Any]]


@pytest.fixture
def day(events: pl.DataFrame) -> Day:
    """An account's whole workload as one window, every object new to it."""

    def window(account: str) -> dict[str, Any]:
        mine = events.filter(pl.col(S.ACCOUNT) == account).lazy()
        return F.window_activity(mine, "1d").collect().row(0, named=True)

    return window


def test_a_copy_or_cursor_behind_a_comment_is_an_export_of_its_table(
    events: pl.DataFrame, day: Day
) -> None:
    """D7: tools put comments first (Metabase, sqlcommenter, cron scripts); two COPYs of
    whole tables, a COPY of a query and a cursor (its DECLARE and its FETCH) are five
    exports of both tables."""
    window = day("commenter")
    assert window["exports"] == 3 + 2
    assert window["export_objects_list"] == DUMPED
    # the FETCH too, from its cursor's DECLARE
    exports = events.filter((pl.col(S.ACCOUNT) == "commenter") & pl.col(S.EXPORT))
    assert exports.filter(pl.col(S.OBJECTS).list.len() == 0).is_empty()


def test_a_query_shaped_like_a_foreign_key_check_is_a_read(
    workload: Path, events: pl.DataFrame, day: Day
) -> None:
    """D12: a user's own ``SELECT fk."ssn" FROM ONLY ...`` is a read of its rows; the
    server's own checks of the owner's INSERT and ALTER TABLE stay no read."""
    assert "FOR KEY SHARE OF x" in (workload / "postgresql.log").read_text()
    window = day("mimic")
    assert window["rows_read"] == 1200 + 700
    assert window["objects_list"] == ["hr.people"]
    owner = day("hr_owner")
    assert owner["rows_read"] is None and owner["objects_list"] == []
    checks = events.filter(
        (pl.col(S.ACCOUNT) == "hr_owner") & pl.col(S.QUERY).str.contains("FOR KEY SHARE OF x")
    )
    assert checks.height == PAY - 400 and set(checks[S.CLASS]) == {"INTERNAL"}


def test_a_user_schema_named_sys_is_data_on_postgresql(day: Day) -> None:
    """D13: ``sys`` is MySQL's catalog, not PostgreSQL's: its tables are data."""
    window = day("sys_reader")
    assert window["rows_read"] == 50
    assert (window["exports"], window["export_objects_list"]) == (1, ["sys.users"])
    assert window["objects_list"] == ["sys.users"]


def test_from_only_and_a_comma_list_name_every_table(day: Day) -> None:
    """D8: ``FROM ONLY t`` (pg_dump --inserts' cursors) and ``FROM a x, b y``."""
    assert day("joiner")["export_objects_list"] == DUMPED
    assert day("dumper_ins")["export_objects_list"] == DUMPED


def test_a_fetch_without_from_names_its_cursors_table(events: pl.DataFrame) -> None:
    """D14: ``FETCH c``, ``FETCH 20 c``, ``FETCH ALL c`` are valid SQL."""
    fetches = events.filter(
        (pl.col(S.ACCOUNT) == "fetcher") & (pl.col(S.COMMAND) == "FETCH") & pl.col(S.EXPORT)
    )
    assert fetches[S.OBJECTS].to_list() == [["hr.pay"]] * 3


def test_a_cte_name_is_not_a_table(day: Day) -> None:
    """D4: ``COPY (WITH x AS (...) SELECT ... FROM x) TO`` reads hr.pay, not public.x."""
    window = day("cte_user")
    assert window["objects_list"] == ["hr.pay"]
    assert window["export_objects_list"] == ["hr.pay"]


@pytest.mark.parametrize("role", ["dumper", "dumper_par"])
def test_a_dumps_exports_are_its_copies_whatever_its_jobs(day: Day, role: str) -> None:
    """D3: pg_dump's ``set_config``, ``pg_is_in_recovery()``, ... (each worker of ``-j``
    runs its own) read no data and export nothing; its two COPYs are its exports."""
    window = day(role)
    assert (window["exports"], window["export_objects_list"]) == (2, DUMPED)
    assert window["rows_read"] is None


def test_rows_read_for_the_server_itself_are_not_rows_read(day: Day) -> None:
    """D5: EXPLAIN ANALYZE (the client gets a plan), CREATE TABLE AS and SELECT INTO
    (rows go into a table on the server) read hr.pay, but send none of its rows."""
    window = day("analyst")
    assert window["rows_read"] == 40
    assert window["objects_list"] == ["hr.pay"]


def test_a_temporary_table_has_one_name_whatever_its_sessions_schema(
    events: pl.DataFrame, day: Day
) -> None:
    """pgAudit names a temporary table by its backend's schema (pg_temp_3.stage, and
    pg_temp_4.stage in a session beside it): one name for both, so a job's temporary
    table is not a table it never read before in each new session."""
    logged = events.filter(pl.col(S.ACCOUNT) == "stager")[S.OBJECTS].explode().drop_nulls()
    assert logged.str.starts_with("pg_temp").sum() == 2, logged.to_list()
    assert day("stager")["objects_list"] == ["hr.pay", "pg_temp.stage"]


def test_rows_a_write_returns_to_the_client_are_rows_read(day: Day) -> None:
    """``UPDATE t SET c = c RETURNING *`` reads a whole table out under pgAudit's WRITE
    class (before: 0 rows read, a blind way out for any account allowed to write): an
    UPDATE, a DELETE in a CTE and an INSERT ... SELECT give back 600 + 50 + 100 rows."""
    window = day("returner")
    assert window["rows_read"] == NOTES + 50 + 100
    assert "desk.notes" in window["objects_list"]


def test_rows_written_to_a_foreign_table_are_an_export_of_what_they_read(day: Day) -> None:
    """``INSERT INTO outbound.drop_box SELECT * FROM hr.people``, where drop_box is a
    postgres_fdw foreign table: pgAudit logs a WRITE of a FOREIGN TABLE (1,500 rows) and a
    READ of hr.people; the rows left for another server: an export, 1,500 rows read
    (before, a write). The client's own values written there (``VALUES ...``) are not."""
    window = day("pusher")
    assert (window["exports"], window["rows_read"]) == (1, PEOPLE)
    assert window["export_objects_list"] == ["hr.people", "outbound.drop_box"]


def test_an_insert_returning_its_keys_reads_nothing(day: Day) -> None:
    """Every ORM inserts with ``RETURNING id``: the client gets back what it sent, and a
    literal holding the word "returning" is no clause."""
    window = day("inserter")
    assert window["rows_read"] is None
    assert window["objects_list"] == []
