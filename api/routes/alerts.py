"""Alerts and the feedback on them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import ADMIN, READ, StoreDep
from api.models import Alert, AlertPage, Error, Feedback, SeverityName, Status, parse_duration

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("", dependencies=[READ])
def list_alerts(
    store: StoreDep,
    since: Annotated[
        datetime | None, Query(description="alerts whose window starts at or after (UTC)")
    ] = None,
    severity: SeverityName | None = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,  # SQLite integers are 64-bit
) -> AlertPage:
    """Alerts, newest window first, with their reasons."""
    total, items = store.alerts(since, severity, status, limit, offset)
    return AlertPage.model_validate(
        {"total": total, "limit": limit, "offset": offset, "items": items}
    )


# The body is read after the token is checked (a parameter typed ``Feedback`` would be
# parsed first, so that a caller without a token could learn how its body is wrong).
_FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Feedback.model_json_schema()}},
    }
}


@router.post(
    "/{alert_id}/feedback",
    dependencies=[ADMIN],
    openapi_extra=_FEEDBACK_BODY,
    responses={404: {"model": Error, "description": "no such alert"}},
)
async def feedback(
    request: Request, store: StoreDep, alert_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Alert:
    """Judge an alert true or false positive; optionally suppress its account for a while.

    Body: ``{"verdict": "true_positive"|"false_positive", "note": "...", "suppress_for":
    "7d", "suppress": "account"|"objects"}``: the whole account, or only its windows
    reading nothing but this alert's objects. False positives stay in what retraining
    learns from; true positives never do.
    """
    try:
        body = Feedback.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    suppress = None if body.suppress_for is None else parse_duration(body.suppress_for)
    updated = await run_in_threadpool(
        store.feedback, alert_id, body.verdict, body.note, suppress, body.suppress == "objects"
    )
    if updated is None:
        raise HTTPException(404, {"error": "no such alert", "id": alert_id})
    return Alert.model_validate(updated)
