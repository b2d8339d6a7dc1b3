"""The typed request and response models of the HealthScore API (pydantic v2).

Owns the wire shapes only: field names in camelCase as the API promises, their constraints (so a
malformed payload is refused with 422 naming the field before any handler runs) and their
documentation in the OpenAPI document. No logic: the resource modules fill them. The
explanation of one account (`serving.schemas.explanation`) is shared by the API and
`healthscore explain`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.schemas.explanation import HealthAnalysis

AccountId = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$",
                  description="The account's id, as in the warehouse's `accounts` table.")
Dimension = Literal["engagement", "adoption", "usage", "support", "satisfaction", "value",
                    "relationship"]
ContractTable = Literal["accounts", "subscriptions", "usage_events", "tickets", "surveys",
                        "touchpoints", "invoices", "churn_events", "expansion_events"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- requests -------------------------------------------------------------------------------------

class CalculateRequest(_In):
    accountId: str = AccountId
    asOf: date | None = Field(None, description="Score as of the start of this day; default: the "
                              "day after the latest activity in the data.")
    activity: dict[ContractTable, list[dict[str, Any]]] | None = Field(
        None, description="Raw recent rows per contract table for an account the warehouse does "
        "not know (must include its `accounts` row). Built by the same feature function.")

    @field_validator("activity")
    @classmethod
    def _bounded(cls, v: dict[str, list[dict[str, Any]]] | None) -> Any:
        if v is not None and sum(len(rows) for rows in v.values()) > 200_000:
            raise ValueError("at most 200000 rows in one payload")
        return v


class PredictRequest(CalculateRequest):
    pass


class AnalyzeRequest(CalculateRequest):
    topK: int = Field(5, ge=1, le=50, description="Factors to return.")


class OverrideRequest(_In):
    accountId: str = AccountId
    score: float = Field(ge=0, le=100, allow_inf_nan=False)
    reason: str = Field(min_length=3, max_length=2000)
    author: str = Field(min_length=1, max_length=200)
    expiresAt: datetime = Field(description="When the manual score stops applying (ISO 8601).")


class WeightsRequest(_In):
    weights: dict[Dimension, float] = Field(min_length=1)
    profile: str = Field("default", min_length=1, max_length=100)
    reason: str = Field("", max_length=2000)

    @field_validator("weights")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for k, w in v.items():
            if not (0 <= w < 1e6):
                raise ValueError(f"weight of {k} must be within 0 and 1e6, got {w}")
        return v


class GradeCutIn(_In):
    grade: str = Field(min_length=1, max_length=8)
    min: float = Field(ge=0, le=100)


class BandIn(_In):
    name: str = Field(min_length=1, max_length=64)
    min: int = Field(ge=0, le=100)
    max: int = Field(ge=0, le=100)


class StatusIn(_In):
    healthy_min: float = Field(ge=0, le=100)
    at_risk_min: float = Field(ge=0, le=100)


class ThresholdsRequest(_In):
    profile: str = Field("default", min_length=1, max_length=100)
    grades: list[GradeCutIn] | None = None
    bands: list[BandIn] | None = None
    status: StatusIn | None = None
    flags: dict[str, dict[str, float | bool | str]] | None = Field(
        None, description="Per flag code, the thresholds to change (e.g. "
        "{\"usage_drop\": {\"pct_change_below\": -40}}).")
    reason: str = Field("", max_length=2000)


class AlertRequest(_In):
    accountId: str = AccountId
    message: str = Field(min_length=1, max_length=2000)
    severity: Literal["high", "medium", "low"] = "medium"


class ResolveRequest(_In):
    alertId: int = Field(ge=1, le=2**31 - 1)
    resolution: str = Field("resolved by hand", min_length=1, max_length=2000)


class SegmentRequest(_In):
    field: Literal["segment", "industry", "region", "plan"] = "segment"
    value: str = Field(min_length=1, max_length=200)
    asOf: date | None = None


class ReportRequest(_In):
    start: date
    end: date


class WebhookRequest(_In):
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000)
    eventTypes: list[str] = Field(default_factory=list, description="Empty: every event type.")
    secret: str | None = Field(None, min_length=16, max_length=200,
                               description="HMAC key; generated when absent.")


class KeyRequest(_In):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["reader", "writer", "admin"]


# --- responses ------------------------------------------------------------------------------------

class Metric(_Out):
    name: str
    dimension: str
    value: float | None
    score: float | None = Field(description="The feature's 0-100 score (None: no data).")
    weight: float = Field(description="Its weight within its dimension.")
    share: float = Field(description="Its share of the composite score's weight.")


class Dimensions(_Out):
    engagement: float | None = None
    adoption: float | None = None
    usage: float | None = None
    support: float | None = None
    satisfaction: float | None = None
    value: float | None = None
    relationship: float | None = None


class OverrideOut(_Out):
    score: float
    automaticScore: float | None
    reason: str
    author: str
    expiresAt: datetime
    createdAt: datetime


class AlertOut(_Out):
    id: int
    accountId: str
    rule: str
    severity: str
    message: str
    status: str
    createdAt: datetime
    createdBy: str
    resolvedAt: datetime | None = None
    resolvedBy: str | None = None
    resolution: str | None = None


AccountStatus = Literal["active", "churned", "not-started"]
ACCOUNT_STATUS = Field(description="The account as of `asOf`: active, churned (a churn event "
                       "before it) or not-started (created on or after it). Only an active "
                       "account has probabilities; `probabilitiesNote` says why one has none.")


class HealthScore(_Out):
    id: str
    customer: str | None
    accountStatus: AccountStatus = ACCOUNT_STATUS
    score: float | None = Field(description="The score in effect: the manual override while one "
                                "applies, else the automatic score.")
    automaticScore: float | None
    override: OverrideOut | None = None
    grade: str | None
    status: str | None
    band: str | None
    colour: str | None
    trend: str | None
    metrics: list[Metric]
    weights: dict[str, float]
    dimensions: Dimensions
    churnRisk: float | None = Field(description="90-day churn probability in percent.")
    expansionOpportunity: float | None = Field(description="90-day expansion probability, %.")
    probabilities: dict[str, float] = Field(description="churn_30d ... expansion_90d, 0-1.")
    probabilitiesNote: str | None = None
    lastActive: date | None
    daysSinceActive: float | None
    alerts: list[AlertOut]
    calculated: datetime
    previousScore: float | None
    metadata: dict[str, Any]


class Prediction(_Out):
    id: str
    asOf: date
    accountStatus: AccountStatus = ACCOUNT_STATUS
    probabilities: dict[str, float]
    churnRisk: float | None
    expansionOpportunity: float | None
    trajectory: dict[str, float | None] = Field(
        description="Projected score in 30/60/90 days (recent trend, clamped to 0-100).")
    available: bool
    note: str | None = None


class Analysis(_Out):
    healthScore: HealthScore
    prediction: Prediction
    ruleFactors: list[Metric]
    explanation: HealthAnalysis | None = Field(
        description="The account explained, rules and models together: dimensions, each model's "
        "factors (exact TreeSHAP, log-odds), risk flags, missing data, what-if suggestions, peers "
        "and whether the rules and the model agree (the same document as `healthscore explain "
        "--format json`). Null for an account not yet a customer on `asOf`.")


class ConfigVersionOut(_Out):
    id: int
    version: str
    change: str
    author: str
    reason: str
    createdAt: datetime
    active: bool


class SegmentStats(_Out):
    accounts: int
    averageScore: float | None
    medianScore: float | None
    bands: dict[str, int]
    distribution: dict[str, int] = Field(description="Accounts per 10-point score bucket.")
    averageDimensions: dict[str, float | None]


class SegmentComparison(_Out):
    field: str
    value: str
    asOf: date
    segment: SegmentStats
    rest: SegmentStats
    topFactors: list[dict[str, Any]] = Field(
        description="Dimensions where the segment differs most from the rest (points).")


class Report(_Out):
    start: date
    end: date
    asOf: date | None
    scoredAccounts: int
    averageScore: float | None
    bands: dict[str, int]
    atRisk: int
    champions: int
    movements: dict[str, int]
    alertsRaised: int
    alertsResolved: int


class ScoreRow(_Out):
    accountId: str
    asOf: date
    score: float | None
    grade: str | None
    band: str | None
    status: str | None
    trend: str | None
    previousScore: float | None
    configVersion: str


class ScorePage(_Out):
    asOf: date = Field(description="The date listed: the one asked, else the warehouse's today.")
    total: int
    page: int
    pageSize: int
    items: list[ScoreRow]


class WebhookOut(_Out):
    id: int
    url: str
    eventTypes: list[str]
    active: bool
    createdAt: datetime
    secret: str | None = Field(None, description="Shown once, at creation.")


class DeliveryOut(_Out):
    id: int
    eventId: int
    status: str
    attempts: int
    lastStatus: int | None
    lastError: str | None
    nextAttemptAt: datetime
    deliveredAt: datetime | None


class KeyOut(_Out):
    id: int
    name: str
    role: str
    prefix: str
    createdAt: datetime
    revokedAt: datetime | None = None
    key: str | None = Field(None, description="The key itself: shown once, at creation.")


class FieldProblem(_Out):
    loc: list[str | int] = Field(description="Where the refused value is: body, query, path "
                                 "or header, then the field's path.")
    field: str = Field(description="`loc`, dotted.")
    msg: str
    type: str
    input: Any = None


class Problem(_Out):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = Field(None, description="422 only: each refused field.")
