"""What counts as data read, on a real PostgreSQL 15 + pgAudit with its defaults for
``log_catalog`` (on) and the FUNCTION class logged: catalog reads (psql's ``\\d``, an
ORM's introspection, pg_dump's schema queries) are statements but not data, objects or
exports; a read through a function counts its rows once."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from detector import carried, model
from detector import features as F
from detector import schema as S
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import MODEL, follow, pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

TABLES = [f"shop.t{i}" for i in range(1, 7)]
# What psql's \dt and \d shop.customers, and an ORM's introspection, ask the server.
INTROSPECTION = [
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
    " LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog'"
    " AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema'",
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)"
    " FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'shop.customers'::regclass"
    " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    "SELECT table_name, column_name, data_type FROM information_schema.columns"
    " WHERE table_schema = 'shop' ORDER BY table_name, ordinal_position",
]


@dataclass
class Truth:
    rows: dict[str, int] = field(default_factory=dict)
    dump_tables: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def catalog_server(server_dir: Callable[[str], Path]) -> Iterator[Any]:
    """A cluster with pgAudit's own default ``log_catalog = on`` and every class logged."""
    every_class = {
        "pgaudit.log": "'read,write,ddl,role,misc,function'",
        "pgaudit.log_catalog": "on",
    }
    with pg_cluster(server_dir("pgcat"), every_class) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def workload(catalog_server: Any) -> tuple[Path, Truth]:
    pg = catalog_server
    truth = Truth()
    admin = psycopg.connect(pg.dsn(), autocommit=True)
    for role in (
        "introspector",
        "enumerator",
        "backup",
        "fn_reader",
        "proc_runner",
        "lo_reader",
        "packer",
    ):
        admin.execute(f"CREATE ROLE {role} LOGIN")
    # Large objects' pages are read directly by superusers only; the server's files by
    # pg_read_server_files' members.
    admin.execute("CREATE ROLE lo_admin LOGIN SUPERUSER")
    admin.execute("CREATE ROLE file_reader LOGIN IN ROLE pg_read_server_files")
    admin.execute("CREATE DATABASE corp")
    admin.close()
    db = psycopg.connect(pg.dsn(dbname="corp"), autocommit=True)
    db.execute("CREATE SCHEMA shop")
    db.execute("CREATE TABLE shop.customers(id int primary key, email text)")
    db.execute(
        "INSERT INTO shop.customers SELECT g, 'u'||g||'@x.com' FROM generate_series(1,500) g"
    )
    # pg_dump reads a sequence's state ("SELECT last_value, is_called FROM ..."), audited
    # as a READ of a SEQUENCE.
    db.execute("CREATE SEQUENCE shop.customer_ids OWNED BY shop.customers.id")
    for table in TABLES:
        db.execute(f"CREATE TABLE {table}(id int)")
        db.execute(f"INSERT INTO {table} SELECT generate_series(1, 7)")
    db.execute(
        "CREATE FUNCTION shop.all_customers() RETURNS SETOF shop.customers"
        " LANGUAGE sql AS 'SELECT * FROM shop.customers'"
    )
    db.execute(
        "CREATE FUNCTION shop.some_customers(n int) RETURNS SETOF shop.customers"
        " LANGUAGE plpgsql AS $$BEGIN"
        " RETURN QUERY SELECT * FROM shop.customers WHERE id <= n; END$$"
    )
    db.execute(
        "CREATE FUNCTION shop.is_first(i int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN"
        " RETURN EXISTS (SELECT 1 FROM shop.customers WHERE id = i AND id <= 3); END$$"
    )
    db.execute(
        "CREATE PROCEDURE shop.tally() LANGUAGE plpgsql AS $$DECLARE n int; BEGIN"
        " SELECT count(*) INTO n FROM shop.customers; PERFORM * FROM shop.t1; END$$"
    )
    # A large object of 300 emails (one value of a few KB, 2 KB a page).
    oid = db.execute(
        "SELECT lo_from_bytea(0, convert_to("
        "(SELECT string_agg(email, ',') FROM shop.customers WHERE id <= 300), 'UTF8'))"
    ).fetchone()[0]  # type: ignore[index]
    db.execute(f"GRANT SELECT ON LARGE OBJECT {oid} TO lo_reader")  # type: ignore[arg-type]
    db.execute("GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO file_reader")
    roles = "introspector, enumerator, backup, fn_reader, proc_runner, packer"
    db.execute(f"GRANT USAGE ON SCHEMA shop TO {roles}")
    db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA shop TO {roles}")
    db.execute(f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA shop TO {roles}")
    db.close()

    with psycopg.connect(pg.dsn("introspector", "corp"), application_name="psql") as conn:
        for query in INTROSPECTION:
            conn.execute(query).fetchall()  # type: ignore[arg-type]
    with psycopg.connect(pg.dsn("enumerator", "corp"), application_name="psql") as conn:
        for table in TABLES:
            truth.rows[table] = len(conn.execute(f"SELECT * FROM {table}").fetchall())
    with psycopg.connect(pg.dsn("fn_reader", "corp"), application_name="app") as conn:
        truth.rows["sql function"] = len(
            conn.execute("SELECT * FROM shop.all_customers()").fetchall()
        )
        truth.rows["plpgsql function"] = len(
            conn.execute("SELECT * FROM shop.some_customers(120)").fetchall()
        )
        truth.rows["function in where"] = len(
            conn.execute("SELECT * FROM shop.customers WHERE shop.is_first(id)").fetchall()
        )
    with psycopg.connect(pg.dsn("proc_runner", "corp"), autocommit=True) as conn:
        conn.execute("CALL shop.tally()")
        conn.execute(
            "DO $$DECLARE n int; BEGIN"
            " SELECT count(*) INTO n FROM shop.customers; PERFORM * FROM shop.t1; END$$"
        )
    # Data handed out by server functions, naming no table or only a catalog: large
    # objects (through pg_largeobject_metadata, then by number), their pages read
    # directly, and a file of the server's.
    with psycopg.connect(pg.dsn("lo_reader", "corp"), application_name="app") as conn:
        conn.execute("SELECT lo_get(oid) FROM pg_largeobject_metadata").fetchall()
        conn.execute(f"SELECT lo_get({oid})").fetchall()  # type: ignore[arg-type]
    with psycopg.connect(pg.dsn("lo_admin", "corp"), application_name="psql") as conn:
        truth.rows["pages"] = len(conn.execute("SELECT * FROM pg_largeobject").fetchall())
    with psycopg.connect(pg.dsn("file_reader", "corp"), application_name="psql") as conn:
        conn.execute("SELECT pg_read_binary_file('global/pg_control')").fetchall()
    # psql's \lo_export: libpq's large-object calls, through the fast-path protocol.
    exported = pg.base_dir / "exported.bin"
    subprocess.run(
        [str(pg.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "lo_admin",
         "-c", f"\\lo_export {oid} {exported}", "corp"],
        capture_output=True, check=True, env={**os.environ, "PGAPPNAME": "lo_export"},
    )  # fmt: skip
    truth.rows["lo_export bytes"] = exported.stat().st_size
    # A table packed into one value: one row to the client.
    with psycopg.connect(pg.dsn("packer", "corp"), application_name="packer") as conn:
        packed = conn.execute("SELECT json_agg(c) FROM shop.customers c").fetchone()[0]  # type: ignore[index]
        truth.rows["packed"] = len(packed)
    dump = subprocess.run(
        [str(pg.bin_dir / "pg_dump"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "backup",
         "-n", "shop", "corp"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    truth.dump_tables = sorted(
        line.split()[1] for line in dump.stdout.splitlines() if line.startswith("COPY ")
    )
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 'end-of-catalog-workload'")
    wait_for_logs(pg.log_dir, "end-of-catalog-workload")
    return pg.log_dir, truth


def events_of(workload: tuple[Path, Truth], output: str) -> pl.DataFrame:
    events, quarantine = parse(workload[0] / OUTPUTS[output])
    assert quarantine.total == 0, dict(quarantine.counts)
    return events


def day(events: pl.DataFrame, account: str) -> dict[str, Any]:
    """The account's whole workload as one window, every object new to it."""
    mine = events.filter(pl.col(S.ACCOUNT) == account).lazy()
    return F.window_activity(mine, "1d").collect().row(0, named=True)


def test_the_server_audits_catalog_reads(workload: tuple[Path, Truth]) -> None:
    """The premise: with log_catalog on, pgAudit names pg_catalog tables as READs."""
    text = (workload[0] / "postgresql.log").read_text()
    assert "READ,SELECT,TABLE,pg_catalog.pg_class," in text
    assert "information_schema.columns" in text


def test_introspection_is_statements_not_data_objects_or_volume(
    workload: tuple[Path, Truth], output: str
) -> None:
    events = events_of(workload, output)
    mine = events.filter(pl.col(S.ACCOUNT) == "introspector")
    assert set(mine.filter(pl.col(S.COMMAND) == "SELECT")[S.CLASS]) == {"CATALOG"}
    window = day(events, "introspector")
    assert window["statements"] >= len(INTROSPECTION)
    assert window["rows_read"] is None  # no data read: unknown, as with no read at all
    assert (window["objects"], window["new_objects"], window["exports"]) == (0, 0, 0)


def test_an_enumeration_of_data_tables_is_still_new_objects(
    workload: tuple[Path, Truth], output: str
) -> None:
    _, truth = workload
    window = day(events_of(workload, output), "enumerator")
    assert window["new_objects_list"] == TABLES
    assert window["rows_read"] == sum(truth.rows[t] for t in TABLES)


def test_pg_dump_exports_its_tables_and_its_catalog_queries_are_not_data(
    workload: tuple[Path, Truth], output: str
) -> None:
    """pg_dump with log_catalog on runs some fifty catalog queries (thousands of rows)
    and reads each sequence's state: none is a read, an object or an export; its copies
    of the tables are the export."""
    _, truth = workload
    events = events_of(workload, output)
    backup = events.filter(pl.col(S.ACCOUNT) == "backup")
    catalog = backup.filter(pl.col(S.CLASS) == "CATALOG")
    assert catalog.height > 20 and catalog[S.ROWS].sum() > 1000
    # its sequence's state, read as pg_dump reads every sequence: no data, no object
    sequence = backup.filter(pl.col(S.QUERY).str.contains("FROM shop.customer_ids"))
    assert sequence[S.CLASS].to_list() == ["CATALOG"]
    window = day(events, "backup")
    assert window["uncounted_exports"] == len(truth.dump_tables) == len(TABLES) + 1
    assert window["export_objects_list"] == truth.dump_tables
    assert window["objects_list"] == truth.dump_tables
    # set_config, pg_is_in_recovery, ...: the server's state, no rows read
    assert window["rows_read"] is None


def test_data_server_functions_hand_out_is_exported_data_not_catalog(
    workload: tuple[Path, Truth], output: str
) -> None:
    """Large objects and the server's files leave through functions: pgAudit logs their
    reads as READs of no table, or of ``pg_largeobject_metadata`` alone (before, classed a
    catalog read: no data, no object, no export). They are exports of what holds the data,
    their volume unknown (a row is a whole object or file); the pages of
    ``pg_largeobject``, read directly, are rows read of a table."""
    _, truth = workload
    events = events_of(workload, output)
    reader = day(events, "lo_reader")
    assert reader["exports"] == 2 and reader["uncounted_exports"] == 2
    assert reader["export_objects_list"] == ["pg_catalog.pg_largeobject"]
    assert reader["new_objects_list"] == ["pg_catalog.pg_largeobject"]
    assert reader["rows_read"] is None  # one row per object: no count of its contents
    admin = day(events, "lo_admin")
    assert admin["objects_list"] == ["pg_catalog.pg_largeobject"]
    assert admin["rows_read"] == truth.rows["pages"] >= 2
    files = day(events, "file_reader")
    assert files["export_objects_list"] == ["(server files)"]
    assert files["rows_read"] is None


def test_what_pgaudit_cannot_count_is_counted_as_it_logs_it(
    workload: tuple[Path, Truth], output: str
) -> None:
    """The README's limits, as the real server logs them: psql's ``\\lo_export`` of a
    large object (libpq's fast-path calls) logs no read at all, only libpq's lookup of
    the ``lo_*`` functions (a catalog read) around its BEGIN and COMMIT; a table packed
    into one value (``json_agg``) is a read of 1 row."""
    _, truth = workload
    events = events_of(workload, output)
    lo_export = events.filter(pl.col(S.APPLICATION) == "lo_export")
    assert truth.rows["lo_export bytes"] > 1000
    assert set(lo_export[S.CLASS]) == {"MISC", "CATALOG"}, lo_export
    assert not lo_export[S.EXPORT].any()
    packed = events.filter(pl.col(S.APPLICATION) == "packer", pl.col(S.CLASS) == "READ")
    assert packed.select(S.OBJECTS, S.ROWS).rows() == [(["shop.customers"], 1)]
    assert truth.rows["packed"] == 500  # what left in that one row


def test_a_read_through_a_function_counts_its_rows_once(
    workload: tuple[Path, Truth], output: str
) -> None:
    """pgAudit logs the function's inner SELECT (with its rows, once per call) and then
    the calling SELECT with the rows it returned: the rows are what the client got."""
    _, truth = workload
    events = events_of(workload, output)
    window = day(events, "fn_reader")
    assert window["rows_read"] == sum(
        truth.rows[k] for k in ("sql function", "plpgsql function", "function in where")
    )
    assert window["objects_list"] == ["shop.customers"]  # not the functions
    assert truth.rows["sql function"] == 500 and truth.rows["function in where"] == 3


def test_a_procedure_or_do_blocks_reads_all_count(
    workload: tuple[Path, Truth], output: str
) -> None:
    """``CALL p()`` (logged last, as MISC) and ``DO`` (logged first, as FUNCTION) read
    nothing themselves: each statement inside counts its rows (a count of 1 row, then
    the 7 rows of shop.t1), none is taken for a caller's nested read."""
    _, truth = workload
    window = day(events_of(workload, output), "proc_runner")
    assert window["rows_read"] == 2 * (1 + truth.rows["shop.t1"])
    assert window["objects_list"] == ["shop.customers", "shop.t1"]


@pytest.mark.parametrize(
    "caller",
    [
        "SELECT * FROM shop.all_customers()",
        "SELECT * FROM shop.some_customers(120)",
        "SELECT * FROM shop.customers WHERE shop.is_first(id)",
    ],
)
def test_serve_counts_a_functions_rows_once_when_its_caller_comes_in_the_next_read(
    workload: tuple[Path, Truth],
    output: str,
    caller: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The function's inner reads are logged before its caller: ``serve`` reading them
    in one poll and the caller in the next counts the rows once, as ``score`` does
    (before, the inner reads' rows were counted as well)."""
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    source = workload[0] / OUTPUTS[output]
    body = source.read_bytes()
    # The caller's READ line, logged last (after the function's EXECUTE and inner reads).
    at = body.rfind(b"\n", 0, body.rindex(caller.encode())) + 1
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / source.name
    service = follow(model.load(MODEL), tmp_path, [(log, body[:at]), (log, body[at:])])
    try:
        live = service.engine.open_activity().filter(pl.col(F.ACCOUNT) == "fn_reader")
        assert live["rows_read"].sum() == day(events_of(workload, output), "fn_reader")["rows_read"]
    finally:
        service.stop()
