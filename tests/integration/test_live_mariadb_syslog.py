"""MariaDB's audit plugin logging through syslog (``server_audit_output_type = syslog``),
on a real MariaDB whose records a real rsyslog files: the syslog file gives the events
the audit file gives of the same workload, and joins with the slow log as the file does.

Two servers run the same workload, one writing the audit file, one sending to syslog.
Both run on Shanghai's clock (UTC+8), as a server there would: the file's times are the
server's local time, the syslog file's the daemon's (this machine's zone, or an RFC 3339
offset).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector import carried, formats, model
from detector import features as F
from detector import schema as S
from detector.pipeline import read_events
from detector.rejects import Quarantine
from tests.integration.conftest import MODEL, follow, mariadb_server, wait_for

ZONE = "Asia/Shanghai"
FACILITY = "local5"
SUFFIXES = [".log", ".iso.log", ".5424.log"]
LONG_IN = "SELECT * FROM customers WHERE id IN (" + ",".join(map(str, range(700))) + ")"
MULTILINE = "SELECT id,\n  email\nFROM customers\nWHERE card <> 'it''s\t\"q\" é\\\\'"


def workload(db: Any) -> None:
    """Reads, a multi-line and a long statement (cut at the plugin's query limit), a
    join, a failed statement, a refused login, a user whose name has a comma, a dump and
    an export to a file."""
    db.sql(
        "CREATE DATABASE shop; USE shop;"
        "CREATE TABLE customers(id int primary key, email varchar(64), card varchar(64));"
        "INSERT INTO customers SELECT seq, concat('u', seq, '@x.com'), md5(seq) FROM seq_1_to_3000;"
        "CREATE TABLE orders(id int primary key, customer_id int, total int);"
        "INSERT INTO orders SELECT seq, 1 + seq % 3000, seq % 97 FROM seq_1_to_9000;"
        + "".join(
            f"CREATE USER '{u}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON shop.* TO '{u}'@'%';"
            for u in ("reader", "exporter", "zoë,1")
        )
        + "GRANT FILE ON *.* TO 'exporter'@'%'; GRANT LOCK TABLES ON shop.* TO 'exporter'@'%';"
    )
    for statement in (
        "SELECT * FROM customers WHERE id <= 1234",
        MULTILINE,
        LONG_IN,
        "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id"
        " WHERE c.id <= 10",
    ):
        db.client("reader", "pw", "shop", statement)
    db.client("zoë,1", "pw", "shop", "SELECT count(*) FROM orders")
    assert db.client("reader", "pw", "shop", "SELECT * FROM nonexist", check=False).returncode
    assert db.client("reader", "wrong", "shop", "SELECT 1", check=False).returncode
    db.dump("exporter", "pw", "shop", "customers")
    # (a relative file: in the database's directory, so both servers' texts are the same)
    db.client(
        "exporter", "pw", "shop", "SELECT * FROM orders WHERE id <= 777 INTO OUTFILE 'out.txt'"
    )
    db.client("reader", "pw", "shop", "SELECT 'the end'")


def wait_for_slow(db: Any) -> None:
    deadline = time.monotonic() + 10
    while "the end" not in db.slow_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the slow log did not get the last statement"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def logs(
    rsyslog: Path, server_dir: Callable[[str], Path]
) -> Iterator[tuple[Path, Path, Path, Path, tuple[datetime, datetime]]]:
    """The audit file and slow log of the server writing the file; the syslog directory
    and slow log of the server sending to syslog, and when its workload ran (UTC)."""
    with mariadb_server(server_dir("mariadb"), tz=ZONE) as filed:
        workload(filed)
        wait_for_slow(filed)
    settings = {
        "server_audit_output_type": "syslog",
        "server_audit_syslog_facility": f"LOG_{FACILITY.upper()}",
    }
    with mariadb_server(server_dir("mariadb"), settings, tz=ZONE) as sent:
        began = datetime.now(UTC)
        workload(sent)
        ended = datetime.now(UTC)
        wait_for_slow(sent)
        for suffix in SUFFIXES:
            wait_for(rsyslog / f"{FACILITY}{suffix}", "the end")
    yield filed.audit_log, filed.slow_log, rsyslog, sent.slow_log, (began, ended)


def read(*paths: Path) -> tuple[pl.DataFrame, Any]:
    quarantine = Quarantine(None)
    events, summary = read_events(list(paths), quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    return events, summary


def comparable(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` without what differs between two servers running the same statements:
    times, connection and query ids, durations."""
    return (
        events.drop(S.TIME, S.SESSION, S.STATEMENT_ID, S.DURATION_MS)
        .with_columns(pl.col(S.OBJECTS).list.sort())
        .sort(S.ACCOUNT, S.QUERY, S.CLASS, nulls_last=True)
    )


@pytest.mark.parametrize("suffix", SUFFIXES, ids=["traditional", "rfc3339", "rfc5424"])
def test_the_syslog_file_gives_the_events_of_the_audit_file(
    logs: tuple[Path, Path, Path, Path, Any], suffix: str
) -> None:
    audit, _, directory, _, (began, ended) = logs
    expected, _ = read(audit)
    got, _ = read(directory / f"{FACILITY}{suffix}")
    assert set(got[S.SOURCE_FORMAT]) == {"mariadb-audit"}
    assert comparable(got).equals(comparable(expected))
    assert got.filter(pl.col(S.QUERY).str.starts_with("SELECT * FROM customers WHERE id IN")).height
    assert {"zoë,1", "reader", "exporter"} <= set(got[S.ACCOUNT])
    # The daemon's times, on UTC: not the server's clock, 8 hours ahead.
    assert got[S.TIME].min() >= began - timedelta(seconds=1)
    assert got[S.TIME].max() <= ended + timedelta(seconds=1)


def test_the_three_line_formats_give_the_same_events(
    logs: tuple[Path, Path, Path, Path, Any],
) -> None:
    """To the second: a traditional line's time has no fraction."""
    _, _, directory, _, _ = logs
    traditional, rfc3339, rfc5424 = (
        read(directory / f"{FACILITY}{suffix}")[0]
        .with_columns(pl.col(S.TIME).dt.truncate("1s"))
        .sort(S.TIME, S.SESSION, S.STATEMENT_ID)
        for suffix in SUFFIXES
    )
    assert rfc3339.equals(traditional) and rfc5424.equals(traditional)


@pytest.mark.parametrize("suffix", SUFFIXES, ids=["traditional", "rfc3339", "rfc5424"])
def test_with_the_slow_log_every_statement_has_its_volume_as_from_the_file(
    logs: tuple[Path, Path, Path, Path, Any], suffix: str
) -> None:
    """The syslog file's statements join their slow-log records as the file's do: rows
    and bytes for each, the clock needing no setting."""
    audit, filed_slow, directory, sent_slow, _ = logs
    expected, filed = read(audit, filed_slow)
    got, sent = read(directory / f"{FACILITY}{suffix}", sent_slow)
    assert filed.audit_ahead == [8 * 3600]  # the file's clock is Shanghai's
    assert sent.audit_ahead == []  # the daemon's is UTC already
    assert sent.unvolumed == filed.unvolumed == 0
    assert comparable(got).equals(comparable(expected))
    assert got.filter(pl.col(S.QUERY) == "SELECT * FROM customers WHERE id <= 1234")[
        S.ROWS
    ].to_list() == [1234]


def test_each_log_is_recognised_without_being_told_its_format(
    logs: tuple[Path, Path, Path, Path, Any],
) -> None:
    audit, filed_slow, directory, sent_slow, _ = logs
    for suffix in SUFFIXES:
        assert formats.get("auto", directory / f"{FACILITY}{suffix}").name == "mariadb-audit-syslog"
    assert formats.get("auto", audit).name == "mariadb-audit"
    assert {formats.get("auto", slow).name for slow in (filed_slow, sent_slow)} == {"mariadb-slow"}


def test_other_programs_lines_are_context_not_rejects(
    logs: tuple[Path, Path, Path, Path, Any], tmp_path: Path
) -> None:
    """A shared /var/log/syslog: cron's and sshd's lines between the plugin's."""
    _, _, directory, _, _ = logs
    lines = (directory / f"{FACILITY}.log").read_text().splitlines(keepends=True)
    mixed = tmp_path / "syslog"
    noise = [
        "Dec  1 10:42:32 vm CRON[1201]: (root) CMD (command -v debian-sa1 > /dev/null)\n",
        "Dec  1 10:42:33 vm sshd[977]: Accepted publickey for ops from 10.0.0.5 port 5022\n",
    ]
    mixed.write_text("".join(line + noise[i % 2] for i, line in enumerate(lines)))
    expected, _ = read(directory / f"{FACILITY}.log")
    got, summary = read(mixed)
    assert got.equals(expected)
    assert summary.context >= len(lines)


def test_serve_following_the_syslog_file_and_slow_log_counts_what_score_reads(
    logs: tuple[Path, Path, Path, Path, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve`` following the syslog file and the slow log, each written in two parts,
    has each account's statements and rows read as the batch read of both gives them:
    the statements paired with their slow records at the daemon's UTC times."""
    monkeypatch.setattr(carried, "check", lambda evidence, training: None)
    _, _, directory, sent_slow, _ = logs
    expected, _ = read(directory / f"{FACILITY}.iso.log", sent_slow)
    (tmp_path / "log").mkdir()
    writes = []
    for source, name in (
        (directory / f"{FACILITY}.iso.log", "audit.syslog"),
        (sent_slow, "slow.log"),
    ):
        body = source.read_bytes()
        half = body.index(b"\n", len(body) // 2) + 1
        writes += [(tmp_path / "log" / name, body[:half]), (tmp_path / "log" / name, body[half:])]
    service = follow(model.load(MODEL), tmp_path, [writes[i] for i in (0, 2, 1, 3)])
    try:
        service.step()
        live = (
            service.engine.close(wall=datetime(2100, 1, 1, tzinfo=UTC))
            .scored.select(
                "account", pl.col("features").struct.field("statements_5m", "rows_read_5m")
            )
            .group_by("account")
            .agg(pl.col("statements_5m", "rows_read_5m").sum())
            .sort("account")
        )
    finally:
        service.stop()
    batch = F.window_activity(expected.lazy(), "5m").collect()
    counted = (
        batch.group_by(pl.col(F.ACCOUNT).alias("account"))
        .agg(
            pl.col("statements").sum().alias("statements_5m"),
            pl.col("rows_read").sum().alias("rows_read_5m"),
        )
        .sort("account")
    )
    assert live.equals(counted.cast(live.schema))
