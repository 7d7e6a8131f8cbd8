"""Answers the schemathesis contract run (tests/api/test_schemathesis.py) found wrong,
pinned down as plain tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import READ_TOKEN, bearer

READ = bearer(READ_TOKEN)


@pytest.mark.parametrize("route", ["/v1/accounts", "/v1/alerts"])
def test_an_offset_past_sqlite_integers_is_a_422_not_a_500(client: TestClient, route: str) -> None:
    """``offset=2**63`` reached SQLite, which cannot bind it (OverflowError): a 500."""
    answer = client.get(route, params={"offset": 2**63}, headers=READ)
    assert answer.status_code == 422, answer.text
    assert [p["loc"] for p in answer.json()["problems"]] == [["query", "offset"]]


@pytest.mark.parametrize("route", ["/v1/accounts", "/v1/alerts"])
def test_the_largest_offset_is_an_empty_page_of_the_real_total(
    client: TestClient, route: str
) -> None:
    page = client.get(route, params={"offset": 2**62, "limit": 1000}, headers=READ)
    assert page.status_code == 200, page.text
    assert page.json()["items"] == []
    assert page.json()["total"] > 0
