"""``serve`` closes windows at fixed boundaries while a real MariaDB server writes its two
logs: wherever a boundary falls among a statement's records, the statement is counted
once, in the window ``score`` files it in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from detector import formats, model
from detector import schema as S
from detector.formats import mariadb
from detector.reader import Chunk
from tests.conftest import mariadb_windows_cut_at
from tests.integration.conftest import mariadb_server

REPO = Path(__file__).parents[2]
# 0.6 s each: a run of them in one connection crosses a second every other statement.
# Each has a text of its own: runs of one text in a connection seconds apart are paired
# with their slow records in order only once both logs have all of them (a known limit
# at a cutoff, docs/formats-mariadb.md).
SLOW_READS = [f"SELECT sleep(0.3), id, {n} AS run FROM salaries WHERE id <= 2" for n in range(6)]


@pytest.fixture(scope="module")
def logs(server_dir: Callable[[str], Path]) -> Iterator[tuple[Path, Path]]:
    """The audit and slow logs of a server (the recommended settings) on which one
    connection ran six reads of 0.6 s each."""
    with mariadb_server(server_dir("mariadb")) as server:
        server.sql(
            "CREATE DATABASE hr; USE hr; CREATE TABLE hr.salaries(id int primary key, salary int);"
            "INSERT INTO hr.salaries SELECT seq, seq * 10 FROM seq_1_to_500;"
            "CREATE USER 'slowpoke'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON hr.* TO 'slowpoke'@'%';"
        )
        server.client("slowpoke", "pw", "hr", ";".join([*SLOW_READS, "SELECT 'the end'"]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            "the end" in log.read_text(errors="replace")
            for log in (server.audit_log, server.slow_log)
        ):
            time.sleep(0.1)
        yield server.audit_log, server.slow_log


def parsed(name: str, path: Path) -> pl.DataFrame:
    return formats.native(name).parse(Chunk(str(path), path.read_bytes(), 1)).events


def test_a_close_anywhere_among_a_statements_records_counts_it_once_where_score_does(
    logs: tuple[Path, Path],
) -> None:
    """A statement running across a second boundary has its TABLE record a second
    before its QUERY record, and its slow record, filed at its start to the second plus
    its duration, before its audit record. A close between them used to count the
    statement twice, without its rows in the first window (the flaky
    ``test_serve_puts_a_local_time_servers_audit_log_on_utc`` when its workload ran
    across a 5-minute boundary). A cutoff at and just after each time either log gives a
    record: every window counts what ``score`` counts, and no event is late."""
    audit_log, slow_log = logs
    audit = parsed("mariadb-audit", audit_log).filter(pl.col(S.ACCOUNT) == "slowpoke")
    slow = parsed("mariadb-slow", slow_log).filter(pl.col(S.ACCOUNT) == "slowpoke")
    slow_ends = slow.select(mariadb.slow_end(pl.col(S.TIME), pl.col(S.DURATION_MS)))[S.TIME]
    read = pl.col(S.QUERY).is_in(SLOW_READS)
    reads, slow_reads = audit.filter(read), slow.filter(read)
    ends = slow_reads.select(mariadb.slow_end(pl.col(S.TIME), pl.col(S.DURATION_MS)))[S.TIME]
    # What makes these logs the case: both records of some statement on either side of
    # a second, and some statement's TABLE record a second before its QUERY record.
    assert reads.height == ends.len() == 6
    assert (reads[S.TIME] > ends).any()
    lines = [line.split(",") for line in audit_log.read_text().splitlines()]
    pieces = [(fields[5], fields[0]) for fields in lines if fields[2] == "slowpoke"]
    opened = {statement: at for statement, at in reversed(pieces)}  # its first record
    assert any(at > opened[statement] for statement, at in pieces)
    trained = model.load(REPO / "models" / "default")
    times = pl.concat([audit[S.TIME], slow_ends]).unique().sort()
    for cut in [*times, *(t + timedelta(microseconds=1) for t in times)]:
        live, batch, late = mariadb_windows_cut_at(trained, audit_log, slow_log, cut)
        assert live.equals(batch), f"cut at {cut}:\n{live}\n{batch}"
        assert late == 0, cut
