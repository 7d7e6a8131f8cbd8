"""/healthz, /readyz, /metrics, errors and the OpenAPI document."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from detector.live.store import SqliteStore
from tests.api.conftest import READ_TOKEN, PushService, bearer


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_healthz_answers_while_every_worker_thread_waits(
    client: TestClient, service: PushService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The liveness of the API process, as serve probes it: /healthz is answered on the
    event loop, so 45 requests stuck in the 40 worker threads (an ingest process that
    does not answer, slow queries) do not make a live process look dead, and get it
    ended and started again."""
    release = threading.Event()

    def stuck() -> list[str]:
        release.wait(30)
        return []

    monkeypatch.setattr(service, "problems", stuck)
    # One event loop for every request, as uvicorn runs the app (without the block, the
    # test client gives each request a loop, and worker threads, of its own).
    with client, ThreadPoolExecutor(45) as pool:
        waiting = [pool.submit(client.get, "/readyz") for _ in range(45)]
        time.sleep(1)  # every worker thread taken
        try:
            began = time.monotonic()
            assert client.get("/healthz").json() == {"status": "ok"}
            assert time.monotonic() - began < 2
        finally:
            release.set()
        assert all(w.result().status_code == 200 for w in waiting)


def test_readyz_when_ready(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "problems": []}


def test_readyz_lists_the_service_problems(client: TestClient, service: PushService) -> None:
    service.failing.append("cannot read /var/log/postgresql/postgresql.json: permission denied")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "problems": ["cannot read /var/log/postgresql/postgresql.json: permission denied"],
    }


def test_readyz_is_503_when_the_state_store_is_gone(client: TestClient, state_dir: Path) -> None:
    shutil.rmtree(state_dir)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["problems"] == ["state store is not writable"]
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_metrics_exposition(client: TestClient, service: PushService, store: SqliteStore) -> None:
    service.metrics.events.labels("push", "pgaudit-jsonlog").inc(3)
    service.metrics.watch_flagged(lambda: store.flagged(timedelta(days=1)), cap=50)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    (events,) = families["trovewatch_events"].samples[:1]
    assert events.labels == {"source": "push", "format": "pgaudit-jsonlog"} and events.value == 3
    flagged = families["trovewatch_flagged_account"].samples
    assert [(s.labels["account"], s.labels["severity"]) for s in flagged] == [
        ("reporting_svc", "critical")
    ]


def test_errors_are_json(client: TestClient) -> None:
    missing = client.get("/v1/nothing", headers=bearer(READ_TOKEN))
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong_method = client.delete("/v1/accounts", headers=bearer(READ_TOKEN))
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_a_bad_content_length_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/events", content=b"x", headers={**bearer(READ_TOKEN), "Content-Length": "x1"}
    )
    assert response.status_code == 400


def test_openapi_declares_every_response_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model in (
        "AccountPage",
        "AccountDetail",
        "AlertPage",
        "Alert",
        "Manifest",
        "Ingested",
        "Health",
        "Readiness",
        "Error",
    ):
        assert model in schemas, model
    ok = spec["paths"]["/v1/accounts"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AccountPage"
    }
    assert "401" in spec["paths"]["/v1/alerts"]["get"]["responses"]
    assert "text/plain" in spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    feedback = spec["paths"]["/v1/alerts/{alert_id}/feedback"]["post"]["requestBody"]
    verdict = feedback["content"]["application/json"]["schema"]["properties"]["verdict"]
    assert verdict["enum"] == ["true_positive", "false_positive"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert client.get("/docs").status_code == 200


def test_a_store_that_cannot_answer_is_503_not_500(client: TestClient, store: SqliteStore) -> None:
    store.close()  # e.g. during shutdown
    response = client.get("/v1/accounts", headers=bearer(READ_TOKEN))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"error": "state store unavailable; retry shortly"}
    assert client.get("/readyz").status_code == 503
