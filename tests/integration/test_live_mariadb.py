"""Real statements against a real MariaDB with the server_audit plugin and the slow
query log at long_query_time = 0: the parsed events must match what the client saw."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector import features as F
from detector import schema as S
from detector.pipeline import read_events
from detector.rejects import Quarantine

MULTILINE = """SELECT id,
       'a, quoted '' string\\\\n' AS note, email
  FROM shop.customers
 WHERE id <= 42"""


RETURNING = (
    "DELETE FROM notes WHERE id > 550 RETURNING *",
    "INSERT INTO kept SELECT * FROM notes WHERE id <= 100 RETURNING *",
    "INSERT INTO kept VALUES (1001, 'x') RETURNING id",
)


METADATA = (
    "SHOW GLOBAL STATUS",
    "SHOW TABLES",
    "SHOW CREATE TABLE customers",
    "DESCRIBE customers",
    "EXPLAIN SELECT * FROM customers WHERE id <= 10",
)
INSERTED = (
    "INSERT INTO tickets (body) VALUES ('a'), ('b'), ('c')",
    "SELECT * FROM tickets WHERE id >= LAST_INSERT_ID()",
)


@dataclass
class Truth:
    rows: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # bytes of client output


def lines(out: bytes) -> int:
    return len(out.splitlines())


@pytest.fixture(scope="module")
def workload(mariadb: Any) -> tuple[Path, Path, Truth]:
    truth = Truth()
    mariadb.sql(
        "CREATE DATABASE shop; USE shop;"
        "CREATE TABLE shop.customers(id int primary key, email varchar(64), card varchar(64));"
        "INSERT INTO shop.customers SELECT seq, concat('u', seq, '@x.com'), md5(seq) FROM seq_1_to_5000;"
        "CREATE TABLE shop.orders(id int primary key, customer_id int, total int);"
        "INSERT INTO shop.orders SELECT seq, 1 + seq % 5000, seq % 97 FROM seq_1_to_20000;"
        + "".join(
            f"CREATE USER '{u}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON shop.* TO '{u}'@'%';"
            for u in ("reader", "exporter", "failer")
        )
        + "GRANT FILE ON *.* TO 'exporter'@'%'; GRANT LOCK TABLES ON shop.* TO 'exporter'@'%';"
    )
    select = "SELECT * FROM customers WHERE id <= 1234"
    out = mariadb.client("reader", "pw", "shop", select).stdout
    truth.rows["select"], truth.received["select"] = lines(out), len(out)
    join = (
        "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id"
        " WHERE c.id <= 10"
    )
    truth.rows["join"] = lines(mariadb.client("reader", "pw", "shop", join).stdout)
    truth.rows["multiline"] = lines(mariadb.client("reader", "pw", "shop", MULTILINE).stdout)
    failed = mariadb.client("failer", "pw", "shop", "SELECT * FROM nonexist", check=False)
    assert failed.returncode != 0
    refused = mariadb.client("failer", "wrong", "shop", "SELECT 1", check=False)
    assert refused.returncode != 0
    dump = mariadb.dump("exporter", "pw", "shop", "customers")
    # Row tuples in the dump: one INSERT per batch, rows joined by "),(" or, in
    # mariadb-dump 10.11, one per line ("),\n(").
    truth.rows["dump"] = dump.count(b"INSERT INTO") + dump.count(b"),(") + dump.count(b"),\n(")
    assert truth.rows["dump"] == 5000, "every row of shop.customers is in the dump"
    outfile = mariadb.base_dir / "out.txt"
    mariadb.client(
        "exporter", "pw", "shop", f"SELECT * FROM orders WHERE id <= 777 INTO OUTFILE '{outfile}'"
    )
    truth.rows["outfile"] = 777
    # A file of the server's read out through SQL (the FILE privilege): one row, the file.
    secret = mariadb.base_dir / "secret.txt"
    secret.write_text("x" * 5000)
    secret.chmod(0o644)
    read = mariadb.client("exporter", "pw", "shop", f"SELECT LOAD_FILE('{secret}')").stdout
    assert len(read) > 5000  # the file, not NULL: the server could read it
    # Stored procedures: the slow log logs the CALL (with what it sent), not its statements.
    mariadb.sql(
        "CREATE PROCEDURE shop.customers_upto(n int)"
        " SELECT * FROM shop.customers WHERE id <= n;"
        "CREATE USER 'caller'@'%' IDENTIFIED BY 'pw';"
        "GRANT SELECT, EXECUTE ON shop.* TO 'caller'@'%';"
    )
    mariadb.sql(
        "DELIMITER //\nCREATE PROCEDURE shop.two_reads() BEGIN"
        " SELECT * FROM shop.orders WHERE id <= 10; SELECT count(*) FROM shop.orders; END//"
    )
    call = mariadb.client("caller", "pw", "shop", "CALL customers_upto(1500)").stdout
    truth.rows["call"] = lines(call)
    truth.rows["call two reads"] = lines(
        mariadb.client("caller", "pw", "shop", "CALL two_reads()").stdout
    )
    introspect = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop'"
    truth.rows["introspection"] = lines(mariadb.client("caller", "pw", "shop", introspect).stdout)
    # A monitor's and a client's questions about the server: no table's data.
    mariadb.sql(
        "CREATE USER 'monitor'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON shop.* TO 'monitor'@'%';"
    )
    for statement in METADATA:
        truth.rows[statement] = lines(mariadb.client("monitor", "pw", "shop", statement).stdout)
    # Writes that send back the rows they changed (DELETE/INSERT ... SELECT ... RETURNING)
    mariadb.sql(
        "USE shop; CREATE TABLE shop.notes(id int primary key, body varchar(64));"
        "INSERT INTO shop.notes SELECT seq, concat('b', seq) FROM seq_1_to_600;"
        "CREATE TABLE shop.kept(id int primary key, body varchar(64));"
        "CREATE USER 'returner'@'%' IDENTIFIED BY 'pw';"
        "GRANT ALL ON shop.notes TO 'returner'@'%'; GRANT ALL ON shop.kept TO 'returner'@'%';"
    )
    for statement in RETURNING:
        truth.rows[statement] = lines(mariadb.client("returner", "pw", "shop", statement).stdout)
    # An AUTO_INCREMENT insert, then a read of what it made by LAST_INSERT_ID().
    mariadb.sql(
        "CREATE TABLE shop.tickets(id int auto_increment primary key, body varchar(64));"
        "CREATE USER 'app'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON shop.tickets TO 'app'@'%';"
    )
    mariadb.client("app", "pw", "shop", INSERTED[0])
    truth.rows[INSERTED[1]] = lines(mariadb.client("app", "pw", "shop", ";".join(INSERTED)).stdout)
    mariadb.client("reader", "pw", "shop", "SELECT 'the end'")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "the end" not in mariadb.slow_log.read_text(
        errors="replace"
    ):
        time.sleep(0.1)
    return mariadb.audit_log, mariadb.slow_log, truth


def parse(*paths: Path) -> pl.DataFrame:
    quarantine = Quarantine(None)
    events, _ = read_events(list(paths), quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    return events


def one(ev: pl.DataFrame, text: str, account: str) -> dict[str, Any]:
    got = ev.filter(pl.col(S.QUERY) == text, pl.col(S.ACCOUNT) == account)
    assert got.height == 1, got
    return got.row(0, named=True)


def test_formats_are_detected(workload: tuple[Path, Path, Truth]) -> None:
    audit, slow, _ = workload
    assert set(parse(audit)[S.SOURCE_FORMAT]) == {"mariadb-audit"}
    assert set(parse(slow)[S.SOURCE_FORMAT]) == {"mariadb-slow"}


def test_audit_log_alone_names_objects_and_failures_without_volume(
    workload: tuple[Path, Path, Truth],
) -> None:
    audit, _, _ = workload
    ev = parse(audit)
    select = one(ev, "SELECT * FROM customers WHERE id <= 1234", "reader")
    assert select[S.OBJECTS] == ["shop.customers"] and select[S.CLASS] == "READ"
    assert select[S.ROWS] is None and select[S.BYTES] is None
    multi = one(ev, MULTILINE, "reader")
    assert multi[S.OBJECTS] == ["shop.customers"]
    failed = one(ev, "SELECT * FROM nonexist", "failer")
    assert failed[S.SUCCESS] is False and failed[S.CLASS] == "ERROR"
    refused = ev.filter(pl.col(S.CLASS) == "CONNECT", pl.col(S.ACCOUNT) == "failer")
    assert refused.height == 1 and refused[S.SUCCESS].to_list() == [False]


def test_slow_log_alone_counts_rows_and_bytes(workload: tuple[Path, Path, Truth]) -> None:
    _, slow, truth = workload
    ev = parse(slow)
    select = one(ev, "SELECT * FROM customers WHERE id <= 1234", "reader")
    assert select[S.ROWS] == truth.rows["select"] == 1234
    # Bytes_sent counts the wire protocol (headers, metadata), more than the text shown.
    assert select[S.BYTES] >= truth.received["select"] * 0.5
    assert one(ev, MULTILINE, "reader")[S.ROWS] == 42


def test_both_logs_join_to_per_statement_truth(workload: tuple[Path, Path, Truth]) -> None:
    audit, slow, truth = workload
    ev = parse(audit, slow)
    reader = ev.filter(pl.col(S.ACCOUNT) == "reader")
    assert set(reader[S.SOURCE_FORMAT]) == {"mariadb-audit"}  # every slow record matched
    select = one(ev, "SELECT * FROM customers WHERE id <= 1234", "reader")
    assert (select[S.ROWS], select[S.OBJECTS]) == (1234, ["shop.customers"])
    assert select[S.BYTES] is not None and select[S.BYTES] > 0
    join = one(
        ev,
        "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id"
        " WHERE c.id <= 10",
        "reader",
    )
    assert join[S.ROWS] == truth.rows["join"]
    assert set(join[S.OBJECTS]) == {"shop.customers", "shop.orders"}
    assert one(ev, MULTILINE, "reader")[S.ROWS] == truth.rows["multiline"]
    failed = one(ev, "SELECT * FROM nonexist", "failer")
    assert failed[S.SUCCESS] is False
    per_account = (
        ev.filter(pl.col(S.CLASS) == "READ", ~pl.col(S.EXPORT))
        .group_by(S.ACCOUNT)
        .agg(pl.col(S.ROWS).sum())
    )
    reads = dict(per_account.iter_rows())
    assert (
        reads["reader"] == truth.rows["select"] + truth.rows["join"] + truth.rows["multiline"] + 1
    )  # SELECT 'the end'


def test_dump_and_outfile_are_exports_of_their_tables(workload: tuple[Path, Path, Truth]) -> None:
    audit, slow, truth = workload
    ev = parse(audit, slow).filter(pl.col(S.ACCOUNT) == "exporter", pl.col(S.EXPORT))
    dump = ev.filter(pl.col(S.QUERY).str.contains("SQL_NO_CACHE", literal=True))
    assert dump[S.OBJECTS].to_list() == [["shop.customers"]]
    assert dump[S.ROWS].to_list() == [5000]
    outfile = ev.filter(pl.col(S.QUERY).str.contains("INTO OUTFILE", literal=True))
    assert outfile[S.OBJECTS].to_list() == [["shop.orders"]]
    assert outfile[S.ROWS].to_list() == [truth.rows["outfile"]]


@pytest.mark.parametrize("logs", ["both", "audit", "slow"])
def test_a_server_file_read_through_sql_is_an_export_of_server_files(
    workload: tuple[Path, Path, Truth], logs: str
) -> None:
    """``SELECT LOAD_FILE('/path')`` names no table in either log, and the slow log counts
    the 5,000-byte file as 1 row sent: an export of ``(server files)`` (before, a 1-row
    read of nothing), its rows unknown and its size the bytes sent, where logged."""
    audit, slow, _ = workload
    paths = {"both": [audit, slow], "audit": [audit], "slow": [slow]}[logs]
    ev = parse(*paths).filter(pl.col(S.QUERY).str.contains("LOAD_FILE", literal=True))
    assert ev.select(S.ACCOUNT, S.OBJECTS, S.CLASS, S.EXPORT, S.ROWS).rows() == [
        ("exporter", ["(server files)"], "READ", True, None)
    ]
    sent = ev[S.BYTES].item()
    assert sent is None if logs == "audit" else sent > 5000


def test_a_procedures_rows_are_read_once_from_its_tables(
    workload: tuple[Path, Path, Truth],
) -> None:
    """``CALL p()``: the slow log has one record for the CALL (the rows it sent) and none
    for the procedure's statements; the audit log names ``mysql.proc`` for the CALL and
    gives the procedure's statements as QUERY records. The CALL is a read of what it
    sent; the objects are the statements' tables, not the server's catalog."""
    audit, slow, truth = workload
    ev = parse(audit, slow).filter(pl.col(S.ACCOUNT) == "caller")
    assert truth.rows["call"] == 1500 and truth.rows["call two reads"] == 11
    calls = ev.filter(pl.col(S.COMMAND) == "CALL")
    assert calls[S.CLASS].to_list() == ["READ", "READ"]
    assert calls[S.ROWS].to_list() == [truth.rows["call"], truth.rows["call two reads"]]
    assert calls[S.OBJECTS].to_list() == [[], []]
    window = F.window_activity(ev.lazy(), "1d").collect().row(0, named=True)
    assert window["rows_read"] == truth.rows["call"] + truth.rows["call two reads"]
    assert window["bytes_read"] > 1500 * 5
    assert window["objects_list"] == ["shop.customers", "shop.orders"]


def test_a_read_of_the_servers_catalog_is_not_a_data_read(
    workload: tuple[Path, Path, Truth],
) -> None:
    audit, slow, truth = workload
    ev = parse(audit, slow).filter(pl.col(S.ACCOUNT) == "caller")
    introspection = ev.filter(pl.col(S.QUERY).str.contains("information_schema", literal=True))
    assert introspection[S.CLASS].to_list() == ["CATALOG"]
    assert introspection[S.ROWS].to_list() == [truth.rows["introspection"]]
    window = F.window_activity(ev.lazy(), "1d").collect().row(0, named=True)
    assert not any(o.startswith(("information_schema.", "mysql.")) for o in window["objects_list"])


@pytest.mark.parametrize("logs", ["slow", "both"])
def test_what_the_server_says_of_itself_is_no_data_read(
    workload: tuple[Path, Path, Truth], logs: str
) -> None:
    """``SHOW GLOBAL STATUS`` sends hundreds of rows of the server's counters, ``SHOW``,
    ``DESCRIBE`` and ``EXPLAIN`` a table's or a plan's description: no row of any table.
    They are CATALOG reads, as a read of information_schema is (before: READs of their
    rows, a monitoring account reading 600 rows a minute, and of a table named after the
    schema, ``shop.shop``)."""
    audit, slow, truth = workload
    ev = parse(audit, slow) if logs == "both" else parse(slow)
    ev = ev.filter(pl.col(S.ACCOUNT) == "monitor")
    assert truth.rows["SHOW GLOBAL STATUS"] > 100
    for statement in METADATA:
        assert one(ev, statement, "monitor")[S.CLASS] == "CATALOG", statement
    window = F.window_activity(ev.lazy(), "1d").collect().row(0, named=True)
    assert not window["rows_read"] and window["objects_list"] == []  # none (null) read


@pytest.mark.parametrize("logs", ["slow", "both"])
def test_rows_a_write_sends_back_are_rows_read(
    workload: tuple[Path, Path, Truth], logs: str
) -> None:
    """``DELETE ... RETURNING *`` sends the rows it deleted; 10.11 logs them as Rows_sent
    with Rows_affected 0 (before: a write of 0 rows, the table read out unseen). An
    ``INSERT ... VALUES ... RETURNING id`` sends back what the client sent: no read."""
    audit, slow, truth = workload
    ev = parse(audit, slow) if logs == "both" else parse(slow)
    ev = ev.filter(pl.col(S.ACCOUNT) == "returner")
    deleted, copied, inserted = (one(ev, statement, "returner") for statement in RETURNING)
    assert (truth.rows[RETURNING[0]], truth.rows[RETURNING[1]]) == (50, 100)
    assert (deleted[S.CLASS], deleted[S.ROWS]) == ("READ", 50)
    assert (copied[S.CLASS], copied[S.ROWS]) == ("READ", 100)
    assert "shop.notes" in deleted[S.OBJECTS] and "shop.notes" in copied[S.OBJECTS]
    assert inserted[S.CLASS] == "WRITE"


@pytest.mark.parametrize("logs", ["slow", "both"])
def test_inserts_of_auto_increment_keys_and_reads_of_them_are_statements(
    workload: tuple[Path, Path, Truth], logs: str
) -> None:
    """An AUTO_INCREMENT insert and a read of ``LAST_INSERT_ID()``, every application's
    pair: MariaDB 10.11 marks both ``SET timestamp=T;`` in the slow log, where MySQL
    writes ``SET insert_id=N,timestamp=T;`` and ``SET last_insert_id=N,timestamp=T;``
    (tests/formats/test_mariadb_slow.py)."""
    audit, slow, truth = workload
    assert "insert_id=" not in slow.read_text(errors="replace")
    ev = parse(audit, slow) if logs == "both" else parse(slow)
    ev = ev.filter(pl.col(S.ACCOUNT) == "app")
    assert ev.filter(pl.col(S.QUERY) == INSERTED[0]).height == 2
    read = one(ev, INSERTED[1], "app")
    assert (read[S.CLASS], read[S.ROWS]) == ("READ", truth.rows[INSERTED[1]]) == ("READ", 3)
    assert abs(read[S.TIME] - datetime.now(UTC)) < timedelta(hours=1)  # T, not N
