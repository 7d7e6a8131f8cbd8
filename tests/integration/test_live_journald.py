"""Logs sent to syslog on a machine whose journal keeps them (systemd-journald, no syslog
daemon writing files), read as ``journalctl`` prints them: a real PostgreSQL 15 + pgAudit
(``log_destination = 'syslog'``) and a real MariaDB (``server_audit_output_type =
syslog``), a real systemd-journald on ``/dev/log``.

``journalctl``'s text output is not the file rsyslog writes: ``-o short`` pads the day
(``Dec 01``), ``-o short-precise`` adds microseconds, ``-o short-iso`` writes the offset
without a colon (``+0000``), and a tab in a message is written as eight spaces (a
statement's further lines begin with one). Each of its four text outputs gives the events
of the server's own log.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pg_cluster import PgCluster

from detector import formats
from tests.conftest import unavailable
from tests.integration import test_live_mariadb_syslog as mariadb_syslog
from tests.integration import test_live_postgres_syslog as postgres_syslog
from tests.integration.conftest import (
    DEV_LOG,
    listening,
    mariadb_server,
    pg_cluster,
    wait_for_logs,
)

pytestmark = pytest.mark.postgres

JOURNALD = Path("/lib/systemd/systemd-journald")
JOURNAL_SYSLOG = Path("/run/systemd/journal/dev-log")  # journald's syslog socket
OUTPUTS = ["short", "short-precise", "short-iso", "short-iso-precise"]
LOCAL6, LOCAL7 = 22, 23  # syslog facility numbers


@pytest.fixture(scope="module")
def journal() -> Iterator[Callable[[int], dict[str, Path]]]:
    """A real systemd-journald with ``/dev/log`` its syslog socket; a function printing
    the journal's records of a syslog facility since the fixture began, with each of
    :data:`OUTPUTS`, to files."""
    if not JOURNALD.exists() or shutil.which("journalctl") is None:
        unavailable("systemd-journald or journalctl not installed (Debian package systemd)")
    if DEV_LOG.exists() and listening(DEV_LOG):
        unavailable("another syslog daemon owns /dev/log")
    running = JOURNAL_SYSLOG.exists() and listening(JOURNAL_SYSLOG)
    daemon = None if running else subprocess.Popen([str(JOURNALD)], start_new_session=True)
    deadline = time.monotonic() + 10
    while not (JOURNAL_SYSLOG.exists() and listening(JOURNAL_SYSLOG)):
        if time.monotonic() > deadline:
            unavailable("systemd-journald did not open its syslog socket")
        time.sleep(0.05)
    DEV_LOG.unlink(missing_ok=True)  # a stale socket of a daemon gone
    DEV_LOG.symlink_to(JOURNAL_SYSLOG)
    since = int(datetime.now(UTC).timestamp()) - 1
    out = Path(tempfile.mkdtemp(prefix="trovewatch-journal-"))

    def printed(facility: int) -> dict[str, Path]:
        files = {}
        for output in OUTPUTS:
            path = out / f"{facility}.{output}"
            with path.open("wb") as fh:
                subprocess.run(
                    ["journalctl", "--no-pager", "-o", output, f"SYSLOG_FACILITY={facility}",
                     "--since", f"@{since}"],
                    stdout=fh, check=True,
                )  # fmt: skip
            files[output] = path
        return files

    try:
        yield printed
    finally:
        DEV_LOG.unlink(missing_ok=True)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        shutil.rmtree(out, ignore_errors=True)


def wait_for_journal(printed: Callable[[int], dict[str, Path]], facility: int, marker: str) -> None:
    deadline = time.monotonic() + 10
    while marker not in printed(facility)["short"].read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{marker!r} did not reach the journal"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def postgres_journal(
    journal: Callable[[int], dict[str, Path]], server_dir: Callable[[str], Path]
) -> tuple[Path, dict[str, Path]]:
    """The stderr log of a server that logged the syslog tests' workload to stderr and
    syslog (local6), and the journal's records of it in each output."""
    settings = postgres_syslog.syslog_server("local6")
    pg: PgCluster
    with pg_cluster(server_dir("pg"), settings) as pg:
        postgres_syslog.workload(pg, "the end")
        wait_for_journal(journal, LOCAL6, "the end")
        wait_for_logs(pg.log_dir, "the end")
    return pg.log_dir / "postgresql.log", journal(LOCAL6)


@pytest.mark.parametrize("output", OUTPUTS)
def test_journalctl_prints_of_postgresql_give_the_events_of_its_stderr_log(
    postgres_journal: tuple[Path, dict[str, Path]], output: str
) -> None:
    """Statements of several lines (their further lines tab-indented: eight spaces
    here), over 900 bytes (cut in parts), four sessions at once."""
    stderr_log, printed = postgres_journal
    path = printed[output]
    assert formats.get("auto", path).name == "pgaudit-syslog"
    assert " " * 8 in path.read_text()  # journalctl wrote the tabs as spaces
    postgres_syslog.assert_reads_as(path, stderr_log)


@pytest.fixture(scope="module")
def mariadb_journal(
    journal: Callable[[int], dict[str, Path]], server_dir: Callable[[str], Path]
) -> tuple[Path, dict[str, Path]]:
    """The audit file of a server that ran the MariaDB syslog tests' workload, and the
    journal's records of the same workload on a server sending them to syslog (local7)."""
    with mariadb_server(server_dir("mariadb")) as filed:
        mariadb_syslog.workload(filed)
    settings = {"server_audit_output_type": "syslog", "server_audit_syslog_facility": "LOG_LOCAL7"}
    with mariadb_server(server_dir("mariadb"), settings) as sent:
        mariadb_syslog.workload(sent)
        wait_for_journal(journal, LOCAL7, "the end")
    return filed.audit_log, journal(LOCAL7)


@pytest.mark.parametrize("output", OUTPUTS)
def test_journalctl_prints_of_mariadbs_audit_records_give_the_events_of_its_file(
    mariadb_journal: tuple[Path, dict[str, Path]], output: str
) -> None:
    audit, printed = mariadb_journal
    path = printed[output]
    assert formats.get("auto", path).name == "mariadb-audit-syslog"
    got, expected = mariadb_syslog.read(path)[0], mariadb_syslog.read(audit)[0]
    assert mariadb_syslog.comparable(got).equals(mariadb_syslog.comparable(expected))
