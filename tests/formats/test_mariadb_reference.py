"""MariaDB parsing facts, checked on real MariaDB 10.11.19 output (Debian 12): the
``server_audit`` plugin log and the slow query log at ``long_query_time = 0`` of the same
session (tests/fixtures/reference/mariadb10.11, settings in its my.cnf)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector import formats
from detector import schema as S
from detector.formats import Told
from detector.formats.mariadb_audit import MariadbAudit
from detector.pipeline import read_events
from detector.reader import head_lines
from detector.rejects import Quarantine
from tests.conftest import FIXTURES, REFERENCE_PG, audit_log_ahead, parse
from tests.formats.common import parse_cut

REFERENCE_MARIADB = FIXTURES / "reference" / "mariadb10.11"
AUDIT = REFERENCE_MARIADB / "server_audit.log"
SLOW = REFERENCE_MARIADB / "slow.log"
# Real 10.11 output of every kind of statement the simulator renders (mariadb-dump too).
SIMULATED_AUDIT = FIXTURES / "mariadb-simulate" / "server_audit.log"


def events(path: Path) -> pl.DataFrame:
    frame, quarantine = parse(path)
    assert quarantine.total == 0, dict(quarantine.counts)
    return frame


def both() -> pl.DataFrame:
    quarantine = Quarantine(None)
    frame, _ = read_events([AUDIT, SLOW], quarantine=quarantine)
    assert quarantine.total == 0
    return frame


def one(frame: pl.DataFrame, text: str, **where: str) -> dict[str, object]:
    got = frame.filter(pl.col(S.QUERY) == text, *(pl.col(k) == v for k, v in where.items()))
    assert got.height == 1, got
    return got.row(0, named=True)


def test_both_logs_are_detected_from_their_first_lines() -> None:
    assert formats.detect(AUDIT, head_lines(AUDIT)) == "mariadb-audit"
    assert formats.detect(SLOW, head_lines(SLOW)) == "mariadb-slow"


@pytest.mark.parametrize(
    "path", sorted([*REFERENCE_PG.iterdir(), *(FIXTURES / "pgaudit").rglob("postgresql.*")])
)
def test_no_mariadb_format_claims_a_postgresql_log(path: Path) -> None:
    head = head_lines(path)
    assert not formats.native("mariadb-audit").sniff(head)
    assert not formats.native("mariadb-slow").sniff(head)


@pytest.mark.parametrize("path", [AUDIT, SLOW])
def test_no_postgresql_format_claims_a_mariadb_log(path: Path) -> None:
    head = head_lines(path)
    for name in ("pgaudit-jsonlog", "pgaudit-csvlog", "pgaudit-stderr"):
        assert not formats.native(name).sniff(head), name


def test_audit_select_names_its_table_and_has_no_volume() -> None:
    select = one(events(AUDIT), "SELECT * FROM customers", **{S.STATEMENT_ID: "6"})
    assert select[S.ACCOUNT] == "bob"
    assert select[S.CLIENT_IP] == "127.0.0.1"
    assert select[S.DATABASE] == "shop"
    assert select[S.OBJECTS] == ["shop.customers"]
    assert select[S.CLASS] == "READ" and select[S.COMMAND] == "SELECT"
    assert select[S.DB_SYSTEM] == "mariadb"
    # The audit log carries no volume: unknown, never 0.
    assert select[S.ROWS] is None and select[S.BYTES] is None
    assert select[S.TIME].isoformat() == "2026-11-28T06:56:10+00:00"  # type: ignore[attr-defined]


def test_audit_table_records_merge_into_one_statement() -> None:
    # The self-join has two READ records of shop.customers: one event, one object.
    join = one(
        events(AUDIT), "SELECT c.email FROM customers c JOIN customers d ON c.id=d.id WHERE c.id<10"
    )
    assert join[S.OBJECTS] == ["shop.customers"]
    # INSERT ... SELECT: the server's own statistics reads are not the statement's objects.
    insert = events(AUDIT).filter(pl.col(S.QUERY).str.starts_with("INSERT INTO customers"))
    assert insert[S.OBJECTS].to_list() == [["shop.customers", "shop.seq_1_to_5000"]]
    assert insert[S.CLASS].to_list() == ["WRITE"]


def test_audit_escapes_are_undone() -> None:
    ev = events(AUDIT)
    assert one(ev, "SELECT id,\n  email FROM customers\n  WHERE id < 3")[S.OBJECTS] == [
        "shop.customers"
    ]
    assert one(ev, "GRANT ALL ON shop.* TO 'bob'@'%'")[S.CLASS] == "ROLE"
    assert one(ev, "CREATE USER 'bob'@'%' IDENTIFIED BY *****")[S.CLASS] == "ROLE"


def test_audit_failures_and_refused_logins() -> None:
    ev = events(AUDIT)
    failed = one(ev, "SELECT * FROM nonexist")
    assert failed[S.SUCCESS] is False and failed[S.CLASS] == "ERROR"
    assert failed[S.OBJECTS] == ["shop.nonexist"]
    logins = ev.filter(pl.col(S.CLASS) == "CONNECT")
    assert logins.height == 3
    assert set(logins[S.ACCOUNT]) == {"bob"} and not any(logins[S.SUCCESS])


def test_audit_sessions_are_told_apart_across_a_server_restart() -> None:
    # Connection 3 and its query ids 1 and 2 were used before and after a restart.
    ev = events(AUDIT).filter(pl.col(S.SESSION).str.starts_with("vm/3/"))
    assert ev[S.SESSION].n_unique() == 2
    assert "DELETE FROM mysql.global_priv WHERE User=''" in ev[S.QUERY].to_list()
    assert "CREATE DATABASE shop" in ev[S.QUERY].to_list()


def test_slow_log_gives_rows_bytes_and_duration() -> None:
    ev = events(SLOW)
    assert ev.height == 3
    select = one(ev, "SELECT * FROM customers")
    assert (select[S.ROWS], select[S.BYTES], select[S.DURATION_MS]) == (5000, 267979, 1.228)
    assert select[S.ACCOUNT] == "bob" and select[S.CLIENT_IP] == "127.0.0.1"
    assert select[S.DATABASE] == "shop" and select[S.OBJECTS] == ["shop.customers"]
    assert select[S.TIME].isoformat() == "2026-11-28T06:56:16+00:00"  # type: ignore[attr-defined]
    update = one(ev, "UPDATE customers SET card='x' WHERE id<=3")
    assert (update[S.CLASS], update[S.ROWS], update[S.BYTES]) == ("WRITE", 3, 52)
    multi = one(ev, "SELECT id,\n  email FROM customers\n  WHERE id < 3")
    assert (multi[S.ROWS], multi[S.BYTES]) == (2, 166)


def test_both_logs_join_into_audited_statements_with_volume() -> None:
    ev = both()
    # Every slow-log record found its audited statement: none is left on its own.
    assert set(ev[S.SOURCE_FORMAT]) == {"mariadb-audit"}
    select = one(ev, "SELECT * FROM customers", **{S.STATEMENT_ID: "15"})
    assert (select[S.ROWS], select[S.BYTES], select[S.OBJECTS]) == (
        5000,
        267979,
        ["shop.customers"],
    )
    multi = one(ev, "SELECT id,\n  email FROM customers\n  WHERE id < 3")
    assert (multi[S.ROWS], multi[S.BYTES]) == (2, 166)
    # Statements from before the slow log was on keep an unknown volume.
    early = one(ev, "SELECT * FROM customers", **{S.STATEMENT_ID: "6"})
    assert early[S.ROWS] is None and early[S.BYTES] is None
    assert ev.filter(~pl.col(S.SUCCESS)).height == 4  # the failure and refused logins stay


def by_chunks(text: str, cuts: list[int]) -> pl.DataFrame:
    """Events of an audit log's ``text`` parsed as chunks (or live reads) cut before the
    given line indexes, statements split between them merged as the readers merge them."""
    order = [S.TIME, S.STATEMENT_ID, S.CLASS, S.QUERY]
    return parse_cut(MariadbAudit(), "server_audit.log", text, cuts).sort(order, nulls_last=True)


@pytest.mark.parametrize("path", [AUDIT, SIMULATED_AUDIT], ids=["reference", "simulate"])
def test_a_log_cut_anywhere_gives_the_statements_of_the_whole_log(path: Path) -> None:
    """A chunk of a long log, or a live read of a growing one, may end between a
    statement's TABLE records and its QUERY record, and the connection's CONNECT is
    mostly in an earlier chunk than its statements. Cut anywhere, each statement is
    still one event with its text, class, outcome and every table its records name."""
    text = path.read_text()
    whole = by_chunks(text, [])
    for cut in range(1, text.count("\n")):
        split = by_chunks(text, [cut])
        assert split.drop(S.SESSION).equals(whole.drop(S.SESSION)), cut
        # A session whose CONNECT is in the other chunk is known without its login time.
        for was, now in zip(whole[S.SESSION], split[S.SESSION], strict=True):
            assert now == was or was.startswith(f"{now}/"), (cut, was, now)


def test_a_log_ending_on_a_query_line_counts_that_statement_once(tmp_path: Path) -> None:
    """A log read while the server writes it can end on a QUERY line whose TABLE
    records come just before it: that statement is one event, not an event without
    text for its tables and another for its text."""
    lines = AUDIT.read_text().splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if ",4,5,QUERY," in line) + 1
    assert ",4,5,READ,mysql,index_stats," in lines[end - 2]  # its TABLE records before it
    log = tmp_path / "server_audit.log"
    log.write_text("".join(lines[:end]))
    insert = events(log).filter(pl.col(S.STATEMENT_ID) == "5", pl.col(S.ACCOUNT) == "bob")
    assert insert.height == 1, insert
    row = insert.row(0, named=True)
    assert row[S.QUERY].startswith("INSERT INTO customers SELECT seq")
    assert row[S.CLASS] == "WRITE" and row[S.SUCCESS] is True
    assert row[S.OBJECTS] == ["shop.customers", "shop.seq_1_to_5000"]
    assert row[S.SESSION] == "vm/4/20261128T065610"


def test_a_statement_cut_by_the_logs_rotation_is_one_statement(tmp_path: Path) -> None:
    """server_audit rotates its log by size: the INSERT's TABLE records end the rotated
    file and its QUERY record starts the new one. Read together (in any order), the two
    files give the statements of the log unrotated, and the summary counts them once."""
    lines = AUDIT.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if ",4,5,QUERY," in line)
    rotated, current = tmp_path / "server_audit.log.1", tmp_path / "server_audit.log"
    rotated.write_text("".join(lines[:cut]))
    current.write_text("".join(lines[cut:]))
    order = [S.TIME, S.STATEMENT_ID, S.CLASS, S.QUERY]
    whole = events(AUDIT).sort(order, nulls_last=True)
    for paths in ([rotated, current], [current, rotated]):
        quarantine = Quarantine(None)
        both, summary = read_events(paths, quarantine=quarantine)
        assert quarantine.total == 0
        assert both.sort(order, nulls_last=True).drop(S.SESSION).equals(whole.drop(S.SESSION))
        assert summary.events == {"mariadb-audit": whole.height}


def test_a_marker_with_auto_increment_values_first_as_mysql_writes_it(tmp_path: Path) -> None:
    """MySQL's slow log marks an AUTO_INCREMENT insert ``SET insert_id=N,timestamp=T;``
    and a statement reading ``LAST_INSERT_ID()`` ``SET last_insert_id=N,timestamp=T;``
    (MariaDB 10.11 writes ``SET timestamp=T;`` only). The real 10.11 log with those
    markers: the same statements, at T (before: each such record was quarantined as
    truncated, or timed at N)."""
    text = SLOW.read_text()
    markers = text.count("SET timestamp=")
    text = text.replace("SET timestamp=", "SET insert_id=8275917,timestamp=", 1)
    text = text.replace("SET timestamp=", "SET last_insert_id=3,insert_id=4,timestamp=", 1)
    assert text.count("timestamp=") == markers
    mysql = tmp_path / "slow.log"
    mysql.write_text(text)
    assert events(mysql).equals(events(SLOW))


def test_the_audit_logs_times_are_read_in_the_servers_time_zone_when_told() -> None:
    """``--mariadb-timezone``: the audit log's times are the server's clock. Read as
    Shanghai's, every time is 8 h earlier in UTC; read with the slow log, whose times
    are UTC, a zone that is not the server's (this one ran on UTC) is set right by the
    statements both logs hold, each paired with its volume as without it."""
    as_utc, _ = read_events([AUDIT])
    told, _ = read_events([AUDIT], told=Told(mariadb_timezone="Asia/Shanghai"))
    assert told[S.TIME].to_list() == [t - timedelta(hours=8) for t in as_utc[S.TIME]]
    wrong, _ = read_events([AUDIT, SLOW], told=Told(mariadb_timezone="Asia/Shanghai"))
    assert_frame_equal(wrong, both())


def test_since_and_until_select_a_local_time_servers_audit_records_by_utc(
    tmp_path: Path,
) -> None:
    """A server on Shanghai time writes its audit log 8 h ahead of UTC; its slow log's
    times are UTC. ``--since``/``--until`` select by UTC: a period's events are those of
    the same logs written on UTC, each statement with its volume, and the summary says
    how far ahead the audit log's clock ran (before: the audit records were selected by
    the server's clock, so the period held none of them, and its slow records stood
    alone). Real 10.11 logs of held-out workloads, cut in their busiest minutes."""
    heldout = FIXTURES / "mariadb-heldout"
    utc, slow = heldout / "server_audit.log", heldout / "slow.log"
    local = tmp_path / "server_audit.log"
    local.write_bytes(audit_log_ahead(utc.read_bytes(), hours=8))
    since, until = (
        datetime(2026, 11, 30, 11, 28, tzinfo=UTC),
        datetime(2026, 11, 30, 11, 31, tzinfo=UTC),
    )
    expected, on_utc = read_events([utc, slow], since=since, until=until)
    found, summary = read_events([local, slow], since=since, until=until)
    # (A session's name holds its login time as the audit log wrote it.)
    assert_frame_equal(found.drop(S.SESSION), expected.drop(S.SESSION))
    assert summary.events == on_utc.events
    assert summary.outside == on_utc.outside
    audited = expected.filter(pl.col(S.SOURCE_FORMAT) == "mariadb-audit")
    assert audited.height > 100
    assert audited[S.ROWS].is_not_null().sum() > 100
    assert summary.audit_ahead == [8 * 3600]
    assert "audit log's times were the server's local time (UTC+8;" in summary.paragraph()
    assert on_utc.audit_ahead == []
    # A period a day later holds none of them: each is counted outside it.
    _, everything = read_events([local, slow])
    _, later = read_events([local, slow], since=since + timedelta(days=1))
    assert later.outside == sum(everything.events.values()) > 0
