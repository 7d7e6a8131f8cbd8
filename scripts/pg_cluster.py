"""Throw-away PostgreSQL 15 cluster with pgAudit, for tests and data-generation scripts.

Library use::

    from pg_cluster import PgCluster, find_pg_bin, pgaudit_available

    with PgCluster(tmp / "pg", port=54329) as pg:
        conn = psycopg.connect(pg.dsn())
        ...
    # pg.log_dir / "postgresql.log" | "postgresql.csv" | "postgresql.json"

Command line::

    python scripts/pg_cluster.py start DIR --port N [--set KEY=VALUE ...] [--faketime-file F]
    python scripts/pg_cluster.py set-clock DIR 2026-10-05T09:00:00Z --faketime-file F
    python scripts/pg_cluster.py stop DIR

Clock control (``faketime_file``): the server (and ``pg_ctl``) run under
``LD_PRELOAD=libfaketime.so.1`` with ``FAKETIME_TIMESTAMP_FILE=<file>`` and
``FAKETIME_NO_CACHE=1``, so every wall-clock read re-reads the file.  The file
holds a relative offset (``+123456s``), so the faked clock keeps running in real
time from the moment set by :meth:`PgCluster.set_clock`.  The monotonic clock is
left alone (``FAKETIME_DONT_FAKE_MONOTONIC=1``), which keeps PostgreSQL's
timeouts and latch waits sane across jumps, and file timestamps are real
(``NO_FAKE_STAT=1``).

libfaketime 0.9.10 trap, worked around here: its select()/epoll_wait()/...
wrappers switch faking off for the duration of the call.  The PG15 postmaster
sits in select() and forks autovacuum workers and background workers (parallel
query workers!) from inside signal handlers, so those children inherit "faking
off" and log the *real* time (as do postmaster messages written from signal
handlers, e.g. "received fast shutdown request").  A tiny shim, compiled with
the system C compiler into ``base_dir/faketime_fix.so`` and preloaded before
libfaketime, routes those blocking calls straight to libc.  Without a C
compiler the shim is skipped with a warning.

Start the server directly at a chosen time by calling :meth:`set_clock` before
:meth:`start`; that avoids a backward jump (after one, the checkpointer waits
for the fake clock to catch up with its last checkpoint time before its next
timed checkpoint).

When run as root the server runs as the ``postgres`` system user (``runuser``);
``base_dir`` is chowned to it, and ``o+x`` is added to any ancestor directory it
could not otherwise traverse (e.g. pytest's 0700 ``/tmp/pytest-of-root``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

__all__ = ["LIBFAKETIME", "PgCluster", "find_pg_bin", "pgaudit_available", "write_faketime"]

PG_MAJOR = "15"
SERVER_USER = "postgres"
LIBFAKETIME_CANDIDATES = (
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/faketime/libfaketime.so.1"),
    Path("/usr/local/lib/faketime/libfaketime.so.1"),
)
LIBFAKETIME: Path | None = next((p for p in LIBFAKETIME_CANDIDATES if p.exists()), None)

_BIN_TOOLS = ("initdb", "pg_ctl", "postgres")

# Preloaded before libfaketime: blocking calls go straight to libc, bypassing
# libfaketime's wrappers (which disable faking while blocked; see module doc).
_FAKETIME_FIX_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static void *libc(void) {
    static void *h;
    if (!h) h = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    return h;
}
#define REAL(name) \
    static __typeof__(name) *real_; \
    if (!real_) real_ = (__typeof__(name) *) dlsym(libc(), #name)

int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t)
{ REAL(select); return real_(n, r, w, e, t); }
int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t, const sigset_t *m)
{ REAL(pselect); return real_(n, r, w, e, t, m); }
int poll(struct pollfd *f, nfds_t n, int t)
{ REAL(poll); return real_(f, n, t); }
int ppoll(struct pollfd *f, nfds_t n, const struct timespec *t, const sigset_t *m)
{ REAL(ppoll); return real_(f, n, t, m); }
int epoll_wait(int fd, struct epoll_event *ev, int n, int t)
{ REAL(epoll_wait); return real_(fd, ev, n, t); }
int epoll_pwait(int fd, struct epoll_event *ev, int n, int t, const sigset_t *m)
{ REAL(epoll_pwait); return real_(fd, ev, n, t, m); }
int nanosleep(const struct timespec *a, struct timespec *b)
{ REAL(nanosleep); return real_(a, b); }
int clock_nanosleep(clockid_t c, int f, const struct timespec *a, struct timespec *b)
{ REAL(clock_nanosleep); return real_(c, f, a, b); }
int usleep(useconds_t u)
{ REAL(usleep); return real_(u); }
unsigned int sleep(unsigned int s)
{ REAL(sleep); return real_(s); }
"""


def _is_pg15_bin(d: Path) -> bool:
    if not all((d / tool).is_file() for tool in _BIN_TOOLS):
        return False
    try:
        out = subprocess.run(
            [str(d / "postgres"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    # "postgres (PostgreSQL) 15.18 (Debian ...)"
    parts = out.split()
    return len(parts) >= 3 and parts[2].split(".")[0] == PG_MAJOR


def find_pg_bin() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres of PostgreSQL 15, or None."""
    candidates: list[Path] = []
    env = os.environ.get("TROVEWATCH_PG_BIN")
    if env:
        candidates.append(Path(env))
    candidates.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
    candidates.append(Path(f"/usr/pgsql-{PG_MAJOR}/bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for c in candidates:
        if _is_pg15_bin(c):
            return c
    return None


def pgaudit_available(bin_dir: Path) -> bool:
    """True when pgaudit.so is in the server's pkglibdir."""
    libdirs: list[Path] = []
    pg_config = bin_dir / "pg_config"
    if pg_config.is_file():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [str(pg_config), "--pkglibdir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out:
                libdirs.append(Path(out))
    libdirs.append(bin_dir.parent / "lib")
    libdirs.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/lib"))
    return any((d / "pgaudit.so").is_file() for d in libdirs)


def _make_traversable(path: Path) -> None:
    """Add o+x to ancestors of path that others cannot search (root runs only)."""
    for anc in path.parents:
        st = anc.stat()
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(anc, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def write_faketime(path: Path, spec: str) -> None:
    """Write a libfaketime offset (``+12.5s``) to ``path`` for FAKETIME_TIMESTAMP_FILE,
    atomically: a server re-reading it on a clock read never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(spec + "\n")
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _quote(value: str) -> str:
    """postgresql.conf value: always a single-quoted literal (valid for every GUC type)."""
    if len(value) >= 2 and value.startswith("'") and value.endswith("'"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PgCluster:
    """A throw-away PostgreSQL 15 cluster with pgAudit preloaded.

    ``base_dir`` must be empty or nonexistent on first start; the data directory is
    ``base_dir/data`` and server logs go to :attr:`log_dir` (``base_dir/log``).
    """

    def __init__(
        self,
        base_dir: Path,
        port: int,
        settings: Mapping[str, str] | None = None,
        faketime_file: Path | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.port = port
        self.settings: dict[str, str] = dict(settings or {})
        self.faketime_file = Path(faketime_file).absolute() if faketime_file else None
        self.data_dir = self.base_dir / "data"
        self.log_dir: Path = self.base_dir / "log"
        self.bin_dir: Path | None = None
        self._as_root = os.geteuid() == 0

    # ------------------------------------------------------------------ config
    def default_settings(self) -> dict[str, str]:
        return {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.base_dir),
            "shared_preload_libraries": "pgaudit",
            "pgaudit.log": "read,write,ddl,role",
            "pgaudit.log_rows": "on",
            "pgaudit.log_relation": "on",
            "pgaudit.log_parameter": "on",
            "pgaudit.log_catalog": "off",
            "logging_collector": "on",
            "log_destination": "stderr,csvlog,jsonlog",
            "log_directory": str(self.log_dir),
            "log_filename": "postgresql.log",
            "log_file_mode": "0644",
            "log_rotation_age": "0",
            "log_rotation_size": "0",
            "log_line_prefix": "%m [%p] %q%u@%d %r %a ",
            "log_connections": "on",
            "log_disconnections": "on",
            "log_timezone": "UTC",
            "timezone": "UTC",
            "log_min_duration_statement": "-1",
            "lc_messages": "C",
        }

    def effective_settings(self) -> dict[str, str]:
        merged = self.default_settings()
        merged.update(self.settings)
        return merged

    # ----------------------------------------------------------------- helpers
    def _server_cmd(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """Wrap argv so it runs as the server user, with extra env vars."""
        envs = [f"{k}={v}" for k, v in (env or {}).items()]
        if self._as_root:
            return ["runuser", "-u", SERVER_USER, "--", "env", *envs, *argv]
        return ["env", *envs, *argv] if envs else list(argv)

    def _run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._server_cmd(argv, env),
            cwd=self.base_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def _bin(self, tool: str) -> str:
        if self.bin_dir is None:
            self.bin_dir = find_pg_bin()
            if self.bin_dir is None:
                raise RuntimeError(
                    "PostgreSQL 15 binaries (initdb, pg_ctl, postgres) not found; "
                    "install postgresql-15 or set TROVEWATCH_PG_BIN"
                )
        return str(self.bin_dir / tool)

    def _give_to_server_user(self, path: Path) -> None:
        if not self._as_root:
            return
        pw = pwd.getpwnam(SERVER_USER)
        for root, dirs, files in os.walk(path):
            os.chown(root, pw.pw_uid, pw.pw_gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
        _make_traversable(path)

    def _build_faketime_fix(self) -> Path | None:
        """Compile the select()/epoll_wait() bypass shim; None without a C compiler."""
        so = self.base_dir / "faketime_fix.so"
        if so.is_file():
            return so
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            warnings.warn(
                "no C compiler: parallel/autovacuum workers will log the real time "
                "instead of the faked one (libfaketime select() wrapper issue)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        src = self.base_dir / "faketime_fix.c"
        src.write_text(_FAKETIME_FIX_C)
        res = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-o", str(so), str(src), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if res.returncode != 0:
            raise RuntimeError(f"compiling {src} failed:\n{res.stderr}")
        so.chmod(0o755)
        return so

    def _faketime_env(self) -> dict[str, str]:
        if self.faketime_file is None:
            return {}
        if LIBFAKETIME is None:
            raise RuntimeError("faketime_file given but libfaketime.so.1 is not installed")
        fix = self._build_faketime_fix()
        preload = f"{fix} {LIBFAKETIME}" if fix else str(LIBFAKETIME)
        return {
            "LD_PRELOAD": preload,
            "FAKETIME_TIMESTAMP_FILE": str(self.faketime_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "NO_FAKE_STAT": "1",
        }

    def _write_faketime(self, spec: str) -> None:
        assert self.faketime_file is not None
        write_faketime(self.faketime_file, spec)

    def _tail(self, path: Path, n: int = 20) -> str:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    # --------------------------------------------------------------- lifecycle
    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def init(self) -> None:
        """initdb into base_dir/data (done by start() the first time)."""
        initdb = self._bin("initdb")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise RuntimeError(f"{self.data_dir} exists but is not a PostgreSQL data dir")
        self.log_dir.mkdir(exist_ok=True)
        self._give_to_server_user(self.base_dir)
        res = self._run(
            [
                initdb,
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                SERVER_USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
            )

    def write_config(self) -> None:
        lines = ["# written by scripts/pg_cluster.py; rewritten on every start"]
        lines += [f"{k} = {_quote(v)}" for k, v in self.effective_settings().items()]
        conf = self.data_dir / "trovewatch.conf"
        conf.write_text("\n".join(lines) + "\n")
        main = self.data_dir / "postgresql.conf"
        text = main.read_text()
        include = "include = 'trovewatch.conf'"
        if include not in text:
            main.write_text(text.rstrip("\n") + "\n\n" + include + "\n")
        self._give_to_server_user(self.base_dir)

    def start(self) -> None:
        """initdb (first time), write config, ``pg_ctl start -w``."""
        pg_ctl = self._bin("pg_ctl")
        if not pgaudit_available(Path(pg_ctl).parent):
            raise RuntimeError("pgaudit.so not found: install postgresql-15-pgaudit")
        if not self.is_initialized():
            self.init()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.faketime_file is not None and not self.faketime_file.exists():
            self._write_faketime("+0s")
        if self.faketime_file is not None and self._as_root:
            # the server user must be able to read the file
            self.faketime_file.chmod(0o644)
            _make_traversable(self.faketime_file)
        self.write_config()
        env = self._faketime_env()
        self._give_to_server_user(self.base_dir)
        startup_log = self.base_dir / "pg_ctl.log"
        # pg_ctl runs under the same fake clock as the server: `pg_ctl -w` compares
        # the postmaster.pid start time with its own clock.
        res = self._run(
            [pg_ctl, "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(startup_log)],
            env=env,
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed (exit {res.returncode}) for {self.data_dir} "
                f"on port {self.port}:\n{res.stdout}{res.stderr}\n"
                f"--- {startup_log}:\n{self._tail(startup_log)}\n"
                f"--- {self.log_dir / 'postgresql.log'}:\n"
                f"{self._tail(self.log_dir / 'postgresql.log')}"
            )

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        res = self._run([self._bin("pg_ctl"), "status", "-D", str(self.data_dir)])
        return res.returncode == 0

    def stop(self) -> None:
        """``pg_ctl stop -m fast -w``; a no-op when the server is not running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        res = self._run(
            [self._bin("pg_ctl"), "stop", "-m", "fast", "-w", "-t", "60", "-D", str(self.data_dir)]
        )
        if res.returncode != 0 and self.is_running():
            raise RuntimeError(f"pg_ctl stop failed (exit {res.returncode}):\n{res.stderr}")

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def set_clock(self, when: datetime) -> None:
        """Move the server's wall clock to ``when`` (naive = UTC); it runs on from there.

        Takes effect immediately for every server process (the file is re-read on
        each clock read); only the wall clock moves, not the monotonic clock.
        """
        if self.faketime_file is None:
            raise RuntimeError("set_clock() needs PgCluster(..., faketime_file=...)")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        offset = when.timestamp() - time.time()
        self._write_faketime(f"{offset:+.6f}s")

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -------------------------------------------------------------------------- CLI
def _parse_when(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start", help="initdb (if needed) and start a cluster in DIR")
    p_start.add_argument("dir", type=Path)
    p_start.add_argument("--port", type=int, required=True)
    p_start.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="postgresql.conf override"
    )
    p_start.add_argument("--faketime-file", type=Path)
    p_stop = sub.add_parser("stop", help="stop the cluster in DIR")
    p_stop.add_argument("dir", type=Path)
    p_clock = sub.add_parser("set-clock", help="move a faketime-driven server's clock")
    p_clock.add_argument("dir", type=Path)
    p_clock.add_argument("when", type=_parse_when, help="ISO time, e.g. 2026-10-05T09:00:00Z")
    p_clock.add_argument("--faketime-file", type=Path, required=True)
    args = ap.parse_args(argv)

    try:
        if args.cmd == "start":
            settings = {}
            for kv in args.set:
                key, sep, value = kv.partition("=")
                if not sep:
                    ap.error(f"--set expects KEY=VALUE, got {kv!r}")
                settings[key.strip()] = value
            pg = PgCluster(args.dir, args.port, settings, args.faketime_file)
            pg.start()
            print(pg.dsn())
            print(f"logs: {pg.log_dir}")
        elif args.cmd == "stop":
            PgCluster(args.dir, 0).stop()
        elif args.cmd == "set-clock":
            PgCluster(args.dir, 0, faketime_file=args.faketime_file).set_clock(args.when)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
