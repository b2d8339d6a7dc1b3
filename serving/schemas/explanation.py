"""The typed shape of an explanation: `HealthAnalysis` and its parts (pydantic models).

Owns the JSON contract the `explain` command prints and the service returns: the rules score
with each dimension's share of it, the models' probabilities with their top factors, risk flags
with action hints, missing data and what it would add, what-if suggestions, peer benchmarks and
the rules/model agreement check. Field names are stable; every sentence a person reads is in a
`text` field and comes from wording.yaml. Pure data: no computation here.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Factor(_Model):
    """One feature's exact TreeSHAP contribution to one model's output, in words."""

    feature: str
    dimension: str
    """Registry dimension (engagement, usage, ..., commercial, profile)."""
    rank: int = Field(ge=1)
    """1 = the largest absolute contribution among this model's features for this account."""
    direction: Literal["raises", "lowers"]
    """Effect on the model's probability (churn or expansion)."""
    contribution: float
    """Log-odds: additive with the other features' and the base value, never probability
    points."""
    value: float | str | None
    peer_median: float | None = None
    peer_percentile: float | None = None
    """0-100: share of the peer group at or below this value (ties count half)."""
    text: str


class DimensionEffect(_Model):
    """A registry dimension's summed contribution (log-odds add up within a model)."""

    dimension: str
    label: str
    contribution: float
    direction: Literal["raises", "lowers"]
    rank: int = Field(ge=1)


class ModelExplanation(_Model):
    label: str
    """churn_30d, ..., expansion_90d."""
    target: Literal["churn", "expansion"]
    horizon: int
    probability: float = Field(ge=0, le=1)
    """Calibrated, made monotone across the target's horizons."""
    base_probability: float = Field(ge=0, le=1)
    """The calibrated probability of the model's base value (no factor)."""
    base_log_odds: float
    raw_log_odds: float
    """base_log_odds + the sum of every feature's contribution (exactly, by TreeSHAP)."""
    positive: list[Factor]
    """Signals good for the account (lower churn or higher expansion), strongest first."""
    negative: list[Factor]
    missing: list[Factor]
    """Features with no value whose absence moved the output, strongest first."""
    profile: list[Factor] = Field(default_factory=list)
    """Who the customer is (segment, industry, tenure, seats, custom attributes): context the
    model weighs, listed apart because no CSM action changes it."""
    dimensions: list[DimensionEffect]
    text: str


class DimensionScore(_Model):
    dimension: str
    label: str
    score: float | None = Field(None, ge=0, le=100)
    weight: float = Field(ge=0, le=1)
    """Share of the profile's configured weight."""
    contribution: float = Field(ge=0, le=100)
    """Points of the composite this dimension supplies: they sum to the score."""
    missing: bool
    peer_percentile: float | None = None
    peer_median: float | None = None
    text: str | None = None


class RiskFlag(_Model):
    code: str
    severity: str
    title: str
    text: str
    hint: str
    evidence: dict[str, float | None] = Field(default_factory=dict)


class MissingData(_Model):
    source: str
    """Contract table."""
    dimensions: list[str]
    connected: bool
    weight_share: float = Field(ge=0, le=1)
    """Share of the rules score's configured weight its features carry (what it would add)."""
    text: str


class WhatIf(_Model):
    """One set of actionable changes and what they do to the probabilities and the score."""

    levers: list[str]
    changes: dict[str, float]
    """Feature -> new value (actionable features only)."""
    label: str
    """The churn model the suggestion is ranked by (the longest horizon)."""
    before: float = Field(ge=0, le=1)
    after: float = Field(ge=0, le=1)
    probabilities: dict[str, float]
    """Every model's probability with the changes."""
    score_before: float | None = None
    score_after: float | None = None
    text: str


class Agreement(_Model):
    status: Literal["agree", "healthy_but_risky", "at_risk_but_safe", "unknown"]
    band: str | None = None
    label: str | None = None
    probability: float | None = None
    population_percentile: float | None = None
    threshold: float | None = None
    text: str


class PeerInfo(_Model):
    group: str
    """The account's segment, or `all accounts` when the segment has too few peers."""
    size: int
    as_of: date | None = None


class HealthAnalysis(_Model):
    account_id: str
    name: str | None = None
    as_of: date
    segment: str | None = None
    score: float | None = None
    grade: str | None = None
    band: str | None = None
    status: str | None = None
    account_status: str = "active"
    """active, churned or not-started as of `as_of` (scoring.pipeline): only an active account
    has probabilities."""
    trend: str | None = None
    coverage: float = Field(ge=0, le=1)
    profile: str
    config_version: str
    dimensions: list[DimensionScore]
    probabilities: dict[str, float]
    """churn_30d ... expansion_90d, calibrated and monotone per target; empty without models
    and for an account that is not active (`probabilities_note` says why)."""
    probabilities_note: str | None = None
    models: list[ModelExplanation]
    flags: list[RiskFlag]
    missing: list[MissingData]
    what_if: list[WhatIf]
    agreement: Agreement
    peers: PeerInfo | None = None
    model_versions: dict[str, Any] = Field(default_factory=dict)

    def model(self, label: str) -> ModelExplanation:
        for m in self.models:
            if m.label == label:
                return m
        have = ", ".join(m.label for m in self.models) or "none"
        raise KeyError(f"no model {label!r} in this analysis; have {have}")
