"""A real PostgreSQL 15 server with pgAudit for the integration tests.

Without PostgreSQL 15 and pgAudit the tests skip with the reason; with
``TROVEWATCH_REQUIRE_POSTGRES=1`` (set by CI) a missing server is a failure instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from detector import model, settings
from detector.live.service import Service
from tests.conftest import unavailable

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
from pg_cluster import PgCluster, find_pg_bin, pgaudit_available

REPO = Path(__file__).parents[2]
MODEL = REPO / "models" / "default"


def cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``trovewatch ARGS`` run as a user runs it, in its own process; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "detector", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_postgres() -> None:
    bin_dir = find_pg_bin()
    reason = None
    if bin_dir is None:
        reason = "PostgreSQL 15 server binaries not found (Debian package postgresql-15)"
    elif not pgaudit_available(bin_dir):
        reason = "pgAudit not installed (Debian package postgresql-15-pgaudit)"
    if reason is None:
        return
    if os.environ.get("TROVEWATCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}; required in CI")
    pytest.skip(reason)


def wait_for_logs(log_dir: Path, marker: str, timeout: float = 10.0) -> None:
    """Wait until ``marker`` is in all three log outputs (the collector writes lazily)."""
    deadline = time.monotonic() + timeout
    names = ("postgresql.log", "postgresql.csv", "postgresql.json")
    while time.monotonic() < deadline:
        if all(
            marker in (log_dir / n).read_text(errors="replace")
            for n in names
            if (log_dir / n).exists()
        ) and all((log_dir / n).exists() for n in names):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{marker!r} did not reach the logs in {timeout}s")


@pytest.fixture(scope="session")
def server_dir() -> Iterator[Callable[[str], Path]]:
    """New directories for database servers, which run as another user (postgres,
    mysql). Not under pytest's base directory: another pytest run resets its root to
    0700, which would cut a running server off its files and libfaketime off its clock
    file (the server's clock then jumps to the real date)."""
    root = Path(tempfile.mkdtemp(prefix="trovewatch-servers-"))
    root.chmod(0o711)
    numbers = itertools.count()

    def make(name: str) -> Path:
        path = root / f"{name}{next(numbers)}"
        path.mkdir()
        return path

    yield make
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def pg_cluster(directory: Path, settings: dict[str, str]) -> Iterator[PgCluster]:
    """A throw-away PostgreSQL 15 + pgAudit cluster in ``directory`` with ``settings``
    (postgresql.conf names and values), stopped on leaving."""
    require_postgres()
    cluster = PgCluster(directory, port=free_port(), settings=settings)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres(server_dir: Callable[[str], Path]) -> Iterator[PgCluster]:
    audit = {"pgaudit.log": "'read,write,ddl,role,misc'", "log_min_duration_statement": "0"}
    with pg_cluster(server_dir("pg"), audit) as cluster:
        yield cluster


def require_mariadb() -> None:
    """Skip without MariaDB and its server_audit plugin; fail instead in CI."""
    from mariadb_server import find_mariadbd, server_audit_available

    reason = None
    if find_mariadbd() is None:
        reason = "MariaDB server not found (Debian package mariadb-server)"
    elif not server_audit_available():
        reason = "MariaDB server_audit plugin not found (Debian package mariadb-server)"
    if reason is None:
        return
    if os.environ.get("TROVEWATCH_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; required in CI")
    pytest.skip(reason)


@contextmanager
def mariadb_server(
    directory: Path,
    settings: dict[str, str] | None = None,
    clock: datetime | None = None,
    tz: str = "UTC",
) -> Iterator[object]:
    """A throw-away MariaDB server (scripts/mariadb_server.py) in ``directory`` with its
    usual settings and ``settings`` (server option names and values) over them; with
    ``clock``, under libfaketime, started at that time; in time zone ``tz``."""
    require_mariadb()
    from mariadb_server import MariadbServer

    faketime = directory / "faketime" if clock else None
    server = MariadbServer(
        directory, port=free_port(), faketime_file=faketime, settings=settings, tz=tz
    )
    if clock:
        server.set_clock(clock)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb(server_dir: Callable[[str], Path]) -> Iterator[object]:
    """A throw-away MariaDB server (scripts/mariadb_server.py) logging every statement to
    its server_audit log and its slow query log."""
    require_mariadb()
    from mariadb_server import MariadbServer

    server = MariadbServer(server_dir("mariadb"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def follow(
    trained: model.TrainedModel,
    tmp: Path,
    writes: list[tuple[Path, bytes]],
    restart_after: int | None = None,
) -> Service:
    """A real service following the directory of the ``writes`` (each appended to its
    file, with a poll after it, as a server writing while ``serve`` reads), restarted
    after the write numbered ``restart_after``; it has read all of them on return."""
    log_dir = writes[0][0].parent
    conf = settings.Settings(state_dir=tmp / "state", follow=[str(log_dir / "*")], lateness="3650d")
    service = Service(trained, conf, conf.follow, MODEL)
    for number, (log, part) in enumerate(writes):
        with log.open("ab") as fh:
            fh.write(part)
        service.step()
        time.sleep(2.1)  # the follower's idle_flush: a last record that may still grow
        service.step()
        if number == restart_after:
            service.stop()
            service = Service(trained, conf, conf.follow, MODEL)
    return service


def clerk_and_cases(pg: PgCluster, *roles: str) -> None:
    """A role ``clerk`` that may read a table ``cases`` of 50 rows, and ``roles``
    (``CREATE ROLE`` options after the name) beside it."""
    with psycopg.connect(pg.dsn(), autocommit=True) as admin:
        for role in ("clerk LOGIN", *roles):
            admin.execute(f"CREATE ROLE {role}")
        admin.execute("CREATE TABLE cases(id int primary key, note text)")
        admin.execute("INSERT INTO cases SELECT g, 'n' || g FROM generate_series(1, 50) g")
        admin.execute("GRANT SELECT ON cases TO clerk")


DEV_LOG = Path("/dev/log")
RSYSLOG_CONF = """
global(maxMessageSize="256k")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")
template(name="traditional" type="string" string="{dir}/%syslogfacility-text%.log")
template(name="rfc3339" type="string" string="{dir}/%syslogfacility-text%.iso.log")
*.* action(type="omfile" dynaFile="traditional" template="RSYSLOG_TraditionalFileFormat")
*.* action(type="omfile" dynaFile="rfc3339" template="RSYSLOG_FileFormat")
template(name="rfc5424" type="string" string="{dir}/%syslogfacility-text%.5424.log")
*.* action(type="omfile" dynaFile="rfc5424" template="RSYSLOG_SyslogProtocol23Format")
"""


def listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def rsyslog(server_dir: Callable[[str], Path]) -> Iterator[Path]:
    """A real rsyslogd on ``/dev/log``, filing each facility's messages in
    ``DIR/<facility>.log`` (traditional lines), ``DIR/<facility>.iso.log`` (RFC 3339
    times) and ``DIR/<facility>.5424.log`` (RFC 5424)."""
    daemon = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(daemon).exists():
        unavailable("rsyslog not installed (Debian package rsyslog)")
    if DEV_LOG.exists() and listening(DEV_LOG):
        unavailable("another syslog daemon owns /dev/log")
    directory = server_dir("rsyslog")
    directory.chmod(0o755)
    conf = directory / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(dir=directory))
    pid_file = directory / "rsyslogd.pid"
    DEV_LOG.unlink(missing_ok=True)  # a stale socket of a daemon gone
    started = subprocess.run(
        [daemon, "-f", str(conf), "-i", str(pid_file)], capture_output=True, text=True
    )
    if started.returncode != 0:
        unavailable(f"rsyslogd did not start: {started.stderr.strip()}")
    deadline = time.monotonic() + 10
    while not listening(DEV_LOG):
        if time.monotonic() > deadline:
            unavailable("rsyslogd did not open /dev/log")
        time.sleep(0.05)
    try:
        yield directory
    finally:
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        DEV_LOG.unlink(missing_ok=True)


def wait_for(path: Path, marker: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and marker in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{marker!r} did not reach {path} in {timeout}s")
