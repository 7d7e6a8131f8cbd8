"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import HEALTH_ACCESS, METRICS_ACCESS, ServiceDep
from api.models import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[HEALTH_ACCESS])
async def healthz() -> Health:
    """200 while the process serves requests. Answered on the event loop, not in the
    worker threads: serve's liveness probe of the API process (api.server) must not take
    40 slow requests in the threads for a stuck process."""
    return Health()


@router.get(
    "/readyz",
    dependencies=[HEALTH_ACCESS],
    responses={503: {"model": Readiness, "description": "not ready, with the problems"}},
)
def readyz(service: ServiceDep, response: Response) -> Readiness:
    """200 when the model is loaded, the sources readable and the state store writable."""
    problems = list(service.problems())
    if not service.store.writable():  # said once, should the ingest have found it too
        problems.append(service.store.lock_problem() or "state store is not writable")
        problems = list(dict.fromkeys(problems))
    if problems:
        response.status_code = 503
        return Readiness(status="not ready", problems=problems)
    return Readiness(status="ready", problems=[])


@router.get("/metrics", dependencies=[METRICS_ACCESS], response_class=PlainTextResponse)
def metrics(service: ServiceDep) -> Response:
    """Prometheus text exposition of the service's metrics."""
    return Response(service.exposition(), media_type=CONTENT_TYPE_LATEST)
