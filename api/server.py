"""``trovewatch serve``: load the model, start the ingest loop, serve the API.

The ingest loop runs in this process; the API in a child process of its own
(:mod:`api.process`), so that parsing and scoring never hold the GIL an API request
waits for. This process binds the listening socket (errors in one line, before anything
starts) and hands it to the child, which ends when this process does and is started
again when it ends by itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import http.client
import ipaddress
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from api import process
from api.auth import Tokens
from detector import model
from detector.cli import StorageError, UsageError
from detector.live import stopping
from detector.live.metrics import Metrics
from detector.live.retraining import resume
from detector.live.service import Service
from detector.live.store import StoreDamaged, StoreError
from detector.settings import Settings

log = logging.getLogger("trovewatch")
# In the state directory: held by the running serve (_state_lock), its process id inside.
LOCK_FILE: Final = "serve.lock"
# The open files limit taken when the hard limit is unlimited (Linux's default fs.nr_open).
OPEN_FILES_CEILING: Final = 1 << 20
_NO_LOCK_FILE: Final = frozenset({errno.EROFS, errno.EACCES, errno.ENOSPC, errno.EDQUOT})
# An API process that ends by itself is started again, up to this many times in this
# many seconds; one more and serve stops (a crash loop is its supervisor's to see).
API_RESTARTS: Final = 5
API_RESTART_PERIOD: Final = 300
API_RESTART_DELAY: Final = 1.0
# The API process is asked for /healthz every API_PROBE_EVERY s; not answering within
# API_PROBE_WITHIN s, for API_SILENT_FOR s on end, it is taken for stopped or stuck.
API_PROBE_EVERY: Final = 10.0
API_PROBE_WITHIN: Final = 5.0
API_SILENT_FOR: Final = 30.0


def run(settings: Settings, model_dir: Path) -> int:
    """Serve until interrupted; return the exit code. Errors in the model, settings or
    state directory are raised before anything starts (the CLI prints them in one line)."""
    logging.basicConfig(level=logging.INFO, format="trovewatch: %(levelname)s: %(message)s")
    # A SIGTERM while starting (caught since the entry point, see stopping) stops serve
    # with 0 at the next of these checks: between two steps, so none is left half-done.
    if stopping.requested():
        return 0
    trained, retrained = resume(model.load(model_dir), settings)
    if stopping.requested():
        return 0
    if retrained is not None:
        model_dir = retrained  # the newest retraining of the model given
    _raise_open_files_limit()
    listening = _listen(settings.host, settings.port)
    _warn_if_open_beyond_this_machine(settings, listening)
    with listening:
        # Owner only: the API token, alerts, and quarantined log lines (statement text).
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _state_lock(settings.state_dir):
            return _run_locked(settings, model_dir, trained, listening)


def _run_locked(
    settings: Settings, model_dir: Path, trained: model.TrainedModel, listening: socket.socket
) -> int:
    """:func:`run`, once the state directory is this process's alone."""
    try:
        tokens, new_token = Tokens.ensure(settings, settings.state_dir)
    except ValueError as exc:
        raise UsageError(f"api_tokens: {exc}") from exc
    try:
        service = Service(trained, settings, settings.follow, model_dir)
    except StoreDamaged as exc:
        raise StorageError(str(exc)) from exc
    except (StoreError, ValueError) as exc:
        raise UsageError(
            f"state directory {settings.state_dir}: {exc} (use another --state-dir)"
        ) from exc
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"trovewatch: serving {url} (API docs {url}/docs, metrics {url}/metrics)\n"
        f"trovewatch: model {model_dir} ({trained.manifest.training.get('accounts')} "
        f"accounts), following {', '.join(settings.follow)}, state in {settings.state_dir}",
        file=sys.stderr,
    )
    if new_token is not None:
        print(
            f"trovewatch: created a read token (shown once; kept in "
            f"{settings.state_dir / 'api-token'}):\n{new_token}",
            file=sys.stderr,
        )
    try:
        if stopping.requested():
            return 0
        service.start()
        return _serve_api(settings, tokens, listening, service)
    finally:
        service.stop()


@contextmanager
def _state_lock(state_dir: Path) -> Iterator[None]:
    """Hold ``serve``'s lock on ``state_dir`` while it runs. A second ``serve`` on the
    same state would read the same logs into the same database, each overwriting the
    other's checkpoints: it is refused in one line, naming the first's process id. The
    kernel lets go of the lock when the process ends, by ``kill -9`` too."""
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # a read-only or full disk: serve starts, and says so
        if exc.errno not in _NO_LOCK_FILE:
            raise
        try:
            fd = os.open(path, os.O_RDONLY)  # a lock is taken on a read-only file too
        except FileNotFoundError:
            yield  # none to take: a second serve could not write here either
            return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(
                f"state directory {state_dir} is in use by another trovewatch serve "
                f"(pid {holder}); stop it, or give this one another --state-dir"
            ) from None
        with contextlib.suppress(OSError):  # the pid is for the message above only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _serve_api(
    settings: Settings, tokens: Tokens, listening: socket.socket, service: Service
) -> int:
    """Run the API process until SIGINT or SIGTERM (0), or until it keeps ending (1):
    see :class:`_ApiProcess`."""
    address, key = process.host(service)

    def start_api() -> BaseProcess:
        api = multiprocessing.get_context("spawn").Process(
            target=process.serve_api,
            args=(settings, tokens, listening, address, key, service.trained.horizons.base),
            name="trovewatch-api",
        )
        api.start()
        return api

    previous = stopping.catch(signal.SIGINT, signal.SIGTERM)
    api: _ApiProcess | None = None
    try:
        if stopping.requested():
            return 0
        api = _ApiProcess(start_api, listening.getsockname(), service.metrics)
        # Every thread but this one, which only watches the API process.
        _lower_priority(settings.ingest_nice)
        hangups = stopping.hangups()
        while not stopping.requested():
            time.sleep(0.1)
            if stopping.hangups() > hangups:
                hangups = stopping.hangups()
                log.warning(
                    "SIGHUP: serve has nothing to reload (the settings, the tokens and the "
                    "model are read at start); restart it to change them. Running on."
                )
            if not api.watch():
                return 1
            if not service.alive():  # a restart (systemd's) begins it again
                log.error("the ingest loop has ended by itself; stopping")
                return 1
        return 0
    finally:
        if api is not None:
            api.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


class _ApiProcess:
    """The API process, watched from serve's main thread. One that ends by itself
    (``kill -9``, the kernel's out-of-memory killer), or that stops answering HTTP on its
    socket for ``API_SILENT_FOR`` s (``kill -STOP``, a stuck event loop), is started
    again on the same socket, the ingest going on meanwhile; one that keeps ending (more
    than ``API_RESTARTS`` times in ``API_RESTART_PERIOD`` s) is left ended, for serve to
    stop and its supervisor to see."""

    def __init__(
        self, start: Callable[[], BaseProcess], address: tuple[Any, ...], metrics: Metrics
    ) -> None:
        self._start = start
        self._address = _loopback(address)
        self._metrics = metrics
        self._ended: deque[float] = deque()  # when it ended by itself, lately
        self._began()

    def _began(self) -> None:
        self.process = self._start()
        self._answered = self._next_probe = time.monotonic()

    def watch(self) -> bool:
        """Look at it once: ask whether it answers (every ``API_PROBE_EVERY`` s), and start
        it again if it ended; False when it has ended too often."""
        now = time.monotonic()
        if self.process.is_alive() and now >= self._next_probe:
            self._next_probe = now + API_PROBE_EVERY
            if _answers(self._address, API_PROBE_WITHIN):
                self._answered = now
            elif now - self._answered >= API_SILENT_FOR:
                log.error(
                    "the API process has not answered on %s port %d for %d s: it is stopped "
                    "(kill -STOP?) or stuck; ending it",
                    *self._address,
                    now - self._answered,
                )
                self.process.kill()
                self.process.join()
        if self.process.is_alive() or _stop_requested_within(API_RESTART_DELAY):
            return True  # a stop sent to both processes (systemctl stop) ends the API first
        how = _how_it_ended(self.process.exitcode)
        now = time.monotonic()
        self._ended.append(now)
        while self._ended[0] < now - API_RESTART_PERIOD:
            self._ended.popleft()
        if len(self._ended) > API_RESTARTS:
            log.error(
                "the API process ended %d times in %d s, the last %s; stopping",
                len(self._ended),
                API_RESTART_PERIOD,
                how,
            )
            return False
        log.error("the API process ended (%s); starting it again, the ingest goes on", how)
        self._metrics.api_restarts.inc()
        self._began()
        return True

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()  # uvicorn's graceful shutdown
            self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _loopback(address: tuple[Any, ...]) -> tuple[str, int]:
    """Where to reach a socket listening on ``address`` from this machine."""
    host, port = address[0], address[1]
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    return wildcard.get(host, host), port


def _answers(address: tuple[str, int], within: float) -> bool:
    """Whether an HTTP server at ``address`` answers a request within ``within`` s:
    any answer, a 401 or a 503 too."""
    conn = http.client.HTTPConnection(*address, timeout=within)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return True


def _stop_requested_within(seconds: float) -> bool:
    """Whether a stop is requested, waiting up to ``seconds`` for one."""
    deadline = time.monotonic() + seconds
    while not stopping.requested() and time.monotonic() < deadline:
        time.sleep(0.05)
    return stopping.requested()


def _how_it_ended(exitcode: int | None) -> str:
    """``exitcode`` of a process, in words: "killed by SIGKILL", "exit code 1"."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _lower_priority(nice: int) -> None:
    """Raise the nice value of every thread of this process but the calling one by
    ``nice`` (threads made later inherit it from the thread making them): on a busy
    machine the API process gets the cores first, and one started again from the calling
    thread keeps the API's priority. Linux keeps a nice value per thread; elsewhere the
    process's is raised, the calling thread's too."""
    if nice <= 0:
        return
    try:
        tasks = [int(t.name) for t in Path("/proc/self/task").iterdir()]
    except OSError:
        tasks = None
    try:
        if tasks is None:
            os.nice(nice)
            return
        for tid in tasks:
            if tid == threading.get_native_id():
                continue
            try:
                current = os.getpriority(os.PRIO_PROCESS, tid)
                os.setpriority(os.PRIO_PROCESS, tid, min(current + nice, 19))
            except ProcessLookupError:  # the thread ended meanwhile
                continue
    except OSError as exc:  # e.g. setpriority denied by a seccomp filter
        log.warning("cannot lower the ingest's CPU priority (ingest_nice): %s", exc)


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one. ``serve`` holds each followed
    file open (a renamed file's tail is read through its descriptor), and a log directory
    of a month of hourly files passes the usual soft limit of 1,024 (systemd's default):
    past it, files, the state database and the quarantine could not be opened."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else OPEN_FILES_CEILING
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d: %s", soft, exc)


def _listen(host: str, port: int) -> socket.socket:
    """The API's listening socket; fails early, in one line, when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        # proto (TCP) too: asyncio sets TCP_NODELAY only on sockets that say they are
        # TCP; without it Nagle and delayed ACKs hold each answer back ~40 ms.
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def _warn_if_open_beyond_this_machine(settings: Settings, listening: socket.socket) -> None:
    """A warning when the API listens beyond loopback while some routes need no token:
    /metrics names the flagged accounts."""
    address = ipaddress.ip_address(listening.getsockname()[0])
    open_routes = [
        routes
        for routes, is_open in (
            ("/metrics (open_metrics)", settings.open_metrics),
            ("/healthz, /readyz (open_health)", settings.open_health),
        )
        if is_open
    ]
    if address.is_loopback or not open_routes:
        return
    log.warning(
        "listening on %s, beyond this machine, with %s open to anyone who reaches it, no "
        "token asked (/metrics names the flagged accounts): set those to false, or keep "
        "the API on 127.0.0.1 behind a proxy",
        settings.host,
        " and ".join(open_routes),
    )
