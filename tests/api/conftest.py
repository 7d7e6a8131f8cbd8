"""Shared fixtures: the real model's scores of five days of the sample logs (the week
with the five labelled incidents), committed to a real SQLite store, behind the API."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from api.app import create_app
from api.auth import Tokens
from detector import model, pipeline
from detector.live.metrics import Metrics
from detector.live.store import Checkpoint, SqliteStore
from detector.reader import NotALogError
from detector.rejects import Quarantine
from detector.settings import Settings

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "sample_logs" / "postgresql.json.gz"
MODEL = ROOT / "models" / "default"
START = datetime(2026, 10, 19, tzinfo=UTC)  # the scored week: incidents INC-1..INC-5
END = datetime(2026, 10, 24, tzinfo=UTC)

READ_TOKEN = "read-token-0123456789abcdef"
INGEST_TOKEN = "ingest-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
TOKENS = f"{READ_TOKEN}:read,{INGEST_TOKEN}:ingest,{ADMIN_TOKEN}:admin"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def trained() -> model.TrainedModel:
    return model.load(MODEL)


@pytest.fixture(scope="session")
def scored(trained: model.TrainedModel) -> pl.DataFrame:
    """``pipeline.score`` of 2026-10-19..23: 2,105 account-windows, 6 flagged."""
    events, _ = pipeline.read_events([SAMPLE], since=START, until=END)
    return pipeline.score(events, trained, Settings())


def checkpoint(n: int) -> Checkpoint:
    """A checkpoint with a Parquet blob, as the engine saves its window state."""
    state = pl.DataFrame({"n": [n]})
    return Checkpoint(
        sources={"/var/log/postgresql/postgresql.json": {"inode": 12, "offset": n}},
        state={"pending": _parquet(state)},
        saved_at=1_700_000_000.0 + n,
    )


def _parquet(frame: pl.DataFrame) -> bytes:
    with tempfile.SpooledTemporaryFile() as fh:
        frame.write_parquet(fh)
        fh.seek(0)
        return fh.read()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def empty_store(state_dir: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(state_dir)
    yield store
    store.close()


@pytest.fixture
def store(empty_store: SqliteStore, scored: pl.DataFrame) -> SqliteStore:
    """A store holding the scored week, committed in one transaction."""
    empty_store.commit(scored, checkpoint(1))
    return empty_store


class PushService:
    """The engine boundary for these tests: a real store and metrics; ``push`` parses
    the body with the real formats and returns its counts (it scores nothing)."""

    def __init__(self, store: SqliteStore, manifest: dict[str, Any]) -> None:
        self.store = store
        self.metrics = Metrics()
        self._manifest = manifest
        self.failing: list[str] = []
        self.pushed: list[tuple[int, str]] = []

    def manifest(self) -> dict[str, Any]:
        return self._manifest

    def exposition(self) -> bytes:
        return generate_latest(self.metrics.registry)

    def problems(self) -> list[str]:
        return list(self.failing)

    def push(self, body: bytes, format: str) -> dict[str, Any]:
        self.pushed.append((len(body), format))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pushed.log"
            path.write_bytes(body)
            quarantine = Quarantine(None)
            try:
                events, summary = pipeline.read_events(
                    [path], format_name=format, quarantine=quarantine
                )
            except NotALogError as exc:
                raise ValueError(str(exc).replace(str(path), "body")) from exc
        return {
            "lines": body.count(b"\n") + (0 if body.endswith(b"\n") else 1),
            "events": events.height,
            "rejected": dict(summary.rejected),
        }


@pytest.fixture
def service(store: SqliteStore, trained: model.TrainedModel) -> PushService:
    return PushService(store, asdict(trained.manifest))


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(service: PushService, state_dir: Path) -> Iterator[MakeClient]:
    """A TestClient for the app around ``service``; keyword arguments are settings."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(**{"api_tokens": TOKENS, "state_dir": state_dir, **overrides})
        tokens, _ = Tokens.ensure(settings)
        client = TestClient(create_app(service, settings, tokens))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def sample_lines(n: int) -> bytes:
    """The first ``n`` lines of the sample jsonlog: server start-up, then audit events."""
    with gzip.open(SAMPLE, "rb") as fh:
        return b"".join(fh.readline() for _ in range(n))
