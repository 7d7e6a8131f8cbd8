"""The API in a process of its own, beside the ingest process.

Parsing and scoring hold the GIL for much of their time; an API served from the same
process waits for it at every step of every request (p99 2.5 s at 500 requests/s while
ingesting 100,000 lines/s). So ``serve`` runs uvicorn in a child process: it reads
scored windows and alerts from the SQLite state itself (WAL: readers never wait for the
ingest's commits) and writes feedback there, and asks the ingest process, over a
``multiprocessing`` manager (a private Unix socket with a random key), only what lives
there: readiness, the model in use, the metrics and pushed log lines.

``host`` runs in the ingest process; ``serve_api`` is the child's entry point.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import socket
import threading
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

    @property
    def store(self) -> Store:
        return self._store

    def exposition(self) -> bytes:
        return cast(bytes, self._remote.exposition())

    def manifest(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._remote.manifest())

    def problems(self) -> list[str]:
        try:
            return cast(list[str], self._remote.problems())
        except (OSError, EOFError):
            return ["the ingest process does not answer"]

    def push(self, body: bytes, format: str) -> dict[str, Any]:
        # ValueError and TimeoutError raised there are raised here, as they were.
        return cast(dict[str, Any], self._remote.push(body, format))


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
    logging.basicConfig(level=logging.INFO, format="trovewatch: %(levelname)s: %(message)s")
    from api.app import create_app  # here: the ingest process does not need FastAPI

    store = SqliteStore(settings.state_dir, base_window=base)
    app = create_app(RemoteService(store, address, key), settings, tokens)
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=_JsonErrors)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
