"""Throw-away MariaDB server with the server_audit plugin and the slow query log at
``long_query_time = 0``, for tests and data-generation scripts.

Library use::

    from mariadb_server import MariadbServer, find_mariadbd

    with MariadbServer(tmp / "mariadb", port=33061) as db:
        db.sql("SELECT 1")                      # as root, over the socket
        db.client("bob", "pw", "shop", "SELECT * FROM t")   # over TCP, as a user
    # db.audit_log, db.slow_log

Command line::

    python scripts/mariadb_server.py start DIR --port N
    python scripts/mariadb_server.py stop DIR

The server runs in the foreground of its own process group with ``--datadir``,
``--socket`` and ``--port`` on 127.0.0.1, and writes ``server_audit.log`` and
``slow.log`` under ``DIR/log``, with :data:`SETTINGS` (``MariadbServer(settings=...)``
overrides or adds server options). As root it runs as the ``mysql`` system user, and
``DIR`` is chowned to it (with ``o+x`` added to ancestors it could not traverse).
Times in the audit log are the server's local time: the server runs with ``TZ=UTC``, or
the ``tz`` given (``MariadbServer(tz="Europe/Berlin")``, as most servers run).

Fake clock (optional, as in ``pg_cluster.py``): with ``faketime_file`` the server runs
under ``LD_PRELOAD=libfaketime.so.1`` reading its offset from that file on every clock
read; :meth:`MariadbServer.set_clock` moves the wall clock (audit-log times and the slow
log's ``SET timestamp``) and it runs on in real time from there. Call it before
:meth:`~MariadbServer.start` to start at a chosen time; move it forward only.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

SETTINGS = {
    "plugin_load_add": "server_audit",
    "server_audit_logging": "ON",
    "server_audit_events": "CONNECT,QUERY,TABLE",
    "server_audit_output_type": "file",
    "slow_query_log": "ON",
    "long_query_time": "0",
    "log_slow_verbosity": "query_plan",
    "skip_name_resolve": "ON",
    "bind_address": "127.0.0.1",
    "secure_file_priv": "",
}


def find_mariadbd() -> Path | None:
    """The MariaDB server binary (Debian package ``mariadb-server``), or None."""
    for candidate in (shutil.which("mariadbd"), "/usr/sbin/mariadbd"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def server_audit_available() -> bool:
    """True if the server_audit plugin is installed beside the server."""
    return any(Path(d, "server_audit.so").is_file() for d in _plugin_dirs())


def _plugin_dirs() -> list[str]:
    return ["/usr/lib/mysql/plugin", "/usr/lib/x86_64-linux-gnu/mariadb19/plugin"]


def _make_traversable(path: Path) -> None:
    """Add o+x to ancestors of path that others cannot search (root runs only)."""
    for anc in path.parents:
        st = anc.stat()
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(anc, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


class MariadbServer:
    """A MariaDB server in ``base_dir`` (data in ``data/``, logs in ``log/``)."""

    def __init__(
        self,
        base_dir: Path,
        port: int,
        faketime_file: Path | None = None,
        settings: dict[str, str] | None = None,
        tz: str = "UTC",
    ) -> None:
        self.base_dir = base_dir.resolve()
        self.tz = tz
        self.settings = {**SETTINGS, **(settings or {})}
        self.faketime_file = faketime_file.absolute() if faketime_file else None
        self.port = port
        self.data_dir = self.base_dir / "data"
        self.log_dir = self.base_dir / "log"
        self.socket = self.base_dir / "mysqld.sock"
        self.audit_log = self.log_dir / "server_audit.log"
        self.slow_log = self.log_dir / "slow.log"
        self.error_log = self.log_dir / "error.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    def _user_args(self) -> list[str]:
        return ["--user=mysql"] if self._as_root else []

    def _chown(self) -> None:
        if not self._as_root:
            return
        mysql = pwd.getpwnam("mysql")
        _make_traversable(self.base_dir)
        for path in [self.base_dir, *self.base_dir.rglob("*")]:
            os.chown(path, mysql.pw_uid, mysql.pw_gid)

    def set_clock(self, when: datetime) -> None:
        """Move the server's wall clock to ``when`` (naive = UTC); it runs on from there."""
        if self.faketime_file is None:
            raise RuntimeError("set_clock() needs MariadbServer(..., faketime_file=...)")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        from pg_cluster import write_faketime

        write_faketime(self.faketime_file, f"{when.timestamp() - time.time():+.6f}s")

    def _faketime_env(self) -> dict[str, str]:
        if self.faketime_file is None:
            return {}
        from pg_cluster import LIBFAKETIME

        if LIBFAKETIME is None:
            raise RuntimeError("faketime_file given but libfaketime.so.1 is not installed")
        if not self.faketime_file.exists():
            self.set_clock(datetime.now(UTC))
        if self._as_root:
            _make_traversable(self.faketime_file)
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.faketime_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "NO_FAKE_STAT": "1",
        }

    def start(self, timeout: float = 60.0) -> None:
        binary = find_mariadbd()
        if binary is None:
            raise RuntimeError("mariadbd not found (Debian package mariadb-server)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TZ": self.tz}
        if not (self.data_dir / "mysql").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._chown()
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={self.data_dir}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    *self._user_args(),
                ],
                check=True,
                capture_output=True,
                env=env,
            )
        self._chown()
        settings = {
            **self.settings,
            "server_audit_file_path": str(self.audit_log),
            "slow_query_log_file": str(self.slow_log),
            "log_error": str(self.error_log),
            "pid_file": str(self.base_dir / "mysqld.pid"),
        }
        args = [
            str(binary),
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            *self._user_args(),
            *(f"--{k}={v}" for k, v in settings.items()),
        ]
        self._proc = subprocess.Popen(
            args, env={**env, **self._faketime_env()}, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.error_log.read_text(errors='replace')}")
            ping = subprocess.run(
                ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot", "ping"],
                capture_output=True,
            )
            if ping.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"mariadbd did not answer in {timeout}s")

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def sql(self, statements: str) -> str:
        """Run ``statements`` as root over the socket; their tab-separated output."""
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch",
             "--skip-column-names", "-e", statements],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"mariadb: {done.stderr.strip()}")
        return done.stdout

    def client(
        self, user: str, password: str, database: str, statements: str, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``statements`` as ``user`` over TCP (one connection); output as bytes. With
        ``check``, a failure raises with what the client said (a CI run once failed here
        with only its exit status to go on)."""
        done = subprocess.run(
            ["mariadb", "--no-defaults", "--protocol=TCP", "-h127.0.0.1", f"-P{self.port}",
             f"-u{user}", f"-p{password}", database, "--batch", "--skip-column-names",
             "-e", statements],
            capture_output=True,
        )  # fmt: skip
        if check and done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"mariadb as {user}: exit {done.returncode}: {said}")
        return done

    def dump(self, user: str, password: str, database: str, table: str) -> bytes:
        """``mariadb-dump`` of one table over TCP; the dump's text."""
        return subprocess.run(
            ["mariadb-dump", "--no-defaults", "--protocol=TCP", "-h127.0.0.1", f"-P{self.port}",
             f"-u{user}", f"-p{password}", database, table],
            check=True, capture_output=True,
        ).stdout  # fmt: skip

    def __enter__(self) -> MariadbServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start")
    start.add_argument("dir", type=Path)
    start.add_argument("--port", type=int, default=33061)
    stop = sub.add_parser("stop")
    stop.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "start":
        server = MariadbServer(args.dir, args.port)
        server.start()
        print(f"mariadbd running, socket {server.socket}, logs in {server.log_dir}")
        server._proc = None  # leave it running; stop with the pid file
        return 0
    pid_file = args.dir.resolve() / "mysqld.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
