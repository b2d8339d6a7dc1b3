"""The admin routes: webhooks and API keys."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.responses import Response

from serving import admin, schemas
from serving.routes.deps import ERRORS, Admin, State

router = APIRouter(tags=["admin"])


@router.post("/webhooks", response_model=schemas.WebhookOut, status_code=201,
          responses=ERRORS)
def add_webhook(req: schemas.WebhookRequest, state: State, who: Admin) -> schemas.WebhookOut:
    """Register a receiver; the response shows its signing secret once."""
    return admin.add_webhook(state, req, who.name)


@router.get("/webhooks", response_model=list[schemas.WebhookOut], responses=ERRORS)
def webhooks(state: State, _who: Admin) -> list[schemas.WebhookOut]:
    return admin.webhooks(state)


@router.delete("/webhooks/{hook_id}", status_code=204, responses=ERRORS)
def delete_webhook(hook_id: Annotated[int, Path(ge=1, le=2**31 - 1)], state: State,
                   who: Admin) -> Response:
    admin.delete_webhook(state, hook_id, who.name)
    return Response(status_code=204)


@router.get("/webhooks/{hook_id}/deliveries", response_model=list[schemas.DeliveryOut],
         tags=["admin"], responses=ERRORS)
def deliveries(hook_id: Annotated[int, Path(ge=1, le=2**31 - 1)], state: State, _who: Admin,
               status: Literal["pending", "delivered", "dead"] | None = None
               ) -> list[schemas.DeliveryOut]:
    return admin.deliveries(state, hook_id, status)


@router.post("/keys", response_model=schemas.KeyOut, status_code=201,
          responses=ERRORS)
def add_key(req: schemas.KeyRequest, state: State, who: Admin) -> schemas.KeyOut:
    """Mint a key; the response shows it once (only its hash is stored)."""
    return admin.add_key(state, req, who.name)


@router.get("/keys", response_model=list[schemas.KeyOut], responses=ERRORS)
def list_keys(state: State, _who: Admin) -> list[schemas.KeyOut]:
    return admin.list_keys(state)


@router.delete("/keys/{key_id}", status_code=204, responses=ERRORS)
def revoke_key(key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], state: State,
               who: Admin) -> Response:
    admin.revoke_key(state, key_id, who.name)
    return Response(status_code=204)
