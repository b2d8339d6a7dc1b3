"""Wire shapes of the portfolio resources: value tiers and classes, RFM, lifecycle stages with
the journey, usage anomalies. camelCase as the rest of the API; every class, segment and stage
carries the plain-language reason it was given."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ClassReason(_Out):
    name: str = Field(description="Dormant, At Risk, Strategic, High Value or Growing.")
    reason: str


class ValueItem(_Out):
    accountId: str
    name: str | None
    arr: float | None
    arrPercentile: float | None = Field(description="Share of the portfolio's contracts at or "
                                        "below this ARR (0-1).")
    expansionProbability: float | None
    nps: float | None
    valueScore: float | None = Field(description="0-100: contract size, growth potential and "
                                     "reference value, weighted (portfolio.value).")
    tier: str = Field(description="Strategic, High Value or Standard.")
    tierReason: str
    segment: str = Field(description="The first class the account qualifies for (Dormant, At "
                         "Risk, Strategic, High Value, Growing), else Standard.")
    segmentReason: str
    classes: list[ClassReason] = Field(description="Every class it qualifies for, in order.")


class ValuePage(_Out):
    asOf: date
    total: int
    tiers: dict[str, int]
    segments: dict[str, int]
    items: list[ValueItem]


class RfmItem(_Out):
    accountId: str
    name: str | None
    recencyDays: float | None = Field(description="Days since the last product activity.")
    frequency30d: float | None = Field(description="Days with activity in the last 30.")
    monetary: float | None = Field(description="ARR.")
    r: int = Field(ge=1, le=5)
    f: int = Field(ge=1, le=5)
    m: int = Field(ge=1, le=5)
    rfm: str
    segment: str
    reason: str


class RfmPage(_Out):
    asOf: date
    total: int
    quintiles: dict[str, list[float]] = Field(description="Per measure, the 20/40/60/80th "
                                              "percentiles of the portfolio.")
    segments: dict[str, int]
    items: list[RfmItem]


class StageItem(_Out):
    accountId: str
    name: str | None
    stage: str = Field(description="Onboarding, Growth, Mature, At-Risk or Renewal.")
    cause: str
    tenureDays: float | None
    usagePctChange: float | None
    daysToRenewal: float | None
    band: str | None


class StagePage(_Out):
    asOf: date
    total: int
    stages: dict[str, int]
    items: list[StageItem]


class JourneyEntryOut(_Out):
    asOf: date
    stage: str
    fromStage: str | None = Field(description="None for the first recorded stage.")
    cause: str
    recordedAt: datetime


class Journey(_Out):
    accountId: str
    asOf: date
    current: StageItem | None = Field(description="The stage as of `asOf` (None: not an "
                                      "active customer then).")
    journey: list[JourneyEntryOut] = Field(description="Every recorded change, oldest first "
                                           "(the daily job records them).")


class AnomalyOut(_Out):
    id: int
    accountId: str
    metric: str
    asOf: date = Field(description="The day it was judged; the window ends the day before.")
    windowStart: date
    windowEnd: date
    expected: float
    observed: float
    change: float = Field(description="(observed - expected) / expected.")
    z: float
    direction: str = Field(description="drop or spike.")
    evidence: dict[str, Any]
    alertId: int | None
    notified: bool
    detectedAt: datetime
