"""The binary log read out on a real MariaDB 10.11: ``mariadb-binlog
--read-from-remote-server`` and a replica each stream every change to every database, and
the stream is no statement: the audit and slow logs hold only the client's ``SELECT
VERSION()`` and the ``SET``\\ s it sends first. Its ``SET @master_binlog_checksum`` is read
as an export of ``(cluster binlog)`` by the replication account, as PostgreSQL's
WAL stream is one of ``(cluster WAL)``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector import schema as S
from detector.formats.mariadb import CLUSTER_BINLOG
from detector.pipeline import read_events
from detector.rejects import Quarantine
from tests.integration.conftest import mariadb_server


@pytest.fixture(scope="module")
def logs(server_dir: Callable[[str], Path]) -> tuple[Path, Path]:
    directory = server_dir("mariadb-binlog")
    with mariadb_server(directory, {"log_bin": str(directory / "binlog"), "server_id": "1"}) as db:
        server: Any = db
        server.sql(
            "CREATE DATABASE shop; CREATE TABLE shop.cards(id int primary key, number text);"
            "INSERT INTO shop.cards SELECT seq, md5(seq) FROM mysql.seq_1_to_2000;"
            "CREATE USER repl@'%' IDENTIFIED BY 'pw';"
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO repl@'%';"
        )
        streamed = subprocess.run(
            ["mariadb-binlog", "--no-defaults", "--read-from-remote-server", "--to-last-log",
             "-h127.0.0.1", f"-P{server.port}", "-urepl", "-ppw", "binlog.000001"],
            capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        assert b"shop.cards" in streamed  # the table's changes left the server
        # and a replica of the server, replicating them
        with mariadb_server(server_dir("mariadb-replica"), {"server_id": "2"}) as copy:
            replica: Any = copy
            replica.sql(
                f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={server.port},"
                " MASTER_USER='repl', MASTER_PASSWORD='pw', MASTER_USE_GTID=no,"
                " MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=4; START SLAVE;"
            )
            deadline = time.monotonic() + 60
            while not _replicated(replica, "shop.cards", 2000):
                assert time.monotonic() < deadline, "the replica did not catch up"
                time.sleep(0.2)
        server.client("repl", "pw", "", "SELECT 'the end'")
        deadline = time.monotonic() + 10
        while "the end" not in server.slow_log.read_text(errors="replace"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        return server.audit_log, server.slow_log


def _replicated(replica: Any, table: str, rows: int) -> bool:
    """Whether the replica holds ``table`` with its ``rows`` yet (until its replication
    thread has made the table, asking for it is an error)."""
    try:
        return str(rows) in replica.sql(f"SELECT count(*) FROM {table}")
    except RuntimeError:  # the table is not there yet
        return False


@pytest.mark.parametrize("read", ["both", "audit", "slow"])
def test_a_binary_log_stream_is_an_export_of_the_cluster_binlog(
    logs: tuple[Path, Path], read: str
) -> None:
    """One export of ``(cluster binlog)`` by repl for each client, mariadb-binlog's and
    the replica's, its volume unknown (the ``SET``'s 11 bytes are its OK packet, not the
    stream); before, a MISC statement."""
    audit, slow = logs
    paths = {"both": [audit, slow], "audit": [audit], "slow": [slow]}[read]
    quarantine = Quarantine(None)
    events, _ = read_events(paths, quarantine=quarantine)
    assert quarantine.total == 0, dict(quarantine.counts)
    exports = events.filter(pl.col(S.EXPORT))
    assert (
        exports.select(S.ACCOUNT, S.OBJECTS, S.CLASS, S.ROWS, S.BYTES).rows()
        == [("repl", [CLUSTER_BINLOG], "READ", None, None)] * 2
    )
    assert exports[S.QUERY].to_list() == [
        "SET @master_binlog_checksum='NONE'",  # mariadb-binlog
        "SET @master_binlog_checksum= @@global.binlog_checksum",  # the replica
    ]
