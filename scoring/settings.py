"""Settings of the rules score: which rules file, the trend window, the validation warm-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from features.settings import Section


class HealthConfig(Section):
    rules_file: Path | None = None
    """YAML of rules profiles; None means the packaged default."""
    trend_days: int = 7
    trend_dead_band: float = 3.0
    validation_warmup_days: int = Field(90, ge=0)
    """validate-score: first as-of date this many days after the first activity in the data."""
    weights_fit_share: float = Field(0.6, gt=0, lt=1)
    """validate-score: share of the as-of dates used to fit suggested weights; the later rest
    (after a gap of the horizon) measures their AUC gain over the current weights."""
    playbooks_file: Path | None = None
    """YAML of custom playbooks, used besides the packaged ones (a custom playbook of the same
    name replaces the packaged one)."""
    effect_horizon_days: int = Field(90, ge=1)
    """Did it work: the churn window and score-change horizon after a playbook's start."""
    effect_min_pairs: int = Field(20, ge=1)
    """Fewest matched pairs an effect estimate is given for without a warning."""
    effect_caliper: float = Field(1.0, gt=0)
    """Largest distance (in pooled standard deviations of the matching inputs, averaged) of a
    matched untreated account; treated accounts without one inside it stay unmatched."""
    effect_neighbours: int = Field(4, ge=1)
    """Untreated matches per treated account (`scoring.effect.NEIGHBOURS`)."""
    effect_bootstraps: int = Field(1000, ge=50)
    """Bootstrap resamples of the matched pairs for the 95% interval."""
    batch_top_factors: int = Field(3, ge=0)
    """Batch scoring (`healthscore score --engine spark`): the top factors written per account
    for the longest churn and expansion models."""
