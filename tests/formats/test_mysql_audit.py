"""MySQL Enterprise Audit / Percona ``audit_log_filter`` JSON facts, checked on records
quoted from the MySQL and Percona manuals (tests/fixtures/mysql-audit, sources in its
README), and on workloads built here from those documented record shapes; then fuzzed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import formats
from detector import schema as S
from detector.formats.mysql_audit import NAME, MysqlAudit, finish
from detector.reader import head_lines
from detector.rejects import Reason
from tests.conftest import FIXTURES, parse
from tests.formats.common import (
    FUZZ,
    RANDOM_BYTES,
    WHITE_SPACE,
    assert_no_other_format_sniffs,
    foreign_logs,
    garbage_bytes,
    insertions,
    parse_chunks,
    parse_cut,
    read_bytes,
    read_clean,
    with_inserted,
)

HERE = FIXTURES / "mysql-audit"
MANUAL = HERE / "mysql-manual-examples.json"
STATISTICS = HERE / "mysql-query-statistics.json"
PERCONA_80 = HERE / "percona-8.0-audit-filter.json"
PERCONA_97 = HERE / "percona-9.7-audit-filter.json"
PERCONA_97_JSONL = HERE / "percona-9.7-audit-filter.jsonl"
OURS = sorted(p for p in HERE.iterdir() if p.suffix in {".json", ".jsonl"})


def clean(path: Path) -> pl.DataFrame:
    return read_clean(path, NAME)


def one(frame: pl.DataFrame, text: str) -> dict[str, Any]:
    got = frame.filter(pl.col(S.QUERY) == text)
    assert got.height == 1, got
    return got.row(0, named=True)


# Records built from the documented shape (the MySQL manual's "JSON Audit Log File
# Format": timestamp, id, class, event, connection_id, account, login, general_data,
# table_access_data, connection_data, query_statistics), with values of our own.
def rec(
    klass: str, event: str, *, conn: int = 7, ts: str = "2026-03-02 10:00:00", **data: Any
) -> dict[str, Any]:
    return {
        "timestamp": ts,
        "id": data.pop("id", 0),
        "class": klass,
        "event": event,
        "connection_id": conn,
        "account": {"user": data.pop("user", "web_shop"), "host": "%"},
        "login": {"user": "web_shop", "os": "", "ip": data.pop("ip", "10.0.0.7"), "proxy": ""},
        **data,
    }


def connect(
    *, db: str = "shop", status: int = 0, program: str = "php", **kw: Any
) -> dict[str, Any]:
    attrs = {"_client_name": "libmysql", "program_name": program}
    data = {"connection_type": "tcp/ip", "status": status, "db": db, "connection_attributes": attrs}
    return rec("connection", "connect", connection_data=data, **kw)


def table(event: str, name: str, query: str, db: str = "shop", **kw: Any) -> dict[str, Any]:
    data = {"db": db, "table": name, "query": query, "sql_command": "select"}
    return rec("table_access", event, table_access_data=data, **kw)


def status(
    query: str, *, code: int = 0, stats: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    general = {"command": "Query", "sql_command": "select", "query": query, "status": code}
    extra: dict[str, Any] = {} if stats is None else {"query_statistics": stats}
    return rec("general", "status", general_data=general, **extra, **kw)


def log_text(records: list[dict[str, Any]], *, closed: bool = True) -> str:
    """A MySQL JSON audit log: ``[``, one record per line with its ``,``, ``]``."""
    body = ",\n".join(json.dumps(r) for r in records)
    return "[\n" + body + ("\n]\n" if closed else ",\n")


def write(tmp: Path, text: str | bytes, name: str = "audit.json") -> Path:
    path = tmp / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def stats(seconds: float, rows: int, examined: int, received: int, sent: int) -> dict[str, Any]:
    """A ``query_statistics`` hash as the manual's filter prints it (query_time a double)."""
    return {
        "query_time": seconds,
        "rows_sent": rows,
        "rows_examined": examined,
        "bytes_received": received,
        "bytes_sent": sent,
    }


# A web account's statements, with a dump by the same account among them.
DUMP = "SELECT /*!40001 SQL_NO_CACHE */ * FROM `customers`"
JOIN = "SELECT o.id FROM orders o JOIN orders p ON o.id=p.id"
COPY = "INSERT INTO archive.carts SELECT * FROM carts"
WORKLOAD = [
    rec("audit", "startup", conn=0, startup_data={"server_id": 1}),
    connect(program="mysqldump"),
    table("read", "customers", DUMP, id=1),
    status(DUMP, id=2, stats=stats(1.5, 20000, 20000, 60, 2_400_000)),
    table("read", "orders", JOIN, id=3),
    table("read", "orders", JOIN, id=4),
    status(JOIN, id=5, stats=stats(0.002, 12, 24, 70, 300)),
    table("read", "carts", COPY, id=6),
    table("insert", "carts", COPY, db="archive", id=7),
    status(COPY, id=8, stats=stats(0.3, 0, 500, 50, 11)),
    status("SELECT * FROM missing", code=1146, id=9),
    status("USE archive", id=10),
    status("SELECT count(*) FROM carts", id=11, ts="2026-03-02 10:00:01"),
    status("SELECT * FROM customers INTO OUTFILE '/tmp/c.csv'", id=0, ts="2026-03-02 10:00:02"),
    connect(conn=8, status=1045, user="", ip="203.0.113.9", ts="2026-03-02 10:00:03"),
    rec("connection", "disconnect", ts="2026-03-02 10:00:04", connection_data={}),
]


@pytest.fixture
def workload(tmp_path: Path) -> pl.DataFrame:
    return clean(write(tmp_path, log_text(WORKLOAD)))


# -- detection ---------------------------------------------------------------------------


def test_autodetected() -> None:
    for path in OURS:
        assert formats.detect(path, head_lines(path)) == NAME, path


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_sniff_claims_every_fixture(path: Path) -> None:
    assert MysqlAudit().sniff(head_lines(path))


@pytest.mark.parametrize("path", foreign_logs(HERE.name), ids=str)
def test_sniff_claims_no_other_log(path: Path) -> None:
    assert not MysqlAudit().sniff(head_lines(path))


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_no_other_format_claims_a_mysql_audit_log(path: Path) -> None:
    assert_no_other_format_sniffs(path, NAME)


# -- facts on the vendors' records ---------------------------------------------------------


def test_manual_examples_as_printed() -> None:
    # The manual's connect example elides attributes with "..." and its query-statistics
    # example has curly quotes and a missing comma: as printed they are not JSON, and
    # every line of both is quarantined. The rest are parsed.
    frame, quarantine = parse(MANUAL, NAME)
    assert quarantine.counts == {Reason.INVALID_JSON.value: 16 + 16}
    show = one(frame, "SHOW VARIABLES")
    assert (show[S.ACCOUNT], show[S.CLIENT_IP], show[S.SESSION]) == ("root", "::1", "5")
    assert show[S.CLASS] == "READ" and show[S.COMMAND] == "SHOW" and show[S.OBJECTS] == []
    assert show[S.ROWS] is None and show[S.BYTES] is None and show[S.DURATION_MS] is None
    assert show[S.DB_SYSTEM] == "mysql" and show[S.SOURCE_FORMAT] == NAME
    assert show[S.TIME].isoformat() == "2019-10-03T14:23:35+00:00"
    # The table access example has no status record after it: its own event.
    insert = one(frame, "INSERT INTO t1 (i) VALUES(1),(2),(3)")
    assert insert[S.OBJECTS] == ["test.t1"] and insert[S.CLASS] == "WRITE"
    assert insert[S.DATABASE] == "test" and insert[S.CLIENT_IP] == "127.0.0.1"
    assert frame.height == 2


def test_query_statistics_give_rows_bytes_and_duration() -> None:
    ev = one(clean(STATISTICS), "INSERT INTO audit_table VALUES(4)")
    assert (ev[S.ACCOUNT], ev[S.CLIENT_IP]) == ("user", "127.0.0.1")
    assert ev[S.CLASS] == "ERROR" and ev[S.SUCCESS] is False  # status 1146
    assert ev[S.ROWS] == 3 and ev[S.BYTES] == 18384
    assert ev[S.DURATION_MS] == pytest.approx(116.25)  # "query_time": 0.116250 s
    assert ev[S.OBJECTS] == ["audit_table"]  # failed: from its text, no database known


def test_percona_80_general_log_is_not_a_second_statement() -> None:
    frame = clean(PERCONA_80)
    ev = one(frame, "CREATE TABLE t1 (c1 INT)")
    assert frame.height == 1  # general/log and general/status of one statement
    assert ev[S.ACCOUNT] == "root"  # from "root[root] @ localhost []"
    assert ev[S.CLIENT_IP] == "localhost" and ev[S.CLASS] == "DDL"


def test_percona_pretty_json_and_jsonl_give_the_same_events() -> None:
    pretty, jsonl = clean(PERCONA_97), clean(PERCONA_97_JSONL)
    assert pretty.equals(jsonl)
    ev = one(pretty, "SELECT c FROM sbtest2 WHERE id BETWEEN 83000 AND 83099")
    assert ev[S.OBJECTS] == ["test.sbtest2"] and ev[S.CLASS] == "READ"
    assert ev[S.SESSION] == "40" and ev[S.ROWS] is None


def test_context_records_are_counted_not_rejected() -> None:
    for path, context in ((PERCONA_80, 6), (PERCONA_97, 2), (MANUAL, 3)):
        assert parse_chunks(MysqlAudit(), path).context == context, path


# -- facts on a workload built from the documented shape ------------------------------------


def test_dump_is_an_export_with_its_rows_bytes_and_program(workload: pl.DataFrame) -> None:
    dump = one(workload, DUMP)
    assert dump[S.EXPORT] is True and dump[S.CLASS] == "READ"
    assert dump[S.OBJECTS] == ["shop.customers"]
    assert (dump[S.ROWS], dump[S.BYTES]) == (20000, 2_400_000)
    assert dump[S.DURATION_MS] == pytest.approx(1500)
    assert dump[S.APPLICATION] == "mysqldump" and dump[S.DATABASE] == "shop"
    assert dump[S.ACCOUNT] == "web_shop" and dump[S.CLIENT_IP] == "10.0.0.7"


def test_table_records_fold_into_one_statement(workload: pl.DataFrame) -> None:
    join = one(workload, JOIN)
    assert join[S.OBJECTS] == ["shop.orders"] and join[S.ROWS] == 12
    copy = one(workload, COPY)
    assert copy[S.OBJECTS] == ["shop.carts", "archive.carts"] and copy[S.CLASS] == "WRITE"
    assert copy[S.ROWS] is None  # rows written are not in the log (rows_sent is 0)
    assert workload.filter(
        pl.col(S.STATEMENT_ID).is_null() & (pl.col(S.CLASS) != "CONNECT")
    ).is_empty()


def test_failures_and_refused_logins(workload: pl.DataFrame) -> None:
    failed = one(workload, "SELECT * FROM missing")
    assert failed[S.CLASS] == "ERROR" and failed[S.SUCCESS] is False
    assert failed[S.OBJECTS] == ["shop.missing"]  # from the text, in the connection's db
    login = workload.filter(pl.col(S.CLASS) == "CONNECT").row(0, named=True)
    assert login[S.SUCCESS] is False and login[S.ACCOUNT] == "web_shop"  # the name tried
    assert login[S.CLIENT_IP] == "203.0.113.9" and login[S.QUERY] == "login refused, error 1045"
    # Statements without query_statistics: volume unknown, not zero.
    assert failed[S.ROWS] is None and failed[S.BYTES] is None


def test_use_changes_the_database_and_outfile_is_an_export(workload: pl.DataFrame) -> None:
    count = one(workload, "SELECT count(*) FROM carts")
    assert count[S.DATABASE] == "archive" and count[S.OBJECTS] == ["archive.carts"]
    outfile = one(workload, "SELECT * FROM customers INTO OUTFILE '/tmp/c.csv'")
    assert outfile[S.EXPORT] is True and outfile[S.OBJECTS] == ["archive.customers"]
    assert workload.height == 8  # 7 statements and 1 refused login
    assert workload[S.STATEMENT_ID].drop_nulls().is_unique().all()


def test_statistics_printed_as_strings_or_microseconds(tmp_path: Path) -> None:
    # Percona prints the statistics as strings; a longlong query_time is microseconds.
    records = [
        status("SELECT 1", id=1, stats={"query_time": "0.5", "rows_sent": "5", "bytes_sent": "80"}),
        status("SELECT 2", id=2, stats={"query_time": 116250, "rows_sent": 1, "bytes_sent": None}),
    ]
    frame = clean(write(tmp_path, log_text(records)))
    first, second = one(frame, "SELECT 1"), one(frame, "SELECT 2")
    assert (first[S.ROWS], first[S.BYTES], first[S.DURATION_MS]) == (5, 80, 500.0)
    assert second[S.DURATION_MS] == pytest.approx(116.25) and second[S.BYTES] is None


def test_an_open_file_without_its_closing_bracket_is_read(tmp_path: Path) -> None:
    frame = clean(write(tmp_path, log_text(WORKLOAD, closed=False)))
    assert frame.height == 8


# -- chunks -------------------------------------------------------------------------------


def _by_chunks(text: str, cuts: list[int]) -> pl.DataFrame:
    """Events of ``text`` parsed as chunks cut before the given line indexes."""
    return finish(parse_cut(MysqlAudit(), "audit.json", text, cuts))


def test_the_same_events_whether_read_whole_or_split_anywhere() -> None:
    text = log_text(WORKLOAD)
    whole = _by_chunks(text, [])
    # The connection's database and program come from its connect record: a statement
    # parsed in another chunk than its connect does not know them (and names the tables
    # of its text without a database). Everything else is the same.
    unaffected = [c for c in whole.columns if c not in (S.DATABASE, S.APPLICATION, S.OBJECTS)]
    for cut in range(1, text.count("\n")):
        split = _by_chunks(text, [cut])
        assert split.select(unaffected).equals(whole.select(unaffected)), cut
        for was, now in zip(whole.iter_rows(named=True), split.iter_rows(named=True), strict=True):
            assert now[S.DATABASE] in (was[S.DATABASE], None), cut
            bare = [o.removeprefix(f"{was[S.DATABASE]}.") for o in was[S.OBJECTS]]
            unqualified = now[S.DATABASE] is None and now[S.OBJECTS] == bare
            assert now[S.OBJECTS] == was[S.OBJECTS] or unqualified, cut


def test_a_statement_cut_from_its_tables_is_put_back_together() -> None:
    text = log_text(WORKLOAD)
    cut = 9  # after the INSERT ... SELECT's read of shop.carts, before its insert record
    assert '"table": "carts"' in text.splitlines()[cut - 1]
    tiny = _by_chunks(text, [cut])
    copy = one(tiny, COPY)
    assert copy[S.OBJECTS] == ["shop.carts", "archive.carts"]
    assert tiny.height == 8  # no table access left over as an event of its own


def test_pretty_records_are_never_cut_by_small_chunks() -> None:
    whole = clean(PERCONA_80)
    tiny = parse_chunks(MysqlAudit(), PERCONA_80, 200, join=False)
    assert tiny.chunks > 5 and tiny.rejects.is_empty()
    assert finish(tiny.events).equals(whole)


# -- fuzz ---------------------------------------------------------------------------------

LINES = log_text(WORKLOAD).encode().splitlines()
TORTURE = [
    b"{", b"}", b"[", b"]", b",", b'"', b'\\"', b"\\", b"{\"class\":", b"\xff\xfe", b"\x00",
    b"\xc3", b"x" * 5000, b'"timestamp": "2026-13-45 99:99:99"', b"[" * 300, b"{" * 300,
]  # fmt: skip


@FUZZ
@given(data=RANDOM_BYTES)
def test_random_bytes_never_crash(data: bytes) -> None:
    read_bytes(data, NAME)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(PERCONA_80.read_bytes())))
def test_truncated_files_never_crash(cut: int) -> None:
    events, _, _ = read_bytes(PERCONA_80.read_bytes()[:cut], NAME)
    assert events.height <= 1


GARBAGE = garbage_bytes(TORTURE).filter(
    lambda b: b.decode("utf-8", "replace").strip() not in ("", "[", "]")
)


@FUZZ
@given(inserts=insertions(GARBAGE, 1, len(LINES) - 1))
def test_garbage_lines_are_all_quarantined_and_real_records_kept(
    inserts: list[tuple[int, bytes]],
) -> None:
    lines = with_inserted(LINES, inserts)
    events, quarantine, _ = read_bytes(b"\n".join(lines) + b"\n", NAME)
    assert quarantine.total == len(inserts)
    reference, _, _ = read_bytes(b"\n".join(LINES) + b"\n", NAME)
    assert events.equals(reference)


@FUZZ
@given(text=st.text(max_size=60))
def test_any_statement_text_survives(text: str) -> None:
    events, quarantine, _ = read_bytes(log_text([status(text, id=1)]).encode(), NAME)
    assert quarantine.total == 0
    assert events.height == (1 if text.strip(WHITE_SPACE) else 0)


def test_giant_deep_and_invalid_utf8_lines_are_quarantined() -> None:
    giant = json.dumps(status("SELECT '" + "x" * 1_100_000 + "'", id=9)).encode()
    deep = (
        b'{"timestamp": "2026-03-02 10:00:00", "class": "general", "x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}"
    )
    bad = json.dumps(status("SELECT 'caf\udce9'", id=8)).encode()  # a lone surrogate escape
    raw = json.dumps(status("SELECT 'cafe'", id=7)).encode().replace(b"cafe", b"caf\xe9")
    data = (
        b"\n".join([*LINES[:-1], giant + b",", deep + b",", bad + b",", raw + b",", LINES[-1]])
        + b"\n"
    )
    events, quarantine, _ = read_bytes(data, NAME)
    assert quarantine.counts[Reason.TOO_LONG.value] == 1
    assert quarantine.counts[Reason.INVALID_JSON.value] == 1  # the deep one
    assert quarantine.counts[Reason.BAD_FIELD.value] == 1  # JSON, but a lone surrogate
    assert events.height == 8 + 1  # the workload and the statement read with U+FFFD
    assert one(events, "SELECT 'caf\ufffd'")[S.CLASS] == "READ"
