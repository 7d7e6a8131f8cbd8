"""MariaDB reading facts found by held-out workloads on a real MariaDB 10.11 server
(tests/fixtures/mariadb-heldout: its audit and slow logs, unedited)."""

from __future__ import annotations

from functools import cache

import polars as pl

from detector import schema as S
from detector.pipeline import read_events
from detector.rejects import Quarantine
from tests.conftest import FIXTURES

HELDOUT = FIXTURES / "mariadb-heldout"
AUDIT = HELDOUT / "server_audit.log"
SLOW = HELDOUT / "slow.log"


@cache
def _read(*names: str) -> pl.DataFrame:
    quarantine = Quarantine(None)
    frame, _ = read_events([HELDOUT / name for name in names], quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    return frame


def both() -> pl.DataFrame:
    return _read("server_audit.log", "slow.log")


def slow_only() -> pl.DataFrame:
    return _read("slow.log")


def test_a_string_literal_holding_a_slow_log_header_forges_no_record() -> None:
    # o'brien@corp's SELECT *, '\n# User@Host: app[app] @  [10.9.9.9]\n...777777...' AS note
    # FROM big: the client got big's 50,000 rows; no `app` ran anything from 10.9.9.9.
    for frame in (both(), slow_only()):
        assert frame.filter(pl.col(S.CLIENT_IP) == "10.9.9.9").is_empty()
        assert frame.filter(pl.col(S.ROWS) == 777_777).is_empty()
        # (a first try, at 11:31:13, sent the newlines as the two characters \\n)
        forged = frame.filter(pl.col(S.QUERY).str.contains("\n# User@Host: app[app]", literal=True))
        assert forged.height == 1, forged
        row = forged.row(0, named=True)
        assert row[S.ACCOUNT] == "o'brien@corp"
        assert row[S.ROWS] == 50_000
        assert row[S.QUERY].endswith("SELECT * FROM shop.customers' AS note FROM big")
    statements = both().filter(pl.col(S.ACCOUNT) == "o'brien@corp", pl.col(S.ROWS) == 50_000)
    assert statements.height == 3  # workload2's read of big, both tries: once each


def test_the_row_count_logged_for_a_stored_function_query_is_unknown_not_a_trillion() -> None:
    # multi's SELECT id, total_for(id) FROM customers WHERE id <= 40 (total_for reads
    # orders): the client got 40 rows, the slow log says Rows_sent: 1099511627775.
    text = "SELECT id, total_for(id) FROM customers WHERE id <= 40"
    for frame in (both(), slow_only()):
        runs = frame.filter(pl.col(S.QUERY) == text)
        assert runs.height == 3
        assert runs[S.ROWS].null_count() == 3
        assert runs[S.BYTES].min() > 0  # what it sent is still known
        assert frame[S.ROWS].max() < 2**40 - 1


def test_rows_an_into_outfile_writes_are_counted_however_it_was_sent() -> None:
    # exp5 wrote 500 rows (binary-protocol prepared statement) and 1,000 (EXECUTE
    # IMMEDIATE) to files (wc -l); the slow log has them as Rows_affected, Rows_sent 0.
    binary = (
        "SELECT * FROM orders WHERE id > 0 INTO OUTFILE '/work/mariaheldout/srv1/out5/bin_a.csv'"
    )
    inner = "SELECT * FROM customers INTO OUTFILE '/work/mariaheldout/srv1/out5/imm_a.csv'"
    for frame in (both(), slow_only()):
        for text, rows in ((binary, 500), (inner, 1000)):
            run = frame.filter(pl.col(S.QUERY) == text)
            assert run.height == 1, run
            assert run.row(0, named=True)[S.ROWS] == rows
            assert run.row(0, named=True)[S.EXPORT]
        exp5 = frame.filter(pl.col(S.ACCOUNT) == "exp5", pl.col(S.TIME).dt.second() == 39)
        # the EXECUTE IMMEDIATE is not a second export of the same rows
        assert exp5.filter(pl.col(S.EXPORT), pl.col(S.QUERY).str.contains("imm_a")).height == 1


def test_rows_of_a_handler_read_are_unknown_not_zero() -> None:
    # handler_u: HANDLER customers READ `PRIMARY` FIRST, then NEXT LIMIT 400 twice: 801
    # rows reached the client; the slow log says Rows_sent: 0.
    for frame in (both(), slow_only()):
        reads = frame.filter(pl.col(S.QUERY).str.starts_with("HANDLER customers READ"))
        assert reads.height == 3
        assert reads[S.ROWS].null_count() == 3
        assert (reads[S.CLASS] == "READ").all()
        assert reads[S.OBJECTS].to_list() == [["shop.customers"]] * 3
        assert reads[S.BYTES].sum() > 30_000


def test_a_user_database_named_Mysql_is_not_the_system_database() -> None:
    # sysname read 300 rows of `Mysql`.secrets and 200 of sys_reports.cards (client: 500).
    for frame in (both(), slow_only()):
        reads = frame.filter(pl.col(S.ACCOUNT) == "sysname", pl.col(S.CLASS) == "READ")
        assert reads[S.ROWS].sum() == 500
        assert ["Mysql.secrets"] in reads[S.OBJECTS].to_list()


def test_reading_the_password_hashes_is_a_read_of_mysql_user() -> None:
    quarantine = Quarantine(None)
    frame, _ = read_events(
        [HELDOUT / "fulldump" / "server_audit.log", HELDOUT / "fulldump" / "slow.log"],
        quarantine=quarantine,
    )
    text = "SELECT User, Host, authentication_string FROM mysql.user"
    got = frame.filter(pl.col(S.QUERY) == text)
    assert got.height == 1
    row = got.row(0, named=True)
    assert (row[S.CLASS], row[S.ROWS], row[S.OBJECTS]) == ("READ", 15, ["mysql.user"])
    dump = frame.filter(pl.col(S.QUERY).str.ends_with("FROM `global_priv`"))
    assert dump.height == 1
    assert dump.row(0, named=True)[S.OBJECTS] == ["mysql.global_priv"]
    assert dump.row(0, named=True)[S.CLASS] == "READ"
    assert dump.row(0, named=True)[S.ROWS] > 0


def test_a_literal_ending_a_line_with_a_semicolon_forges_no_record_when_the_audit_log_is_given() -> (
    None
):
    # mallory's SELECT *, ';\n# Time: ...\n# User@Host: app[app] @  [10.9.9.9]\n...' AS note
    # FROM big (3,000 rows to the client), then SELECT * FROM big WHERE id <= 10 (10 rows).
    quarantine = Quarantine(None)
    semicolon = HELDOUT / "semicolon"
    frame, _ = read_events(
        [semicolon / "server_audit.log", semicolon / "slow.log"], quarantine=quarantine
    )
    assert quarantine.total == 0
    assert frame.filter(pl.col(S.CLIENT_IP) == "10.9.9.9").is_empty()
    assert frame.filter(pl.col(S.ACCOUNT) == "app").is_empty()
    mallory = frame.filter(pl.col(S.ACCOUNT) == "mallory", pl.col(S.CLASS) == "READ")
    assert sorted(mallory[S.ROWS].to_list()) == [10, 3000]
    assert (
        mallory.filter(pl.col(S.ROWS) == 3000)
        .row(0, named=True)[S.QUERY]
        .endswith("SELECT * FROM shop.customers' AS note FROM big")
    )


def test_an_into_dumpfile_writes_its_one_row() -> None:
    # exporter's DUMPFILE wrote one row (Rows_sent: 0, Rows_affected: 1 in the slow log).
    text = (
        "SELECT card FROM customers WHERE id=7 INTO DUMPFILE '/work/mariaheldout/srv1/out/one.bin'"
    )
    for frame in (both(), slow_only()):
        run = frame.filter(pl.col(S.QUERY) == text)
        assert run.height == 1
        assert (run.row(0, named=True)[S.ROWS], run.row(0, named=True)[S.EXPORT]) == (1, True)


def test_an_into_outfile_inside_a_procedure_is_an_export_of_the_rows_it_wrote() -> None:
    # exp5's CALL exp_s() (SELECT * FROM shop.orders INTO OUTFILE ...) wrote 500 rows; the
    # slow log has one record, the CALL's: Rows_sent 0, Rows_affected 500.
    calls = both().filter(pl.col(S.QUERY) == "CALL exp_s()", pl.col(S.ROWS) == 500)
    assert calls.height == 1
    call = calls.row(0, named=True)
    assert (call[S.CLASS], call[S.EXPORT], call[S.OBJECTS]) == ("READ", True, ["shop.orders"])
    exp5 = both().filter(pl.col(S.ACCOUNT) == "exp5", pl.col(S.EXPORT), pl.col(S.SUCCESS))
    assert exp5.filter(pl.col(S.QUERY).str.contains("static_a.csv")).is_empty()  # once
    # the slow log alone cannot tell the file from rows a procedure changed: a write
    alone = slow_only().filter(pl.col(S.QUERY) == "CALL exp_s()", pl.col(S.ROWS) == 500)
    assert alone.row(0, named=True)[S.CLASS] == "WRITE"
