"""The API in a process of its own, beside the ingest process.

Parsing and scoring hold the GIL for much of their time; an API served from the same
process waits for it at every step of every request (p99 2.5 s at 500 requests/s while
ingesting 100,000 lines/s). So ``serve`` runs uvicorn in a child process: it reads
scored windows and alerts from the SQLite state itself (WAL: readers never wait for the
ingest's commits) and writes feedback there, and asks the ingest process, over a
``multiprocessing`` manager (a private Unix socket with a random key), only what lives
there: readiness, the model in use, the metrics and pushed log lines. Those questions
are asked from a few threads of their own and answered within a time limit: an ingest
process stopped (``kill -STOP``) or stuck gets "not ready" and a 503, not requests that
hang until every worker thread of the API waits on it.

``host`` runs in the ingest process; ``serve_api`` is the child's entry point.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.managers import BaseManager, BaseProxy
from typing import Any, Final, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.auth import Tokens
from api.service import Service
from detector.live.store import SqliteStore, Store
from detector.settings import Settings

log = logging.getLogger("trovewatch.api")

EXPOSED: Final = ("manifest", "problems", "push", "exposition")
# Seconds the API waits for the ingest process to answer: readiness, the manifest and the
# metrics are answered there in milliseconds, from a thread parsing does not hold up.
ANSWER_WITHIN: Final = 5.0
# A push waits there up to 70 s: 10 to be queued, 60 for its events to be saved.
PUSH_WITHIN: Final = 90.0


class _Guest(BaseManager):
    """The API process's end of the control channel."""


_Guest.register("service", exposed=EXPOSED)


def host(service: Service) -> tuple[str, bytes]:
    """Serve ``service``'s methods to the API process from threads of this one; returns
    the channel's address and key (to be passed to :func:`serve_api`)."""
    key = secrets.token_bytes(32)

    class Host(BaseManager):  # a class per call: register() changes the class
        """The ingest process's end of the control channel."""

    Host.register("service", callable=lambda: service, exposed=EXPOSED)
    server = Host(authkey=key).get_server()
    thread = threading.Thread(
        target=server.serve_forever, name="trovewatch-api-control", daemon=True
    )
    thread.start()
    return cast(str, server.address), key


class RemoteService:
    """The :class:`api.service.Service` of the API process: the store read here, the
    rest asked of the ingest process."""

    def __init__(self, store: Store, address: str, key: bytes) -> None:
        self._store = store
        guest = _Guest(address=address, authkey=key)
        guest.connect()
        self._remote: Any = cast(BaseProxy, guest.service())  # type: ignore[attr-defined]
        # Each thread has its own connection to the ingest process (the proxy's are per
        # thread); questions and pushes apart, so that pushes waiting for their events to
        # be saved do not hold readiness up.
        self._questions = ThreadPoolExecutor(4, thread_name_prefix="trovewatch-ask")
        self._pushes = ThreadPoolExecutor(4, thread_name_prefix="trovewatch-push")

    @property
    def store(self) -> Store:
        return self._store

    def exposition(self) -> bytes:
        return cast(bytes, self._ask(self._questions, ANSWER_WITHIN, self._remote.exposition))

    def manifest(self) -> dict[str, Any]:
        return cast(
            dict[str, Any], self._ask(self._questions, ANSWER_WITHIN, self._remote.manifest)
        )

    def problems(self) -> list[str]:
        try:
            return cast(list[str], self._ask(self._questions, ANSWER_WITHIN, self._remote.problems))
        except TimeoutError as exc:  # (an OSError: first)
            return [str(exc)]
        except (OSError, EOFError):
            return ["the ingest process does not answer"]

    def push(self, body: bytes, format: str) -> dict[str, Any]:
        # ValueError and TimeoutError raised there are raised here, as they were.
        pushed = self._ask(self._pushes, PUSH_WITHIN, self._remote.push, body, format)
        return cast(dict[str, Any], pushed)

    def _ask(
        self, threads: ThreadPoolExecutor, within: float, method: Callable[..., Any], *args: Any
    ) -> Any:
        """``method(*args)`` (of the ingest process's service, through the proxy) in one
        of ``threads``, answered within ``within`` seconds, or TimeoutError (HTTP 503). A
        question still queued then is dropped; one under way is answered to no one once
        the ingest process goes on."""
        future: Future[Any] = threads.submit(method, *args)
        try:
            return future.result(timeout=within)
        except TimeoutError:
            if future.done():  # answered meanwhile, or the ingest process's own TimeoutError
                return future.result()
            future.cancel()
            raise TimeoutError(
                f"the ingest process has not answered in {within:g} s: it is stopped (kill "
                "-STOP?) or stuck; nothing is read or scored meanwhile. Restart trovewatch if "
                "it does not go on: it resumes from the last checkpoint"
            ) from None


def _exit_with_parent() -> None:
    """End this process as soon as the ingest process is gone (even by ``kill -9``),
    so that it never holds the port on its own."""
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - only ever started as a child
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="trovewatch-parent-watch", daemon=True).start()


class _JsonErrors(HttpToolsProtocol):
    """uvicorn's HTTP/1.1, answering a request it cannot parse (a 100 KB query string, a
    malformed header) in JSON, as the app answers every other error."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": msg}).encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join([*head, body]))
        self.transport.close()


def serve_api(
    settings: Settings, tokens: Tokens, sock: socket.socket, address: str, key: bytes, base: str
) -> None:
    """The API process: uvicorn on ``sock`` (bound by the ingest process) until SIGTERM
    or SIGINT, or until the ingest process is gone."""
    _exit_with_parent()
    # A SIGHUP sent to the whole service (systemctl kill -s HUP) is the ingest process's
    # to answer; it would end this one.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="trovewatch: %(levelname)s: %(message)s")
    from api.app import create_app  # here: the ingest process does not need FastAPI

    store = SqliteStore(settings.state_dir, base_window=base)
    app = create_app(RemoteService(store, address, key), settings, tokens)
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=_JsonErrors)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
