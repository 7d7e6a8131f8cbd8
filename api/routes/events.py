"""Push ingest: raw log lines in a request body."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import INGEST, ServiceDep
from api.models import Error, FormatName, Ingested

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[INGEST])

_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "Log lines as the server wrote them (jsonlog, csvlog or stderr).",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "",
    openapi_extra=_RAW_BODY,
    responses={
        400: {"model": Error, "description": "empty body, or not a log"},
        503: {"model": Error, "description": "the service cannot take the body now; retry"},
    },
)
async def push(
    request: Request,
    service: ServiceDep,
    format: Annotated[
        FormatName, Query(description="auto: detected from the first lines")
    ] = "auto",
) -> Ingested:
    """Parse and ingest the lines of the body; returns once they are checkpointed."""
    body = await request.body()  # the size limit is enforced while it is read
    if not body.strip():
        raise HTTPException(400, "empty body: send log lines")
    try:
        counts = await run_in_threadpool(service.push, body, format)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    return Ingested.model_validate(counts)
