"""``trovewatch serve``: load the model, start the ingest loop, serve the API."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import uvicorn

from api.app import create_app
from api.auth import Tokens
from detector import model
from detector.cli import UsageError
from detector.live.retraining import resume
from detector.live.service import Service
from detector.live.store import StoreError
from detector.settings import Settings


def run(settings: Settings, model_dir: Path) -> int:
    """Serve until interrupted; return the exit code. Errors in the model, settings or
    state directory are raised before anything starts (the CLI prints them in one line)."""
    logging.basicConfig(level=logging.INFO, format="trovewatch: %(levelname)s: %(message)s")
    trained, retrained = resume(model.load(model_dir), settings)
    if retrained is not None:
        model_dir = retrained  # the newest retraining of the model given
    _check_listen(settings.host, settings.port)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        tokens, new_token = Tokens.ensure(settings, settings.state_dir)
    except ValueError as exc:
        raise UsageError(f"api_tokens: {exc}") from exc
    try:
        service = Service(trained, settings, settings.follow, model_dir)
    except (StoreError, ValueError) as exc:
        raise UsageError(
            f"state directory {settings.state_dir}: {exc} (use another --state-dir)"
        ) from exc
    app = create_app(service, settings, tokens)
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"trovewatch: serving {url} (API docs {url}/docs, metrics {url}/metrics)\n"
        f"trovewatch: model {model_dir} ({trained.manifest.training.get('accounts')} accounts), "
        f"following {', '.join(settings.follow)}, state in {settings.state_dir}",
        file=sys.stderr,
    )
    if new_token is not None:
        print(
            f"trovewatch: created a read token (shown once; kept in "
            f"{settings.state_dir / 'api-token'}):\n{new_token}",
            file=sys.stderr,
        )
    service.start()
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False
    )
    try:
        uvicorn.Server(config).run()
    finally:
        service.stop()
    return 0


def _check_listen(host: str, port: int) -> None:
    """Fail early, in one line, when the address cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
