"""The alerts resource: raise one by hand (writer), resolve one (writer), list them (reader).

The alert rules themselves (score drops, risk, cool-down) live in `serving.alerts`; this module
is what the routes call, audited in the same transaction as the change.
"""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import schemas
from serving.alerts import create_alert, resolve_alert
from serving.convert import alert_out
from serving.errors import Conflict, NotFound
from serving.ops_store import Alert, audit, list_alerts
from serving.state import ServiceState

_RAISING = threading.Lock()
"""Looking for an identical open alert and creating one is one step within a worker."""


def raise_alert(state: ServiceState, req: schemas.AlertRequest, actor: str) -> schemas.AlertOut:
    """A manual alert; one identical to an open manual alert of the account (same severity and
    message) is that alert, not a second one: a client's retry never raises twice."""
    state.known(req.accountId)
    with _RAISING, Session(state.db, expire_on_commit=False) as session, session.begin():
        same = session.scalars(select(Alert).where(
            Alert.account_id == req.accountId, Alert.rule == "manual", Alert.status == "open",
            Alert.severity == req.severity, Alert.message == req.message)
            .order_by(Alert.id)).first()
        if same is not None:
            return alert_out(same)
        alert = create_alert(session, req.accountId, "manual", req.severity, req.message,
                             actor)
        audit(session, actor, "alert.created", req.accountId, {"alertId": alert.id})
        out = alert_out(alert)
    state.worker.wake()
    return out


def close_alert(state: ServiceState, alert_id: int, req: schemas.ResolveRequest, actor: str
                ) -> schemas.AlertOut:
    with Session(state.db, expire_on_commit=False) as session, session.begin():
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.status != "open":
            raise Conflict(f"alert {alert_id} is already {alert.status}")
        resolve_alert(session, alert, actor, req.resolution)
        audit(session, actor, "alert.resolved", alert.account_id, {"alertId": alert_id})
        out = alert_out(alert)
    state.worker.wake()
    return out


def alerts(state: ServiceState, account_id: str | None, status: str | None, limit: int,
           offset: int) -> list[schemas.AlertOut]:
    with Session(state.db, expire_on_commit=False) as session:
        return [alert_out(a) for a in list_alerts(session, account_id=account_id,
                                                   status=status, limit=limit,
                                                   offset=offset)]


