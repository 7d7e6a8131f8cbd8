"""What the API needs from the running service: the engine side implements it."""

from __future__ import annotations

from typing import Any, Protocol

from detector.live.store import Store


class Service(Protocol):
    """The sidecar as the API sees it."""

    @property
    def store(self) -> Store:
        """Where the scored windows and alerts are (read-only here: a plain attribute does)."""
        ...

    def exposition(self) -> bytes:
        """The service's metrics in the Prometheus text format: what /metrics serves."""
        ...

    def manifest(self) -> dict[str, Any]:
        """The manifest of the model in use (``detector.model.Manifest`` as a dict)."""
        ...

    def problems(self) -> list[str]:
        """Why the service is not ready (model not loaded, sources unreadable...); [] when ready."""
        ...

    def push(self, body: bytes, format: str) -> dict[str, Any]:
        """Parse and ingest raw log lines; block until their events are in checkpointed state.

        Returns ``{"lines": n, "events": n, "rejected": {reason: n}}``. Raises
        ``ValueError(message)`` for an unknown format or a body that is not a log (HTTP
        400), and ``TimeoutError`` when it cannot take the body in time (HTTP 503).
        """
        ...
