"""Dependencies of the routes: the service, its store, the settings, and access checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Scope, Tokens
from api.service import Service
from detector.live.store import Store
from detector.settings import Settings

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from api_tokens (or state_dir/api-token), as `Authorization: Bearer ...`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _service(request: Request) -> Service:
    return cast(Service, request.app.state.service)


async def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def _store(service: Annotated[Service, Depends(_service)]) -> Store:
    return service.store


ServiceDep = Annotated[Service, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]


def check(request: Request, credentials: HTTPAuthorizationCredentials | None, scope: Scope) -> None:
    """Raise 401 for a missing or unknown token, 403 for a token without ``scope``."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers=challenge)
    tokens = cast(Tokens, request.app.state.tokens)
    granted = tokens.scopes(credentials.credentials)
    if not granted:
        raise HTTPException(
            401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    if scope not in granted:
        raise HTTPException(403, f"this token lacks the {scope} scope")


def require(scope: Scope) -> Any:
    """A route dependency that lets only tokens with ``scope`` through."""

    async def dependency(request: Request, credentials: Credentials) -> None:
        check(request, credentials, scope)

    return Depends(dependency)


def unless_open(setting: Callable[[Settings], bool]) -> Any:
    """Open when ``setting(settings)`` is true (e.g. ``open_metrics``), else read scope."""

    async def dependency(request: Request, credentials: Credentials, settings: SettingsDep) -> None:
        if not setting(settings):
            check(request, credentials, Scope.READ)

    return Depends(dependency)


READ = require(Scope.READ)
INGEST = require(Scope.INGEST)
ADMIN = require(Scope.ADMIN)
METRICS_ACCESS = unless_open(lambda s: s.open_metrics)
HEALTH_ACCESS = unless_open(lambda s: s.open_health)
