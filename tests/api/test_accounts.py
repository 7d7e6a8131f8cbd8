"""GET /v1/accounts and /v1/accounts/{account}."""

from __future__ import annotations

from urllib.parse import quote

import polars as pl
import pytest
from fastapi.testclient import TestClient

from detector.live.store import SqliteStore
from tests.api.conftest import READ_TOKEN, MakeClient, bearer, checkpoint

AUTH = bearer(READ_TOKEN)


def test_accounts_sorted_by_score_by_default(client: TestClient) -> None:
    page = client.get("/v1/accounts", headers=AUTH).json()
    assert (page["total"], page["limit"], page["offset"]) == (12, 100, 0)
    scores = [i["score"] for i in page["items"]]
    assert scores == sorted(scores, reverse=True)
    first = page["items"][0]
    assert set(first) == {
        "account",
        "window_start",
        "window_end",
        "score",
        "flagged",
        "severity",
        "reasons",
        "objects",
        "clients",
        "applications",
    }
    assert first["window_start"].endswith("Z")


def test_accounts_sort_filter_and_paginate(client: TestClient) -> None:
    names = [
        i["account"]
        for i in client.get("/v1/accounts", params={"sort": "account"}, headers=AUTH).json()[
            "items"
        ]
    ]
    assert names == sorted(names) and "web_shop" in names
    pages = [
        client.get(
            "/v1/accounts", params={"sort": "account", "limit": 5, "offset": o}, headers=AUTH
        ).json()
        for o in (0, 5, 10, 15)
    ]
    assert [i["account"] for p in pages for i in p["items"]] == names
    assert pages[-1]["items"] == [] and pages[-1]["total"] == 12
    newest = client.get("/v1/accounts", params={"sort": "window"}, headers=AUTH).json()["items"]
    assert newest[0]["account"] == "web_shop"  # its last window is the week's last
    high = client.get("/v1/accounts", params={"min_score": 0.2}, headers=AUTH).json()
    assert high["total"] == len(high["items"]) and all(i["score"] >= 0.2 for i in high["items"])
    assert client.get("/v1/accounts", params={"flagged": "true"}, headers=AUTH).json()["total"] == 0
    none = client.get("/v1/accounts", params={"severity": "none"}, headers=AUTH).json()
    assert none["total"] == 12


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "size"},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"min_score": "high"},
        {"min_score": 2},
        {"severity": "extreme"},
        {"flagged": "perhaps"},
    ],
)
def test_bad_list_parameters_are_422(client: TestClient, params: dict[str, object]) -> None:
    response = client.get("/v1/accounts", params=params, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid request" and body["problems"][0]["loc"][0] == "query"


def test_account_detail_has_reasons_features_and_totals(
    client: TestClient, scored: pl.DataFrame
) -> None:
    response = client.get("/v1/accounts/web_shop", params={"limit": 1000}, headers=AUTH)
    assert response.status_code == 200
    detail = response.json()
    mine = scored.filter(pl.col("account") == "web_shop")
    assert detail["totals"]["windows"] == mine.height == 1209
    assert len(detail["windows"]) == 1000  # the most recent
    assert detail["totals"]["rows_read"] == mine["features"].struct.field("rows_read_5m").sum()
    assert detail["totals"]["bytes_read"] is None
    pull = next(w for w in detail["windows"] if w["window_start"] == "2026-10-20T03:10:00Z")
    assert pull["severity"] == "critical" and pull["features"]["rows_read_5m"] == 50_191
    assert "new application for this account: psql" in pull["reasons"]
    recent = client.get("/v1/accounts/web_shop", params={"limit": 2}, headers=AUTH).json()
    assert [w["window_start"] for w in recent["windows"]] == [
        w["window_start"] for w in detail["windows"][:2]
    ]


def test_unknown_account_is_404_json(client: TestClient) -> None:
    response = client.get("/v1/accounts/nobody", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "no such account", "account": "nobody"}


def test_account_names_are_data_not_queries(client: TestClient) -> None:
    for name in ["web_shop' OR '1'='1", "%", "web_shop;--", "../../etc/passwd"]:
        response = client.get(f"/v1/accounts/{name}", headers=AUTH)
        assert response.status_code == 404, name


@pytest.mark.parametrize("name", ["ops/etl", "/", "a//b/", "line\nbreak", "\n0"])
def test_an_account_whose_name_holds_a_slash_or_a_newline_is_found(
    make_client: MakeClient, empty_store: SqliteStore, scored: pl.DataFrame, name: str
) -> None:
    """A quoted role name may hold "/" (CREATE ROLE "ops/etl") or a newline: sent as %2F it was a
    path of its own, 404 {"error": "Not Found"} (or, for "/", a redirect to the list)."""
    windows = scored.filter(pl.col("account") == "web_shop").with_columns(account=pl.lit(name))
    empty_store.commit(windows, checkpoint(1))
    client = make_client()
    response = client.get(f"/v1/accounts/{quote(name, safe='')}", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["account"] == name
    # and without a token, refused as any account is (a newline missed the route: 404)
    assert client.get(f"/v1/accounts/{quote(name, safe='')}").status_code == 401
