"""The change routes (writer): overrides, weights and thresholds, rules versions."""

from __future__ import annotations

from fastapi import APIRouter

from serving import changes, schemas
from serving.routes.deps import ERRORS, Reader, State, Writer

router = APIRouter(tags=["changes"])


@router.post("/update", response_model=schemas.HealthScore, responses=ERRORS)
def update(req: schemas.OverrideRequest, state: State, who: Writer) -> schemas.HealthScore:
    """A manual score with a reason, an author and an expiry (audited; emits `updated`)."""
    return changes.override(state, req, who.name)


@router.post("/setWeights", response_model=schemas.ConfigVersionOut,
          responses=ERRORS)
def set_weights(req: schemas.WeightsRequest, state: State, who: Writer) -> schemas.ConfigVersionOut:
    """New rules version with these dimension weights."""
    return changes.set_weights(state, req, who.name)


@router.post("/setThresholds", response_model=schemas.ConfigVersionOut,
          responses=ERRORS)
def set_thresholds(req: schemas.ThresholdsRequest, state: State, who: Writer
                   ) -> schemas.ConfigVersionOut:
    """New rules version with these grades, bands, status cuts or flag thresholds."""
    return changes.set_thresholds(state, req, who.name)


@router.get("/config/versions", response_model=list[schemas.ConfigVersionOut],
         responses=ERRORS)
def config_versions(state: State, _who: Reader) -> list[schemas.ConfigVersionOut]:
    return changes.config_versions(state)
