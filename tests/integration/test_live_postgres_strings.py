"""Several statements sent as one query string, and ``PREPARE``, on a real PostgreSQL 15 +
pgAudit 1.7: what each statement exports and reads is what its own text says.

pgAudit logs every statement of one simple query (``psql -c "COPY a TO STDOUT; COPY b
TO STDOUT"``) with its own statement id and rows, but each with the whole string. It
logs ``PREPARE p AS SELECT ...`` as a 0-row READ naming no object, and each ``EXECUTE
p`` as the prepared SELECT (its rows, its tables) then a MISC ``EXECUTE``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from pg_cluster import PgCluster

from detector import features as F
from detector import schema as S
from tests.conftest import OUTPUTS, parse
from tests.integration.conftest import pg_cluster, wait_for_logs

pytestmark = pytest.mark.postgres

# Each account's psql -c strings (one -c, one session, each), and what each statement
# of them is: its command, the tables it names, whether it is an export.
STRINGS: dict[str, list[str]] = {
    "two_copies": ["COPY shop.customers TO STDOUT; COPY shop.orders TO STDOUT"],
    "select_copy": ["SELECT * FROM shop.customers WHERE id <= 3; COPY shop.orders TO STDOUT"],
    "copy_select": ["COPY shop.orders TO STDOUT; SELECT * FROM shop.customers WHERE id <= 4"],
    "copy_query": [
        "SELECT count(*) FROM shop.customers;"
        " COPY (SELECT * FROM shop.orders WHERE id <= 12) TO STDOUT;"
        " COPY shop.customers TO STDOUT"
    ],
    "two_queries": [
        "COPY (SELECT * FROM shop.orders WHERE id <= 5) TO STDOUT;"
        " COPY (SELECT * FROM shop.customers WHERE id <= 6) TO STDOUT"
    ],
    "in_transaction": ["BEGIN; COPY shop.orders TO STDOUT; COPY shop.customers TO STDOUT; COMMIT"],
    # the same string twice in one session (two -c of one psql)
    "sent_twice": ["COPY shop.customers TO STDOUT; COPY shop.orders TO STDOUT"] * 2,
    # a load, then a copy out: with pgaudit.log = 'read' the load is not logged
    "load_then_copy": ["COPY shop.imports FROM STDIN; COPY shop.orders TO STDOUT"],
}
# A row psql printed (COPY's tab-separated text, or -A's |-separated): not a command tag.
DATA_LINE = re.compile(r"^\d+(?:[\t|].*)?$", re.MULTILINE)
LOADED = "1\n2\n3\n\\.\n"  # what load_then_copy's psql reads from its standard input
CUSTOMERS, ORDERS = ["shop.customers"], ["shop.orders"]
# (command, objects, export, rows) of each account's reads and exports, in log order.
# COPY t TO logs no rows (unknown); a COPY (SELECT ...)'s SELECT carries them.
EXPECTED: dict[str, list[tuple[str, list[str], bool, int | None]]] = {
    "two_copies": [("COPY", CUSTOMERS, True, None), ("COPY", ORDERS, True, None)],
    "select_copy": [("SELECT", CUSTOMERS, False, 3), ("COPY", ORDERS, True, None)],
    "copy_select": [("COPY", ORDERS, True, None), ("SELECT", CUSTOMERS, False, 4)],
    "copy_query": [
        ("SELECT", CUSTOMERS, False, 1),
        ("SELECT", ORDERS, True, 12),
        ("COPY", ORDERS, True, None),
        ("COPY", CUSTOMERS, True, None),
    ],
    "two_queries": [
        ("SELECT", ORDERS, True, 5),
        ("COPY", ORDERS, True, None),
        ("SELECT", CUSTOMERS, True, 6),
        ("COPY", CUSTOMERS, True, None),
    ],
    "in_transaction": [("COPY", ORDERS, True, None), ("COPY", CUSTOMERS, True, None)],
    "sent_twice": [("COPY", CUSTOMERS, True, None), ("COPY", ORDERS, True, None)] * 2,
    "load_then_copy": [("COPY", ORDERS, True, None)],
}
ROLES = [*STRINGS, "preparer", "prepare_only", "prepare_string"]


@dataclass
class Truth:
    """What the clients saw: the data lines psql printed (rows out of COPY or SELECT),
    and rows fetched, per account."""

    lines: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def workload(pg: PgCluster) -> Truth:
    truth = Truth()
    admin = psycopg.connect(pg.dsn(), autocommit=True)
    for role in ROLES:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute("CREATE DATABASE corp")
    admin.close()
    with psycopg.connect(pg.dsn(dbname="corp"), autocommit=True) as db:
        db.execute("CREATE SCHEMA shop")
        db.execute("CREATE TABLE shop.customers(id int primary key, email text)")
        db.execute("CREATE TABLE shop.orders(id int primary key, total numeric)")
        db.execute(
            "INSERT INTO shop.customers SELECT g, 'u'||g||'@x.com' FROM generate_series(1,500) g"
        )
        db.execute("INSERT INTO shop.orders SELECT g, g % 97 FROM generate_series(1,2000) g")
        db.execute("CREATE TABLE shop.imports(id int)")
        db.execute("GRANT INSERT ON shop.imports TO load_then_copy")
        db.execute("GRANT USAGE ON SCHEMA shop TO " + ", ".join(ROLES))
        db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA shop TO " + ", ".join(ROLES))
    psql = [str(pg.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-d", "corp"]
    for role, strings in STRINGS.items():
        sent = [arg for string in strings for arg in ("-c", string)]
        out = subprocess.run(
            [*psql, "-U", role, "-A", "-t", *sent],
            input=LOADED, capture_output=True, text=True, check=True,
        )  # fmt: skip
        truth.lines[role] = len(DATA_LINE.findall(out.stdout))
    with psycopg.connect(pg.dsn("preparer", "corp"), autocommit=True) as conn:
        conn.execute("PREPARE q(int) AS SELECT * FROM shop.orders WHERE id <= $1")
        truth.rows["preparer"] = sum(
            len(conn.execute(f"EXECUTE q({n})").fetchall())  # type: ignore[arg-type]
            for n in (40, 9)
        )
    with psycopg.connect(pg.dsn("prepare_only", "corp"), autocommit=True) as conn:
        # prepared, never executed: shop.customers is not read
        conn.execute("PREPARE never AS SELECT * FROM shop.customers")
        truth.rows["prepare_only"] = len(
            conn.execute("SELECT * FROM shop.orders LIMIT 7").fetchall()
        )
    string = "PREPARE p AS SELECT * FROM shop.orders WHERE id <= 11; EXECUTE p"
    out = subprocess.run(
        [*psql, "-U", "prepare_string", "-A", "-t", "-c", string],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    truth.rows["prepare_string"] = len(DATA_LINE.findall(out.stdout))
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("DO $$BEGIN RAISE LOG 'end-of-strings-workload'; END$$")
    wait_for_logs(pg.log_dir, "end-of-strings-workload")
    return truth


SETTINGS = {
    "every class": {"pgaudit.log": "'read,write,ddl,role,misc'"},
    # BEGIN, COMMIT and EXECUTE's own line are not logged
    "read and write only": {"pgaudit.log": "'read,write'"},
    # nor a COPY ... FROM (WRITE)
    "read only": {"pgaudit.log": "'read'"},
    # no object named: the tables come from each statement's own text
    "log_relation off": {
        "pgaudit.log": "'read,write,ddl,role,misc'",
        "pgaudit.log_relation": "off",
    },
}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def strings(
    request: pytest.FixtureRequest, server_dir: Callable[[str], Path]
) -> Iterator[tuple[str, Path, Truth]]:
    name = str(request.param)
    with pg_cluster(server_dir("pg-strings"), SETTINGS[name]) as pg:
        yield name, Path(pg.log_dir), workload(pg)


def events_of(strings: tuple[str, Path, Truth], output: str) -> pl.DataFrame:
    events, quarantine = parse(strings[1] / OUTPUTS[output])
    assert dict(quarantine.counts) == {}
    return events


def day(events: pl.DataFrame, account: str) -> dict[str, Any]:
    mine = events.filter(pl.col(S.ACCOUNT) == account).lazy()
    return F.window_activity(mine, "1d").collect().row(0, named=True)


def test_the_server_logs_each_statement_of_a_string_with_the_whole_string(
    strings: tuple[str, Path, Truth],
) -> None:
    """The premise: both COPY lines of one string carry the whole string."""
    text = (strings[1] / "postgresql.log").read_text()
    both = "COPY shop.customers TO STDOUT; COPY shop.orders TO STDOUT,<none>,0"
    # two lines of two_copies, four of sent_twice
    assert text.count(f"READ,COPY,,,{both}") == 2 + 4


def test_each_copy_of_a_string_of_several_exports_its_own_table(
    strings: tuple[str, Path, Truth], output: str
) -> None:
    """Each ``COPY ... TO`` of a string is an export of its own table, wherever it
    stands, beside a SELECT, a ``COPY (SELECT ...)``, ``BEGIN``/``COMMIT`` or a ``COPY
    ... FROM`` (logged or not), or when the string is sent twice; the SELECTs beside
    them keep their rows and are no exports."""
    _, _, truth = strings
    events = events_of(strings, output)
    ids = pl.col(S.STATEMENT_ID).str.split_exact(".", 1).struct
    by_statement = [ids.field(f).cast(pl.Int64) for f in ("field_0", "field_1")]
    for account, expected in EXPECTED.items():
        mine = events.filter(
            pl.col(S.ACCOUNT) == account,
            pl.col(S.COMMAND).is_in(["SELECT", "COPY"]),
            pl.col(S.CLASS) == "READ",
        ).sort(by_statement)
        seen = list(mine.select(S.COMMAND, S.OBJECTS, S.EXPORT, S.ROWS).iter_rows())
        assert seen == expected, account
        exported = sorted({t for _, tables, export, _ in expected if export for t in tables})
        window = day(events, account)
        assert window["export_objects_list"] == exported, account
    # what psql printed: every COPY's table, whole
    assert truth.lines["two_copies"] == 500 + 2000
    assert truth.lines["copy_query"] == 1 + 12 + 500
    assert truth.lines["load_then_copy"] == 2000


def test_a_copy_of_a_query_among_several_counts_its_own_rows(
    strings: tuple[str, Path, Truth], output: str
) -> None:
    """``COPY (SELECT ...) TO`` after a SELECT in one string: its 12 rows are counted as
    exported rows of shop.orders (its SELECT's line carries them), and the plain COPY
    after it is an export of unknown size of shop.customers, not of shop.orders."""
    events = events_of(strings, output)
    window = day(events, "copy_query")
    assert window["export_rows"] == 12
    assert window["uncounted_exports"] == 1
    assert window["exports"] == 2
    assert window["rows_read"] == 1 + 12
    two = day(events, "two_queries")
    assert (two["export_rows"], two["uncounted_exports"], two["exports"]) == (5 + 6, 0, 2)


def test_a_prepare_reads_nothing_and_its_executions_read_their_rows(
    strings: tuple[str, Path, Truth], output: str
) -> None:
    """A ``PREPARE`` is a statement, not a read: no rows, no object (a table prepared
    over but never read is not a new object of its account), no export; each ``EXECUTE``
    reads its rows of its table, also when sent in one string with its ``PREPARE``."""
    _, _, truth = strings
    events = events_of(strings, output)
    prepares = events.filter(pl.col(S.COMMAND) == "PREPARE")
    assert prepares.height == 3
    assert set(prepares[S.CLASS]) == {"MISC"}
    assert prepares[S.OBJECTS].to_list() == [[]] * 3
    assert not prepares[S.EXPORT].any()
    only = day(events, "prepare_only")
    assert only["objects_list"] == only["new_objects_list"] == ORDERS
    assert only["rows_read"] == truth.rows["prepare_only"] == 7
    for account, rows in (("preparer", 40 + 9), ("prepare_string", 11)):
        window = day(events, account)
        assert window["rows_read"] == truth.rows[account] == rows
        assert window["objects_list"] == ORDERS
        assert window["exports"] == 0
