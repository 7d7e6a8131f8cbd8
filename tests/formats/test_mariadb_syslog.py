"""MariaDB's audit plugin through syslog (:mod:`detector.formats.mariadb_syslog`), on a
real 10.11 server's records as a real rsyslog filed them (``tests/fixtures/
mariadb-audit-syslog``, its README says how). The same server's audit file and syslog
file of one workload are compared in ``tests/integration/test_live_mariadb_syslog.py``."""

from __future__ import annotations

import functools
from pathlib import Path

import polars as pl
import pytest

from detector import formats, ingest
from detector import schema as S
from detector.formats import mariadb_audit
from detector.pipeline import read_events
from detector.reader import read_chunks
from detector.rejects import Quarantine, Reason

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mariadb-audit-syslog"
TRADITIONAL = FIXTURE / "server_audit.syslog"
LINE_FORMATS = [TRADITIONAL, FIXTURE / "server_audit-rfc3339.syslog",
                FIXTURE / "server_audit-rfc5424.syslog"]  # fmt: skip
PG_SYSLOG = Path(__file__).parents[1] / "fixtures" / "pgaudit-syslog" / "postgresql.syslog"


@pytest.fixture(autouse=True)
def machine_on_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's machine ran on UTC: a traditional line's time is read in this one's."""
    monkeypatch.setenv("TZ", "UTC")


def read(*paths: Path) -> tuple[pl.DataFrame, ingest.Summary, Quarantine]:
    quarantine = Quarantine(None)
    events, summary = read_events(list(paths), quarantine=quarantine)
    return events, summary, quarantine


def statement(events: pl.DataFrame, text: str) -> dict[str, object]:
    found = events.filter(pl.col(S.QUERY) == text)
    assert found.height == 1, found
    return found.row(0, named=True)


@pytest.mark.parametrize("path", LINE_FORMATS, ids=["traditional", "rfc3339", "rfc5424"])
def test_every_record_is_read_and_the_line_the_daemon_cut_is_quarantined(path: Path) -> None:
    events, summary, quarantine = read(path)
    assert formats.get("auto", path).name == "mariadb-audit-syslog"
    # rsyslog cut the 2,500-value IN list at its 8 KiB limit: the record has no end
    assert dict(quarantine.counts) == {Reason.TRUNCATED.value: 1}
    assert summary.context >= 1  # the CRON line
    read_99 = statement(events, "SELECT * FROM customers WHERE id < 100")
    assert read_99[S.ACCOUNT] == "bob" and read_99[S.OBJECTS] == ["shop.customers"]
    multiline = events.filter(pl.col(S.QUERY).str.starts_with("SELECT id,\n  name\nFROM"))
    assert multiline[S.QUERY].to_list() == ["SELECT id,\n  name\nFROM customers\n"
                                            "WHERE name <> 'it''s \"q\"\té\\\\ '"]  # fmt: skip
    assert statement(events, "SELECT count(*) FROM customers")[S.ACCOUNT] == "zoë,1"
    assert statement(events, "SELECT * FROM nosuch")[S.SUCCESS] is False
    refused = events.filter(pl.col(S.COMMAND) == "LOGIN")
    assert refused.select(S.ACCOUNT, S.SUCCESS).rows() == [("bob", False)]
    # after server_audit_syslog_info = 'prod db1' and the ident changed to mariadb-audit
    last = statement(events, "SELECT name FROM customers WHERE id = 7")
    assert last[S.ACCOUNT] == "bob" and last[S.SESSION].startswith("vm/12/")


def test_the_three_line_formats_give_the_same_events_to_the_second() -> None:
    read_all = [read(path)[0] for path in LINE_FORMATS]
    seconds = [
        e.with_columns(pl.col(S.TIME).dt.truncate("1s")).sort(S.TIME, S.SESSION, S.STATEMENT_ID)
        for e in read_all
    ]
    assert seconds[1].equals(seconds[0]) and seconds[2].equals(seconds[0])
    assert read_all[1][S.TIME].equals(read_all[2][S.TIME])  # RFC 3339 and 5424: to the µs


def test_a_traditional_time_is_this_machines_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's clock, not the server's: a machine in Shanghai files 19:58 for 11:58
    UTC; an RFC 3339 time says its offset and reads the same anywhere."""
    utc_times = read(TRADITIONAL)[0][S.TIME]
    rfc3339_times = read(LINE_FORMATS[1])[0][S.TIME]
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    shanghai = read(TRADITIONAL)[0][S.TIME]
    assert (utc_times - shanghai).dt.total_hours().unique().to_list() == [8]
    assert read(LINE_FORMATS[1])[0][S.TIME].equals(rfc3339_times)


@pytest.mark.parametrize("path", LINE_FORMATS, ids=["traditional", "rfc3339", "rfc5424"])
def test_with_the_slow_log_statements_have_their_rows(path: Path) -> None:
    events, summary, _ = read(path, FIXTURE / "slow.log")
    assert summary.audit_ahead == []  # the daemon's times are UTC: no clock to set
    assert statement(events, "SELECT * FROM customers WHERE id < 100")[S.ROWS] == 99
    assert statement(events, "SELECT name FROM customers WHERE id = 7")[S.ROWS] == 1
    # the audited statements, less the one rsyslog cut, each joined to its slow record
    assert summary.unvolumed == 0


def test_read_in_small_chunks_the_same_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks (and serve's reads) end between a statement's TABLE and QUERY records, and
    between a connection's CONNECT and its statements."""
    whole = read(TRADITIONAL)[0]
    monkeypatch.setattr(ingest, "read_chunks", functools.partial(read_chunks, chunk_bytes=700))
    chunked = read(TRADITIONAL)[0]
    order = [S.TIME, S.ACCOUNT, S.STATEMENT_ID, S.QUERY]
    whole, chunked = whole.sort(order, nulls_last=True), chunked.sort(order, nulls_last=True)
    # (a connection's login time is known only to a chunk holding its CONNECT record)
    connection = mariadb_audit.connection(pl.col(S.SESSION))
    assert chunked.with_columns(connection).equals(whole.with_columns(connection))


def test_neither_syslog_format_claims_the_others_file() -> None:
    assert formats.get("auto", PG_SYSLOG).name == "pgaudit-syslog"
    head = TRADITIONAL.read_text().splitlines()
    assert not formats.native("pgaudit-syslog").sniff(head)
    assert not formats.native("mariadb-audit").sniff(head)
    assert not formats.native("mariadb-audit-syslog").sniff(PG_SYSLOG.read_text().splitlines())


def test_a_syslog_file_without_the_plugins_records_is_not_taken_for_one(tmp_path: Path) -> None:
    other = tmp_path / "syslog"
    other.write_text("Dec  1 11:58:22 vm CRON[88]: (root) CMD (run-parts /etc/cron.hourly)\n" * 5)
    assert not formats.native("mariadb-audit-syslog").sniff(other.read_text().splitlines())
