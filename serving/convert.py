"""Store rows into response schemas, and the value helpers every route module shares."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pandas as pd

from serving import schemas
from serving.ops_store import Alert, ConfigVersion, Override, aware


def number(value: Any) -> float | None:
    """A float, or None for a missing value (NaN, None, text)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def text(value: Any) -> str | None:
    """A string, or None for a missing value (NaN, None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def day(value: Any) -> date:
    return pd.Timestamp(value).date()


def clean(rec: dict[str, Any]) -> dict[str, Any]:
    """NaN as null (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}


def score_row(r: dict[str, Any]) -> schemas.ScoreRow:
    return schemas.ScoreRow(accountId=r["account_id"], asOf=r["as_of"], score=number(r["score"]),
                            grade=r["grade"], band=r["band"], status=r["status"],
                            trend=r["trend"], previousScore=number(r["previous_score"]),
                            configVersion=r["config_version"])


def alert_out(a: Alert) -> schemas.AlertOut:
    return schemas.AlertOut(id=a.id, accountId=a.account_id, rule=a.rule, severity=a.severity,
                            message=a.message, status=a.status, createdAt=aware(a.created_at),
                            createdBy=a.created_by, resolvedAt=aware(a.resolved_at),
                            resolvedBy=a.resolved_by, resolution=a.resolution)


def override_out(o: Override) -> schemas.OverrideOut:
    return schemas.OverrideOut(score=o.score, automaticScore=o.automatic_score, reason=o.reason,
                               author=o.author, expiresAt=aware(o.expires_at),
                               createdAt=aware(o.created_at))


def config_out(r: ConfigVersion, active: bool) -> schemas.ConfigVersionOut:
    return schemas.ConfigVersionOut(id=r.id, version=r.version, change=r.change,
                                    author=r.author, reason=r.reason,
                                    createdAt=aware(r.created_at), active=active)


def webhook_out(h: Any, secret: str | None = None) -> schemas.WebhookOut:
    return schemas.WebhookOut(id=h.id, url=h.url, eventTypes=list(h.event_types),
                              active=h.active, createdAt=aware(h.created_at), secret=secret)


def key_out(k: Any, key: str | None = None) -> schemas.KeyOut:
    return schemas.KeyOut(id=k.id, name=k.name, role=k.role, prefix=k.prefix,
                          createdAt=aware(k.created_at), revokedAt=aware(k.revoked_at), key=key)
