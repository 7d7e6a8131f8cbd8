"""Percona Server ``audit_log`` plugin (``audit_log_format = JSON``) facts, checked on
records quoted from Percona's manual and Canonical's Charmed MySQL documentation
(tests/fixtures/percona-audit, sources in its README), and on workloads built here from
the documented record shape; then fuzzed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detector import formats
from detector import schema as S
from detector.formats.mysql_audit import MysqlAudit
from detector.formats.percona_audit import NAME, PerconaAudit
from detector.reader import Chunk, head_lines
from detector.rejects import Quarantine, Reason
from tests.conftest import FIXTURES, parse
from tests.formats.common import (
    FUZZ,
    RANDOM_BYTES,
    assert_no_other_format_sniffs,
    foreign_logs,
    json_lines,
    not_gzip,
    read_bytes,
)

HERE = FIXTURES / "percona-audit"
QUERY = HERE / "percona-docs-query.log"
LOGINS = HERE / "charmed-mysql-logins.log"
OURS = sorted(HERE.glob("*.log"))


def read_records(*records: dict[str, Any] | str) -> tuple[pl.DataFrame, Quarantine]:
    events, quarantine, _ = read_bytes(json_lines(*records), NAME)
    return events, quarantine


def one(frame: pl.DataFrame, text: str) -> dict[str, Any]:
    got = frame.filter(pl.col(S.QUERY) == text)
    assert got.height == 1, got
    return got.row(0, named=True)


# A query record in the documented shape (the plugin's JSON format string: name, record,
# timestamp, command_class, connection_id, status, sqltext, user, host, os_user, ip, db),
# with values of our own.
def query(sql: str, *, seq: int, status: int = 0, db: str = "shop", **kw: Any) -> dict[str, Any]:
    return {
        "audit_record": {
            "name": kw.get("name", "Query"),
            "record": f"{seq}_2026-03-02T09:00:00",
            "timestamp": kw.get("ts", "2026-03-02T10:00:00 UTC"),
            "command_class": kw.get("command_class", "select"),
            "connection_id": "31",
            "status": status,
            "sqltext": sql,
            "user": "analyst[analyst] @ reports.example [10.0.0.8]",
            "host": "reports.example",
            "os_user": "",
            "ip": "10.0.0.8",
            "db": db,
        }
    }


# -- detection ---------------------------------------------------------------------------


def test_autodetected() -> None:
    for path in OURS:
        assert formats.detect(path, head_lines(path)) == NAME, path


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_sniff_claims_every_fixture(path: Path) -> None:
    assert PerconaAudit().sniff(head_lines(path))


@pytest.mark.parametrize("path", foreign_logs(HERE.name), ids=str)
def test_sniff_claims_no_other_log(path: Path) -> None:
    assert not PerconaAudit().sniff(head_lines(path))


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_no_other_format_claims_a_percona_audit_log(path: Path) -> None:
    assert not MysqlAudit().sniff(head_lines(path))
    assert_no_other_format_sniffs(path, NAME)


# -- facts on the vendors' records ---------------------------------------------------------


def test_documented_query_record() -> None:
    frame, quarantine = parse(QUERY, NAME)
    assert quarantine.total == 0
    ev = one(frame, "show databases")
    assert (ev[S.ACCOUNT], ev[S.CLIENT_IP], ev[S.SESSION]) == ("root", "localhost", "2")
    assert ev[S.CLASS] == "READ" and ev[S.COMMAND] == "SHOW" and ev[S.SUCCESS] is True
    assert ev[S.STATEMENT_ID] == "13149_2021-06-30T15:03:11"
    assert ev[S.TIME].isoformat() == "2021-06-30T15:07:58+00:00"
    # The plugin logs no volume: unknown, never 0.
    assert ev[S.ROWS] is None and ev[S.BYTES] is None and ev[S.DURATION_MS] is None
    assert ev[S.DB_SYSTEM] == "mysql" and ev[S.SOURCE_FORMAT] == NAME


def test_refused_logins_are_connect_failures_and_the_rest_context() -> None:
    frame, quarantine = parse(LOGINS, NAME)
    assert quarantine.total == 0
    assert frame.height == 3 and set(frame[S.CLASS]) == {"CONNECT"}
    assert frame[S.SUCCESS].to_list() == [False] * 3
    assert set(frame[S.CLIENT_IP]) == {"10.207.85.214"}
    assert frame[S.QUERY].to_list() == ["login refused, error 1156"] * 3
    assert frame[S.ACCOUNT].to_list() == [None] * 3  # the failed logins name no user
    assert frame[S.TIME].dt.to_string("%H:%M:%S").to_list() == ["01:53:14", "01:53:33", "01:53:33"]
    parsed = PerconaAudit().parse(Chunk(str(LOGINS), LOGINS.read_bytes(), 1))
    assert parsed.context == 7  # the successful Connects and the Quits


# -- facts on a workload built from the documented shape ------------------------------------


def test_statements_of_a_workload() -> None:
    frame, quarantine = read_records(
        query("SELECT * FROM customers WHERE id = 4", seq=10),
        query("SELECT /*!40001 SQL_NO_CACHE */ * FROM `orders`", seq=11),
        query("SELECT * FROM missing", seq=12, status=1146),
        query("UPDATE carts SET n = 0", seq=13, command_class="update"),
        query("SELECT 1", seq=14, name="Prepare"),
        query("SELECT 2", seq=15, name="Execute", ts="2026-03-02T10:00:01Z"),
    )
    assert quarantine.total == 0
    read_one = one(frame, "SELECT * FROM customers WHERE id = 4")
    assert (read_one[S.ACCOUNT], read_one[S.CLIENT_IP]) == ("analyst", "10.0.0.8")
    assert read_one[S.OBJECTS] == ["shop.customers"] and read_one[S.DATABASE] == "shop"
    dump = one(frame, "SELECT /*!40001 SQL_NO_CACHE */ * FROM `orders`")
    assert dump[S.EXPORT] is True and dump[S.OBJECTS] == ["shop.orders"]
    failed = one(frame, "SELECT * FROM missing")
    assert failed[S.CLASS] == "ERROR" and failed[S.SUCCESS] is False
    assert one(frame, "UPDATE carts SET n = 0")[S.OBJECTS] == ["shop.carts"]
    assert frame.height == 5  # a Prepare is not a statement run; its Execute is
    assert frame[S.STATEMENT_ID].is_unique().all()


def test_records_without_the_audit_fields_are_not_audit() -> None:
    frame, quarantine = read_records(
        query("SELECT 1", seq=1),
        {"audit_record": {"name": "Query"}},  # no timestamp
        {"something": 1},
        query("SELECT 2", seq=2, ts="yesterday"),
        '{"audit_record": "Query"}',
    )
    assert frame.height == 1
    assert quarantine.counts == {
        Reason.NOT_AUDIT.value: 2,
        Reason.BAD_FIELD.value: 2,
    }


# -- fuzz ---------------------------------------------------------------------------------


@FUZZ
@given(data=RANDOM_BYTES)
def test_random_bytes_never_crash(data: bytes) -> None:
    read_bytes(data, NAME)


@FUZZ
@given(
    junk=st.lists(
        st.binary(min_size=1, max_size=120).map(lambda b: b.replace(b"\n", b" ")),
        min_size=1,
        max_size=6,
    ).map(lambda js: [j for j in js if j.decode("utf-8", "replace").strip()]),
    cut=st.integers(min_value=0, max_value=400),
)
def test_garbage_and_cut_lines_are_quarantined(junk: list[bytes], cut: int) -> None:
    lines = LOGINS.read_bytes().splitlines()
    damaged = lines[0][:cut]  # a record cut short (or whole, if cut is past its end)
    data = b"\n".join([*junk, damaged, *lines[1:]]) + b"\n"
    assume(not_gzip(data))  # the junk comes first
    events, quarantine, _ = read_bytes(data, NAME)
    whole = damaged == lines[0]
    assert quarantine.total == len(junk) + (0 if whole or not damaged.strip() else 1)
    assert events.height == (3 if whole else 2)


def test_giant_lines_are_too_long() -> None:
    giant = json.dumps(query("SELECT '" + "x" * 1_100_000 + "'", seq=1)).encode()
    events, quarantine, _ = read_bytes(giant + b"\n" + QUERY.read_bytes(), NAME)
    assert quarantine.counts == {Reason.TOO_LONG.value: 1} and events.height == 1
