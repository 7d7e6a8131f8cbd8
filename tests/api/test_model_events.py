"""GET /v1/model and POST /v1/events (push ingest)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.api.conftest import INGEST_TOKEN, MODEL, READ_TOKEN, PushService, bearer, sample_lines

INGEST = bearer(INGEST_TOKEN)


def test_model_is_the_manifest_in_use(client: TestClient) -> None:
    response = client.get("/v1/model", headers=bearer(READ_TOKEN))
    assert response.status_code == 200
    on_disk = json.loads((MODEL / "manifest.json").read_text())
    assert response.json() == on_disk


def test_push_returns_the_counts(client: TestClient, service: PushService) -> None:
    body = sample_lines(400)
    response = client.post(
        "/v1/events", params={"format": "pgaudit-jsonlog"}, content=body, headers=INGEST
    )
    assert response.status_code == 200, response.text
    counts = response.json()
    assert counts["lines"] == 400 and counts["events"] > 0
    assert service.pushed == [(len(body), "pgaudit-jsonlog")]
    auto = client.post("/v1/events", content=body, headers=INGEST).json()
    assert auto == counts


def test_rejected_lines_are_counted_by_reason(client: TestClient) -> None:
    body = sample_lines(50) + b'{"timestamp": "2026-10-19 \n' + sample_lines(60)[-200:]
    counts = client.post(
        "/v1/events", params={"format": "pgaudit-jsonlog"}, content=body, headers=INGEST
    ).json()
    assert sum(counts["rejected"].values()) >= 1


def test_an_unknown_format_is_422(client: TestClient, service: PushService) -> None:
    response = client.post(
        "/v1/events", params={"format": "syslog"}, content=sample_lines(5), headers=INGEST
    )
    assert response.status_code == 422
    assert service.pushed == []


def test_a_body_that_is_not_a_log_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/events", content=b"hello world\nthis is not a log\n", headers=INGEST
    )
    assert response.status_code == 400
    assert "not an audit log in a format trovewatch knows" in response.json()["error"]


def test_an_empty_body_is_400(client: TestClient, service: PushService) -> None:
    response = client.post("/v1/events", content=b"", headers=INGEST)
    assert response.status_code == 400
    assert response.json() == {"error": "empty body: send log lines"}
    assert service.pushed == []


def test_a_busy_service_is_503_with_retry_after(client: TestClient, service: PushService) -> None:
    def busy(body: bytes, format: str) -> dict[str, object]:
        raise TimeoutError("ingest queue full; retry later")

    service.push = busy  # type: ignore[method-assign]
    response = client.post("/v1/events", content=sample_lines(5), headers=INGEST)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"error": "ingest queue full; retry later"}
