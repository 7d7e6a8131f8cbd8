"""GET /v1/alerts and POST /v1/alerts/{id}/feedback."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from detector.live.store import SqliteStore
from tests.api.conftest import ADMIN_TOKEN, READ_TOKEN, bearer

READ = bearer(READ_TOKEN)
ADMIN = bearer(ADMIN_TOKEN)


def alert_of(client: TestClient, account: str) -> dict[str, object]:
    items = client.get("/v1/alerts", headers=READ).json()["items"]
    return next(a for a in items if a["account"] == account)


def test_alerts_newest_first_with_reasons(client: TestClient) -> None:
    page = client.get("/v1/alerts", headers=READ).json()
    assert page["total"] == 6
    assert [a["account"] for a in page["items"]] == [
        "reporting_svc",
        "support_eve",
        "analyst_ben",
        "web_shop",
        "hr_app",
        "hr_app",
    ]
    ben = page["items"][2]
    assert (ben["window_start"], ben["severity"], ben["status"]) == (
        "2026-10-21T22:40:00Z",
        "critical",
        "open",
    )
    assert any("sales.cards" in r for r in ben["reasons"])


def test_alerts_filters(client: TestClient) -> None:
    def accounts(**params: object) -> list[str]:
        items = client.get("/v1/alerts", params=params, headers=READ).json()["items"]
        return [a["account"] for a in items]

    assert accounts(since="2026-10-22T00:00:00Z") == ["reporting_svc", "support_eve"]
    assert accounts(since="2026-10-22T00:00:00") == ["reporting_svc", "support_eve"]  # UTC
    assert accounts(since="2026-10-22T02:00:00+02:00") == ["reporting_svc", "support_eve"]
    assert accounts(severity="low") == ["hr_app", "hr_app"]
    assert accounts(status="false_positive") == []
    assert accounts(limit=1, offset=1) == ["support_eve"]


@pytest.mark.parametrize(
    "params", [{"since": "yesterday"}, {"status": "closed"}, {"severity": "x"}, {"limit": 0}]
)
def test_bad_alert_filters_are_422(client: TestClient, params: dict[str, object]) -> None:
    assert client.get("/v1/alerts", params=params, headers=READ).status_code == 422


def test_false_positive_feedback_with_a_suppression(client: TestClient, store: SqliteStore) -> None:
    eve = alert_of(client, "support_eve")
    assert "support_eve" in [f.account for f in store.flagged(timedelta(days=2))]
    response = client.post(
        f"/v1/alerts/{eve['id']}/feedback",
        json={"verdict": "false_positive", "note": "approved dump", "suppress_for": "7d"},
        headers=ADMIN,
    )
    assert response.status_code == 200
    judged = response.json()
    assert (judged["status"], judged["note"]) == ("false_positive", "approved dump")
    assert judged["suppressed_until"] == "2026-10-29T13:10:00Z"  # window_end + 7 days
    assert judged["judged_at"].endswith("Z")
    assert alert_of(client, "support_eve")["status"] == "false_positive"
    assert "support_eve" not in [f.account for f in store.flagged(timedelta(days=2))]


def test_a_pattern_suppression_leaves_the_account_watched(
    client: TestClient, store: SqliteStore
) -> None:
    eve = alert_of(client, "support_eve")
    response = client.post(
        f"/v1/alerts/{eve['id']}/feedback",
        json={"verdict": "false_positive", "suppress_for": "7d", "suppress": "objects"},
        headers=ADMIN,
    )
    assert response.status_code == 200
    assert response.json()["suppressed_until"] == "2026-10-29T13:10:00Z"
    # only windows reading these objects are silenced; the account itself is not
    flagged = store.flagged(timedelta(days=2))
    assert "support_eve" not in [f.account for f in flagged]  # its alert is judged
    rows = store._conn().execute("SELECT objects FROM suppressions").fetchall()
    assert [json.loads(r[0]) for r in rows] == [eve["objects"]]


def test_true_positive_feedback(client: TestClient) -> None:
    ben = alert_of(client, "analyst_ben")
    response = client.post(
        f"/v1/alerts/{ben['id']}/feedback", json={"verdict": "true_positive"}, headers=ADMIN
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["note"]) == ("true_positive", None)


def test_feedback_on_an_unknown_alert_is_404(client: TestClient) -> None:
    response = client.post(
        "/v1/alerts/999999/feedback", json={"verdict": "true_positive"}, headers=ADMIN
    )
    assert response.status_code == 404
    assert response.json() == {"error": "no such alert", "id": 999999}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b'"true_positive"',
        b'{"verdict": "maybe"}',
        b'{"note": "no verdict"}',
        b'{"verdict": "true_positive", "suppress_for": "a week"}',
        b'{"verdict": "true_positive", "suppress_for": "0d"}',
        b'{"verdict": "true_positive", "suppress_for": "99999999d"}',
        b'{"verdict": "true_positive", "suppress_for": 7}',
        b'{"verdict": "true_positive", "extra": 1}',
        b'{"verdict": "true_positive", "note": 12}',
        b'{"verdict": "true_positive", "suppress_for": "7d", "suppress": "table"}',
    ],
)
def test_malformed_feedback_is_422_and_changes_nothing(client: TestClient, body: bytes) -> None:
    alert = alert_of(client, "web_shop")
    response = client.post(
        f"/v1/alerts/{alert['id']}/feedback",
        content=body,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid request"
    assert alert_of(client, "web_shop") == alert


@pytest.mark.parametrize("alert_id", ["abc", "0", "-1", "1.5", "99999999999999999999999"])
def test_a_malformed_alert_id_is_422(client: TestClient, alert_id: str) -> None:
    response = client.post(
        f"/v1/alerts/{alert_id}/feedback", json={"verdict": "true_positive"}, headers=ADMIN
    )
    assert response.status_code == 422
