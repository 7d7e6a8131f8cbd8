"""The API process's view of the ingest process (``api.process``): the real service,
reached over the control channel as ``serve``'s API process reaches it. Pushes, their
errors, the model, readiness and metrics arrive as they do in one process."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Tokens
from api.process import RemoteService, host
from detector import model, settings
from detector.live.service import Busy, Service
from detector.live.store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_logs" / "postgresql.json.gz"
TOKEN = "process-test-token-0123"


@pytest.fixture(scope="module")
def trained() -> model.TrainedModel:
    return model.load(ROOT / "models" / "default")


@pytest.fixture
def conf(tmp_path: Path) -> settings.Settings:
    return settings.Settings(
        state_dir=tmp_path / "state",
        follow=[str(tmp_path / "none-yet" / "*.json")],
        lateness="1s",
        checkpoint_interval=0.1,
        poll_interval=0.05,
        api_tokens=f"{TOKEN}:admin",
    )


@pytest.fixture
def remote(
    trained: model.TrainedModel, conf: settings.Settings
) -> Iterator[tuple[Service, TestClient]]:
    """The real service in this process; the API around a RemoteService of it, with
    a store of its own on the same database, as in serve's API process."""
    service = Service(trained, conf, conf.follow, ROOT / "models" / "default")
    address, key = host(service)
    store = SqliteStore(conf.state_dir)
    app = create_app(RemoteService(store, address, key), conf, Tokens.parse(f"{TOKEN}:admin"))
    service.start()
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield service, client
    service.stop()
    store.close()


def day_of_lines(day: str) -> bytes:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    return b"".join(line for line in lines if f'"timestamp":"{day}'.encode() in line)


def test_a_push_reaches_the_ingest_process_and_its_windows_the_api(
    remote: tuple[Service, TestClient],
) -> None:
    _, client = remote
    body = day_of_lines("2026-10-20")  # INC-1: web_shop pulls every customer at 03:10
    pushed = client.post("/v1/events?format=pgaudit-jsonlog", content=body)
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["lines"] == body.count(b"\n")
    assert pushed.json()["events"] > 1000
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alerts = client.get("/v1/alerts").json()["items"]
        if any(a["account"] == "web_shop" and a["severity"] == "critical" for a in alerts):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("INC-1 was not alerted through the API process's store")
    account = client.get("/v1/accounts/web_shop").json()
    assert account["totals"]["rows_read"] >= 50_191
    metrics = client.get("/metrics").text
    assert (
        f'trovewatch_events_total{{format="pgaudit-jsonlog",source="push"}} {pushed.json()["events"]}.0'
        in metrics
    )


def test_errors_of_a_push_cross_as_they_are(remote: tuple[Service, TestClient]) -> None:
    _, client = remote
    refused = client.post("/v1/events", content=b"\x00\x01\x02 binary\n")
    assert refused.status_code == 400
    assert "binary" in refused.json()["error"]
    unknown = client.post("/v1/events?format=nope", content=b"x\n")
    assert unknown.status_code == 422  # refused by the API process itself


def test_model_and_readiness_are_the_ingest_processs(remote: tuple[Service, TestClient]) -> None:
    service, client = remote
    assert client.get("/v1/model").json()["name"] == service.manifest()["name"]
    ready = client.get("/readyz")  # nothing matches the follow glob yet: its problem
    assert ready.status_code == 503
    assert ready.json()["problems"] == service.problems() != []
    service._refused = "the model was trained on other logs"  # as Service._refuse sets it
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "reading held: the model was trained on other logs" in ready.json()["problems"]


class _Full:
    """An ingest side whose queue is full."""

    def manifest(self) -> dict[str, Any]:
        return {}

    def problems(self) -> list[str]:
        return []

    def exposition(self) -> bytes:
        return b""

    def push(self, body: bytes, format: str) -> dict[str, Any]:
        raise Busy("ingest queue full; retry later")


def test_a_busy_ingest_process_answers_503_with_retry_after(
    conf: settings.Settings, tmp_path: Path
) -> None:
    address, key = host(_Full())  # type: ignore[arg-type]
    store = SqliteStore(conf.state_dir)
    app = create_app(RemoteService(store, address, key), conf, Tokens.parse(f"{TOKEN}:admin"))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        answer = client.post("/v1/events", content=day_of_lines("2026-10-20")[:10_000])
    store.close()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json() == {"error": "ingest queue full; retry later"}


def test_the_api_process_does_without_polars() -> None:
    """The API process imports what it serves from (FastAPI, the SQLite store), not
    Polars: about 35 MB of RSS less beside the ingest process."""
    imports = (
        "import sys; from api import process; from api.app import create_app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('polars', 'numpy')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", imports], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


def test_the_api_process_of_the_console_script_does_without_polars() -> None:
    """Spawning the API process runs the parent's main script again in the child; under
    the installed ``trovewatch`` script that must not load the pipeline either."""
    script = Path(sys.executable).with_name("trovewatch")
    spawned = (
        f"import runpy, sys; runpy.run_path({str(script)!r}, run_name='__mp_main__'); "
        "from api import process; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('polars', 'numpy')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", spawned], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
