"""The sidecar's HTTP API: scored accounts, alerts and feedback, the model, push ingest,
health and metrics. ``create_app`` builds it around a running :class:`Service`.

Every error is JSON, ``{"error": "<short text>", ...}``; the OpenAPI document is at
``/openapi.json`` and browsable at ``/docs``.
"""

from __future__ import annotations

import logging
import sqlite3
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.auth import Tokens
from api.limits import BodyLimit
from api.models import Error
from api.routes import accounts, alerts, events, health, model
from api.service import Service
from detector.live.store import StoreError
from detector.settings import Settings

log = logging.getLogger("trovewatch.api")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": text}
    for code, text in {
        401: "missing or invalid bearer token",
        403: "the token lacks the route's scope",
        413: "request body too large",
        422: "invalid parameters or body",
        503: "state store unavailable; retry",
    }.items()
}


def _version() -> str:
    try:
        return version("trovewatch")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
    return JSONResponse(body, exc.status_code, headers=exc.headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return JSONResponse({"error": "invalid request", "problems": problems}, 422)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("state store error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"error": "state store unavailable; retry shortly"}, 503, headers={"Retry-After": "5"}
    )


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": str(exc) or "service busy; retry shortly"}, 503, headers={"Retry-After": "5"}
    )


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal error"}, 500)


def create_app(service: Service, settings: Settings, tokens: Tokens) -> FastAPI:
    """The API around ``service``; ``tokens`` from :meth:`api.auth.Tokens.ensure`."""
    app = FastAPI(
        title="trovewatch",
        version=_version(),
        description="Per-account anomaly scores, alerts and feedback from database audit logs.",
        responses=_ERRORS,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.tokens = tokens
    for router in (accounts.router, alerts.router, model.router, events.router, health.router):
        app.include_router(router)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    # The store raises StoreError, and its backend's own errors (sqlite3) when the
    # database cannot be read or written right now (locked, disk full...).
    for error in (StoreError, sqlite3.Error):
        app.add_exception_handler(error, _store_error)
    app.add_exception_handler(TimeoutError, _busy)  # Service.push could not take the body
    app.add_exception_handler(Exception, _internal)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
