"""Real statements against a real PostgreSQL 15 + pgAudit; the parsed events must match
what the client saw (rows exact) in all three of the server's log outputs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import psycopg
import pytest

from detector import features as F
from detector import schema as S
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import wait_for_logs

pytestmark = pytest.mark.postgres

MULTILINE = """SELECT id, email,
       'a, quoted '' string' AS note, "card"
  FROM shop.customers
 WHERE id <= 42"""


@dataclass
class Truth:
    """What the client observed, to compare with what the logs say."""

    rows: dict[str, int] = field(default_factory=dict)
    dump_tables: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def workload(postgres) -> tuple[Path, Truth]:  # type: ignore[no-untyped-def]
    truth = Truth()
    admin = psycopg.connect(postgres.dsn(), autocommit=True)
    for role in ("reader", "exporter", "cursor_user", "backup", "failer"):
        admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute("CREATE DATABASE corp")
    admin.close()
    db = psycopg.connect(postgres.dsn(dbname="corp"), autocommit=True)
    db.execute("CREATE SCHEMA shop")
    db.execute("CREATE TABLE shop.customers(id int primary key, email text, card text)")
    db.execute("CREATE TABLE shop.orders(id int primary key, customer_id int, total numeric)")
    db.execute(
        "INSERT INTO shop.customers SELECT g, 'u'||g||'@x.com', md5(g::text) FROM generate_series(1,5000) g"
    )
    db.execute(
        "INSERT INTO shop.orders SELECT g, 1 + g % 5000, g % 97 FROM generate_series(1,20000) g"
    )
    db.execute("GRANT USAGE ON SCHEMA shop TO reader, exporter, cursor_user, backup, failer")
    db.execute(
        "GRANT SELECT ON ALL TABLES IN SCHEMA shop TO reader, exporter, cursor_user, backup, failer"
    )
    db.execute("GRANT INSERT ON shop.customers TO exporter")
    db.close()

    with psycopg.connect(postgres.dsn("reader", "corp"), application_name="report_app") as conn:
        cur = conn.execute("SELECT * FROM shop.customers WHERE id <= 1234")
        truth.rows["select"] = len(cur.fetchall())
        cur = conn.execute(
            "SELECT c.email, o.total FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id WHERE c.id <= 10"
        )
        truth.rows["join"] = len(cur.fetchall())
        cur = conn.execute(MULTILINE)  # type: ignore[arg-type]
        truth.rows["multiline"] = len(cur.fetchall())
        cur = conn.execute("SELECT * FROM shop.orders WHERE id <= %s", (321,))
        truth.rows["parameterised"] = len(cur.fetchall())

    with psycopg.connect(postgres.dsn("exporter", "corp"), application_name="psql") as conn:
        with conn.cursor().copy("COPY shop.customers TO STDOUT") as copy:
            truth.rows["copy_table"] = sum(1 for _ in copy.rows())
        with conn.cursor().copy(
            "COPY (SELECT * FROM shop.orders WHERE id <= 777) TO STDOUT"
        ) as copy:
            truth.rows["copy_query"] = sum(1 for _ in copy.rows())
        with conn.cursor().copy("COPY shop.customers FROM STDIN") as copy:
            for i in range(9001, 9011):
                copy.write_row((i, f"n{i}@x.com", "x"))

    with psycopg.connect(postgres.dsn("cursor_user", "corp"), application_name="batch") as conn:
        conn.execute("DECLARE big CURSOR FOR SELECT * FROM shop.orders")
        fetched = 0
        for _ in range(3):
            fetched += len(conn.execute("FETCH 1000 FROM big").fetchall())
        truth.rows["fetched"] = fetched
        conn.execute("CLOSE big")

    dump = subprocess.run(
        [
            str(postgres.bin_dir / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(postgres.port),
            "-U",
            "backup",
            "-n",
            "shop",
            "corp",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for table in ("shop.customers", "shop.orders"):
        section = dump.stdout.split(f"COPY {table} ")[1].split("\n\\.\n")[0]
        truth.dump_tables[table] = section.count("\n")

    with (
        psycopg.connect(postgres.dsn("failer", "corp"), application_name="app") as conn,
        pytest.raises(psycopg.errors.UndefinedTable),
    ):
        conn.execute("SELECT * FROM shop.nope")

    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 'end-of-workload'")
    wait_for_logs(postgres.log_dir, "end-of-workload")
    return postgres.log_dir, truth


def events_of(workload: tuple[Path, Truth], output: str) -> pl.DataFrame:
    log_dir, _ = workload
    events, quarantine = parse(log_dir / OUTPUTS[output])
    assert quarantine.total == 0, dict(quarantine.counts)
    return events


def account(events: pl.DataFrame, name: str) -> pl.DataFrame:
    return events.filter(pl.col(S.ACCOUNT) == name)


def test_selects_count_exactly_the_rows_the_client_received(workload, output) -> None:  # type: ignore[no-untyped-def]
    _, truth = workload
    reads = account(events_of(workload, output), "reader").filter(pl.col(S.CLASS) == "READ")
    assert reads[S.ROWS].to_list() == [
        truth.rows["select"],
        truth.rows["join"],
        truth.rows["multiline"],
        truth.rows["parameterised"],
    ]
    join = reads.row(1, named=True)
    assert sorted(join[S.OBJECTS]) == ["shop.customers", "shop.orders"]
    assert reads.row(2, named=True)[S.QUERY] == MULTILINE
    assert set(reads[S.APPLICATION]) == {"report_app"}
    assert set(reads[S.DATABASE]) == {"corp"}


def test_copy_to_is_an_export_of_its_table_and_copy_from_is_a_write(workload, output) -> None:  # type: ignore[no-untyped-def]
    _, truth = workload
    ev = account(events_of(workload, output), "exporter")
    copy_table = ev.filter(pl.col(S.QUERY) == "COPY shop.customers TO STDOUT")
    assert copy_table[S.EXPORT].all() and copy_table.height == 1
    assert copy_table[S.OBJECTS].to_list() == [["shop.customers"]]
    assert copy_table[S.ROWS].to_list() == [None]  # pgAudit logs 0; the real count is unknown
    copy_query = ev.filter(pl.col(S.QUERY).str.starts_with("COPY (SELECT"))
    assert copy_query[S.ROWS].sum() == truth.rows["copy_query"]
    assert copy_query[S.EXPORT].all()
    copy_in = ev.filter(pl.col(S.QUERY) == "COPY shop.customers FROM STDIN")
    assert copy_in[S.CLASS].to_list() == ["WRITE"] and not copy_in[S.EXPORT].any()
    assert copy_in[S.ROWS].to_list() == [None]  # pgAudit 1.7 logs COPY FROM with 0 rows too


def test_exports_whose_rows_pgaudit_does_not_log_are_counted_as_such(workload, output) -> None:  # type: ignore[no-untyped-def]
    """What a reason says of exports: ``COPY t TO`` and a dump's copies have no row count
    in the log; ``COPY (SELECT ...) TO`` has one, on its SELECT's line."""
    _, truth = workload
    events = events_of(workload, output)

    def day(name: str) -> dict[str, object]:
        return F.window_activity(account(events, name).lazy(), "1d").collect().row(0, named=True)

    exporter, backup = day("exporter"), day("backup")
    assert (exporter["exports"], exporter["uncounted_exports"]) == (2, 1)
    assert exporter["export_rows"] == truth.rows["copy_query"]
    # pg_dump's own SELECTs (set_config, pg_is_in_recovery), logged with 1 row each,
    # are the server's state, no export: its exports are its copies, not counted
    assert backup["exports"] == backup["uncounted_exports"] == len(truth.dump_tables)
    assert backup["export_rows"] is None


def test_cursor_fetches_are_exports_of_the_cursor_table(workload, output) -> None:  # type: ignore[no-untyped-def]
    ev = account(events_of(workload, output), "cursor_user")
    fetches = ev.filter(pl.col(S.COMMAND) == "FETCH")
    assert fetches.height == 3
    assert fetches[S.OBJECTS].to_list() == [["shop.orders"]] * 3
    assert fetches[S.EXPORT].all()


def test_pg_dump_reads_every_table_as_an_export(workload, output) -> None:  # type: ignore[no-untyped-def]
    _, truth = workload
    ev = account(events_of(workload, output), "backup").filter(pl.col(S.EXPORT))
    assert set(ev[S.APPLICATION]) == {"pg_dump"}
    exported = sorted({o for objs in ev[S.OBJECTS].to_list() for o in objs})
    assert exported == sorted(truth.dump_tables)


def test_failed_statement_is_recorded_as_failure(workload, output) -> None:  # type: ignore[no-untyped-def]
    failed = account(events_of(workload, output), "failer").filter(~pl.col(S.SUCCESS))
    assert failed[S.QUERY].to_list() == ["SELECT * FROM shop.nope"]
    assert failed[S.OBJECTS].to_list() == [["shop.nope"]]


def test_three_outputs_agree(workload) -> None:  # type: ignore[no-untyped-def]
    frames = [events_of(workload, o).drop(S.SOURCE_FORMAT, S.SESSION) for o in sorted(OUTPUTS)]
    for other in frames[1:]:
        assert other.equals(frames[0])


QUOTED_TABLES = ('"Ventes"."Clients été"', "ventes.clients_été", 'ventes."Order"')


@pytest.fixture(scope="module")
def quoted_names(postgres) -> Path:  # type: ignore[no-untyped-def]
    """Tables whose names pgAudit quotes (mixed case, non-ASCII, a keyword's case), each
    read by SELECT (pgAudit names the table) and by COPY TO and a cursor (it does not)."""
    admin = psycopg.connect(postgres.dsn(), autocommit=True)
    admin.execute("CREATE ROLE quoted_reader LOGIN")
    admin.execute("CREATE DATABASE names")
    admin.close()
    db = psycopg.connect(postgres.dsn(dbname="names"), autocommit=True)
    db.execute('CREATE SCHEMA "Ventes"')
    db.execute("CREATE SCHEMA ventes")
    for table in QUOTED_TABLES:
        db.execute(f"CREATE TABLE {table} (id int)")
        db.execute(f"INSERT INTO {table} SELECT generate_series(1, 30)")
        db.execute(f"GRANT SELECT ON {table} TO quoted_reader")
    db.execute('GRANT USAGE ON SCHEMA "Ventes", ventes TO quoted_reader')
    db.close()
    with psycopg.connect(postgres.dsn("quoted_reader", "names")) as conn:
        for table in QUOTED_TABLES:
            conn.execute(f"SELECT * FROM {table}").fetchall()
            with conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                assert sum(1 for _ in copy.rows()) == 30
            conn.execute(f"DECLARE c CURSOR FOR SELECT * FROM {table}")
            conn.execute("FETCH 10 FROM c").fetchall()
            conn.execute("CLOSE c")
        conn.execute("SELECT 'end-of-quoted-names'")
    wait_for_logs(postgres.log_dir, "end-of-quoted-names")
    return Path(postgres.log_dir)


def test_tables_named_only_in_the_text_are_named_as_pgaudit_names_them(
    quoted_names: Path, output: str
) -> None:
    """A COPY or cursor of a table (whose name only the statement text gives) names it as
    pgAudit names it when it reads it by SELECT: one table, one name."""
    events, quarantine = parse(quoted_names / OUTPUTS[output])
    assert quarantine.total == 0
    ev = account(events, "quoted_reader").filter(pl.col(S.CLASS).is_in(["READ", "MISC"]))
    selects = ev.filter(pl.col(S.COMMAND) == "SELECT", pl.col(S.OBJECTS).list.len() > 0)
    named = selects[S.OBJECTS].to_list()
    assert len(named) == len(QUOTED_TABLES)
    assert named[0] == ['"Ventes"."Clients été"']
    for table, by_pgaudit in zip(QUOTED_TABLES, named, strict=True):
        unnamed = ev.filter(
            pl.col(S.QUERY).str.contains(table, literal=True)
            & pl.col(S.COMMAND).is_in(["COPY", "DECLARE CURSOR"])
        )
        assert unnamed.height == 2
        assert unnamed[S.OBJECTS].to_list() == [by_pgaudit] * 2, table


def test_a_cursor_declared_again_fetches_from_its_new_table(
    quoted_names: Path, output: str
) -> None:
    """The session declares cursor ``c`` over each table in turn (closing it between):
    each FETCH reads the table of the DECLARE before it, not of the session's last."""
    events, _ = parse(quoted_names / OUTPUTS[output])
    ev = account(events, "quoted_reader")
    declared = ev.filter(pl.col(S.COMMAND) == "DECLARE CURSOR")[S.OBJECTS].to_list()
    fetches = ev.filter(pl.col(S.COMMAND) == "FETCH")[S.OBJECTS].to_list()
    assert len(set(map(tuple, declared))) == len(QUOTED_TABLES)
    assert fetches == declared
