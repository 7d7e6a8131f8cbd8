"""Every /v1 route needs its scope; bodies are bounded; /metrics and health are open
unless configured otherwise."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import server
from detector.settings import Settings
from tests.api.conftest import (
    ADMIN_TOKEN,
    INGEST_TOKEN,
    READ_TOKEN,
    MakeClient,
    bearer,
    sample_lines,
)

FEEDBACK = {"verdict": "false_positive", "note": "known job"}
# (method, path template, path, scope, request keyword arguments)
ROUTES: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("GET", "/v1/accounts", "/v1/accounts", "read", {}),
    ("GET", "/v1/accounts/{account}", "/v1/accounts/web_shop", "read", {}),
    ("GET", "/v1/alerts", "/v1/alerts", "read", {}),
    (
        "POST",
        "/v1/alerts/{alert_id}/feedback",
        "/v1/alerts/1/feedback",
        "admin",
        {"json": FEEDBACK},
    ),
    ("GET", "/v1/model", "/v1/model", "read", {}),
    ("POST", "/v1/events", "/v1/events", "ingest", {"content": b"x\n"}),
]
TOKEN_OF = {"read": READ_TOKEN, "ingest": INGEST_TOKEN, "admin": ADMIN_TOKEN}
WRONG_SCOPES = [
    (method, path, kwargs, token)
    for method, _, path, scope, kwargs in ROUTES
    for other, token in TOKEN_OF.items()
    if other != scope and other != "admin"
]
ids = [f"{m} {p}" for m, _, p, _, _ in ROUTES]


def test_every_v1_route_is_in_this_table(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    served = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    }
    assert served == {(m, template) for m, template, _, _, _ in ROUTES}


@pytest.mark.parametrize(("method", "template", "path", "scope", "kwargs"), ROUTES, ids=ids)
def test_no_token_is_401_with_a_bearer_challenge(
    client: TestClient, method: str, template: str, path: str, scope: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"error": "missing bearer token"}


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {READ_TOKEN}x",
        f"Bearer {READ_TOKEN[:-1]}",
        "Bearer ",
        f"Basic {READ_TOKEN}",
        READ_TOKEN,
    ],
    ids=["longer", "shorter", "empty", "basic", "no-scheme"],
)
@pytest.mark.parametrize(("method", "template", "path", "scope", "kwargs"), ROUTES, ids=ids)
def test_a_wrong_token_is_401(
    client: TestClient,
    header: str,
    method: str,
    template: str,
    path: str,
    scope: str,
    kwargs: dict[str, Any],
) -> None:
    response = client.request(method, path, headers={"Authorization": header}, **kwargs)
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]
    assert "error" in response.json()


@pytest.mark.parametrize(("method", "path", "kwargs", "token"), WRONG_SCOPES)
def test_a_token_without_the_scope_is_403(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], token: str
) -> None:
    response = client.request(method, path, headers=bearer(token), **kwargs)
    assert response.status_code == 403
    assert response.json()["error"].startswith("this token lacks the")


@pytest.mark.parametrize(("method", "template", "path", "scope", "kwargs"), ROUTES, ids=ids)
def test_the_right_scope_and_admin_get_through(
    client: TestClient, method: str, template: str, path: str, scope: str, kwargs: dict[str, Any]
) -> None:
    for token in (TOKEN_OF[scope], ADMIN_TOKEN):
        response = client.request(method, path, headers=bearer(token), **kwargs)
        assert response.status_code not in (401, 403), response.text


def test_the_token_is_checked_before_the_body(client: TestClient) -> None:
    response = client.post(
        "/v1/alerts/1/feedback", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    response = client.post(
        "/v1/alerts/1/feedback",
        content=b"{not json",
        headers={**bearer(READ_TOKEN), "Content-Type": "application/json"},
    )
    assert response.status_code == 403


def test_an_oversized_body_is_413_before_it_is_read(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=4096)
    body = sample_lines(200)
    assert len(body) > 4096
    response = client.post("/v1/events", content=body, headers=bearer(INGEST_TOKEN))
    assert response.status_code == 413
    assert response.json() == {"error": "request body over 4,096 bytes", "max_body_bytes": 4096}


def test_an_oversized_streamed_body_is_413(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=4096)
    service = client.app.state.service  # type: ignore[attr-defined]
    chunks = iter([b"x" * 3000, b"y" * 3000, b"z" * 3000])  # chunked: no Content-Length
    response = client.post("/v1/events", content=chunks, headers=bearer(INGEST_TOKEN))
    assert response.status_code == 413
    assert response.json() == {"error": "request body over 4,096 bytes"}  # counted, not declared
    assert service.pushed == []  # never reached the service


def test_an_oversized_feedback_body_is_413(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=4096)
    response = client.post(
        "/v1/alerts/1/feedback",
        json={"verdict": "false_positive", "note": "n" * 5000},
        headers=bearer(ADMIN_TOKEN),
    )
    assert response.status_code == 413


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_metrics_and_health_are_open_by_default(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    ("setting", "paths"),
    [("open_metrics", ["/metrics"]), ("open_health", ["/healthz", "/readyz"])],
)
def test_metrics_and_health_can_need_the_read_scope(
    make_client: MakeClient, setting: str, paths: list[str]
) -> None:
    client = make_client(**{setting: False})
    for path in paths:
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bearer(INGEST_TOKEN)).status_code == 403
        assert client.get(path, headers=bearer(READ_TOKEN)).status_code == 200


@pytest.mark.parametrize(
    ("host", "open_metrics", "warned"),
    [("0.0.0.0", True, True), ("0.0.0.0", False, True), ("127.0.0.1", True, False)],
)
def test_listening_beyond_loopback_with_open_routes_is_warned_of(
    host: str, open_metrics: bool, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The API bound beyond this machine while /metrics (which names the flagged
    accounts) or the health routes need no token: serve says so at start."""
    conf = Settings(host=host, port=0, open_metrics=open_metrics)
    with socket.create_server((host, 0)) as listening:
        server._warn_if_open_beyond_this_machine(conf, listening)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert bool(said) == warned
    if warned:
        assert ("/metrics (open_metrics)" in said[0]) == open_metrics
        assert "/healthz, /readyz (open_health)" in said[0] and "127.0.0.1" in said[0]
