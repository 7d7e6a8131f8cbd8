"""The model in use."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import READ, ServiceDep
from api.models import Manifest

router = APIRouter(prefix="/v1/model", tags=["model"], dependencies=[READ])


@router.get("")
def get_model(service: ServiceDep) -> Manifest:
    """The manifest of the model scoring now: training period, versions, artefact hashes."""
    return Manifest.model_validate(service.manifest())
