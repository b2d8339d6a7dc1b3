"""Rules profiles: the YAML of weights, normalisations, grades, bands and flag thresholds.

Owns loading and validating `rules.yaml` (the packaged default, or `HealthConfig.rules_file`),
the `Rules` object every scoring function takes, its `config_version` (a content hash recorded on
every score) and the deterministic profile resolver (first matching profile in file order, else
the default). The file has a complete `default` profile and a list of `profiles` that each
override parts of it (mappings merge key by key, lists replace, `null` removes a key).

Validation happens once at load and names the YAML path of every problem: unknown features or
dimensions, a feature put in another dimension than the registry's, a normalisation whose scores
run against the registry's direction, weights summing to zero, overlapping or gapped bands. This
module computes no scores.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.registry import FEATURES_BY_NAME

logger = logging.getLogger(__name__)

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.yaml")

ScoredDimension = Literal[
    "engagement", "adoption", "usage", "support", "satisfaction", "value", "relationship"
]
SCORED_DIMENSIONS: tuple[str, ...] = (
    "engagement", "adoption", "usage", "support", "satisfaction", "value", "relationship"
)
# The score's dimension names against the registry's: `value` reads the commercial features.
REGISTRY_DIMENSION: dict[str, str] = {d: d for d in SCORED_DIMENSIONS} | {"value": "commercial"}

# Columns a profile may match on: the account's descriptors (plus custom `attr_*` attributes).
MATCHABLE = frozenset(f.name for f in FEATURES_BY_NAME.values() if f.dimension == "profile")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the YAML path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalisation(_Strict):
    """Piecewise-linear map of one feature to 0-100, clamped outside its points.

    Either `points` [[x, score], ...] with x strictly increasing, or the shorthand `thresholds`
    [x0, ..., xn] spread evenly from 0 to 100 in the registry's healthy direction.
    """

    weight: float = Field(1.0, ge=0)
    points: tuple[tuple[float, float], ...] | None = None
    thresholds: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Normalisation:
        if (self.points is None) == (self.thresholds is None):
            raise ValueError("give exactly one of `points` or `thresholds`")
        xs = [p[0] for p in self.points] if self.points is not None else list(self.thresholds or ())
        if len(xs) < 2:
            raise ValueError("needs at least two points")
        if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
            raise ValueError(f"x values must increase strictly, got {xs}")
        if self.points is not None and any(not 0 <= p[1] <= 100 for p in self.points):
            raise ValueError("scores must lie within 0..100")
        return self

    def curve(self, higher_is_healthier: bool) -> tuple[np.ndarray, np.ndarray]:
        """The (x, score) arrays np.interp needs."""
        if self.points is not None:
            pts = np.asarray(self.points, dtype=float)
            return pts[:, 0].copy(), pts[:, 1].copy()
        xs = np.asarray(self.thresholds, dtype=float)
        ys = np.linspace(0.0, 100.0, len(xs))
        return xs, ys if higher_is_healthier else ys[::-1].copy()


class GradeCut(_Strict):
    grade: str
    min: float = Field(ge=0, le=100)


class ColourCut(_Strict):
    colour: str
    min: float = Field(ge=0, le=100)


class Band(_Strict):
    name: str
    min: int = Field(ge=0, le=100)
    max: int = Field(ge=0, le=100)


class StatusCuts(_Strict):
    """Status from the rounded score: healthy >= healthy_min, at-risk >= at_risk_min, else
    critical. `churned` overrides all of them when the account churned on or before the as-of
    day."""

    healthy_min: float = Field(ge=0, le=100)
    at_risk_min: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> StatusCuts:
        if self.at_risk_min > self.healthy_min:
            raise ValueError("at_risk_min must not exceed healthy_min")
        return self


Severity = Literal["high", "medium", "low"]


class _Flag(_Strict):
    enabled: bool = True
    severity: Severity


class UsageDropFlag(_Flag):
    pct_change_below: float
    """Percent: -30 raises the flag when logins or events fell by more than 30%."""


class SupportSpikeFlag(_Flag):
    tickets_30d_at_least: float
    pct_change_at_least: float
    """Percent: 100 means tickets at least doubled against the 30 days before."""


class NpsDetractorFlag(_Flag):
    nps_at_most: float


class PaymentIssueFlag(_Flag):
    failed_payments_at_least: float
    overdue_invoices_at_least: float


class RenewalSoonFlag(_Flag):
    """A renewal in the customer-success sense: the contract ending within `days_at_most` is
    a decision to win, which a contract that renews itself every month is not."""

    days_at_most: float
    min_term_months: float = Field(ge=0)
    """Only contracts of at least this term (in months, rounded) count; one that does not
    auto-renew counts whatever its term (someone has to decide to renew it)."""


class NoExecTouchFlag(_Flag):
    days_at_least: float
    when_never: bool = True
    """Raise it too when touchpoints are connected but no executive was ever met."""


class EscalationFlag(_Flag):
    escalations_at_least: float


class FlagRules(_Strict):
    usage_drop: UsageDropFlag
    support_spike: SupportSpikeFlag
    nps_detractor: NpsDetractorFlag
    payment_issue: PaymentIssueFlag
    renewal_soon: RenewalSoonFlag
    no_exec_touch: NoExecTouchFlag
    escalation: EscalationFlag


FLAG_CODES: tuple[str, ...] = tuple(FlagRules.model_fields)


class Profile(_Strict):
    name: str
    match: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)
    weights: dict[ScoredDimension, float]
    normalisations: dict[ScoredDimension, dict[str, Normalisation]]
    grades: tuple[GradeCut, ...]
    colours: tuple[ColourCut, ...]
    bands: tuple[Band, ...]
    status: StatusCuts
    flags: FlagRules

    @field_validator("match")
    @classmethod
    def _known_columns(cls, v: dict[str, Any]) -> dict[str, Any]:
        for col in v:
            if col not in MATCHABLE and not col.startswith("attr_"):
                raise ValueError(
                    f"cannot match on {col!r}: use one of {sorted(MATCHABLE)} or an attr_* column"
                )
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not np.isfinite(w) or w < 0}
        if bad:
            raise ValueError(f"weights must be finite and >= 0, got {bad}")
        if sum(v.values()) <= 0:
            raise ValueError("weights sum to zero: at least one dimension needs a positive weight")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        for dim, feats in self.normalisations.items():
            if not feats:
                raise ValueError(f"normalisations.{dim}: no features")
            if sum(n.weight for n in feats.values()) <= 0:
                raise ValueError(f"normalisations.{dim}: feature weights sum to zero")
            for name, norm in feats.items():
                where = f"normalisations.{dim}.{name}"
                spec = FEATURES_BY_NAME.get(name)
                if spec is None:
                    raise ValueError(f"{where}: unknown feature {name!r} (not in the registry)")
                if spec.dimension != REGISTRY_DIMENSION[dim]:
                    raise ValueError(
                        f"{where}: the registry puts {name!r} in dimension {spec.dimension!r}, "
                        f"not {REGISTRY_DIMENSION[dim]!r}"
                    )
                if spec.higher_is_healthier is None:
                    raise ValueError(f"{where}: {name!r} is neutral in the registry: not scorable")
                _, ys = norm.curve(spec.higher_is_healthier)
                steps = np.diff(ys)
                if spec.higher_is_healthier and (steps < 0).any():
                    raise ValueError(
                        f"{where}.points: {name!r} is higher-is-healthier in the registry, so "
                        f"scores must not decrease as x grows (got {ys.tolist()})"
                    )
                if not spec.higher_is_healthier and (steps > 0).any():
                    raise ValueError(
                        f"{where}.points: {name!r} is lower-is-healthier in the registry, so "
                        f"scores must not increase as x grows (got {ys.tolist()})"
                    )
        for dim, w in self.weights.items():
            if w > 0 and not self.normalisations.get(dim):
                raise ValueError(f"weights.{dim}: positive weight but no normalisations.{dim}")
        if sum(w for d, w in self.weights.items() if d in self.normalisations) <= 0:
            raise ValueError("weights: no scored dimension has a positive weight")
        _check_cuts("grades", [(g.grade, g.min) for g in self.grades])
        _check_cuts("colours", [(c.colour, c.min) for c in self.colours])
        _check_bands(self.bands)
        return self

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Scored dimensions that have features, in the canonical order."""
        return tuple(d for d in SCORED_DIMENSIONS if d in self.normalisations)

    def weight(self, dimension: str) -> float:
        return float(self.weights.get(dimension, 0.0))  # type: ignore[call-overload]


def _check_cuts(field: str, cuts: list[tuple[str, float]]) -> None:
    if not cuts:
        raise ValueError(f"{field}: empty")
    mins = [m for _, m in cuts]
    if any(b >= a for a, b in zip(mins, mins[1:], strict=False)):
        raise ValueError(f"{field}: list them from best to worst with strictly decreasing `min`")
    if mins[-1] != 0:
        raise ValueError(f"{field}: the last entry must have min 0 so every score gets one")
    names = [n for n, _ in cuts]
    if len(set(names)) != len(names):
        raise ValueError(f"{field}: names repeat: {names}")


def _check_bands(bands: tuple[Band, ...]) -> None:
    """Bands are inclusive integer ranges that must tile 0..100 exactly."""
    if not bands:
        raise ValueError("bands: empty")
    for b in bands:
        if b.min > b.max:
            raise ValueError(f"bands: {b.name!r} has min {b.min} > max {b.max}")
    ordered = sorted(bands, key=lambda b: b.min)
    if ordered[0].min != 0:
        raise ValueError(f"bands: gap below {ordered[0].min}: the lowest band must start at 0")
    if ordered[-1].max != 100:
        raise ValueError(f"bands: gap above {ordered[-1].max}: the highest band must end at 100")
    for lo, hi in zip(ordered, ordered[1:], strict=False):
        if hi.min <= lo.max:
            raise ValueError(
                f"bands: {lo.name!r} ({lo.min}-{lo.max}) and {hi.name!r} ({hi.min}-{hi.max}) "
                "overlap"
            )
        if hi.min > lo.max + 1:
            raise ValueError(
                f"bands: gap between {lo.name!r} ending at {lo.max} and {hi.name!r} starting at "
                f"{hi.min}"
            )
    names = [b.name for b in bands]
    if len(set(names)) != len(names):
        raise ValueError(f"bands: names repeat: {names}")


@dataclass(frozen=True)
class Rules:
    """Validated profiles: matching ones in file order, then the default."""

    profiles: tuple[Profile, ...]
    default: Profile
    source: Path
    content: str
    """Canonical JSON of the file's content: what config_version hashes."""
    trend_days: int = 7
    trend_dead_band: float = 3.0

    @property
    def config_version(self) -> str:
        # Trend settings change the output too, so they belong in the hash.
        payload = f"{self.content}|trend={self.trend_days},{self.trend_dead_band}"
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def all_profiles(self) -> tuple[Profile, ...]:
        return (*self.profiles, self.default)

    def profile(self, name: str) -> Profile:
        for p in self.all_profiles:
            if p.name == name:
                return p
        raise KeyError(f"{self.source}: no profile named {name!r}")

    def with_trend(self, days: int, dead_band: float) -> Rules:
        if days <= 0 or dead_band < 0:
            raise RulesError(f"trend days must be > 0 and dead band >= 0, got {days}, {dead_band}")
        return replace(self, trend_days=int(days), trend_dead_band=float(dead_band))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Profile inheritance: mappings merge, lists replace, None deletes the key."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _one_curve_form(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A profile giving `points` for a feature drops the default's `thresholds`, and back."""
    out = dict(raw)
    norms = raw.get("normalisations")
    if not isinstance(norms, Mapping):
        return out
    fixed: dict[str, Any] = {}
    for dim, feats in norms.items():
        if not isinstance(feats, Mapping):
            fixed[dim] = feats
            continue
        fixed[dim] = {}
        for name, spec in feats.items():
            if isinstance(spec, Mapping):
                spec = dict(spec)
                if "points" in spec:
                    spec.setdefault("thresholds", None)
                if "thresholds" in spec:
                    spec.setdefault("points", None)
            fixed[dim][name] = spec
    out["normalisations"] = fixed
    return out


def _format_errors(source: Path, where: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        # Whole-profile checks start their message with the path inside the profile.
        lines.append(f"{source}: {where}.{loc}: {msg}" if loc else f"{source}: {where}.{msg}")
    return "\n".join(lines)


def parse_rules(data: Any, source: Path) -> Rules:
    """Validate parsed YAML content; errors name `source` and the YAML path."""
    if not isinstance(data, Mapping):
        raise RulesError(f"{source}: expected a mapping with `default` and `profiles`")
    unknown = set(data) - {"default", "profiles"}
    if unknown:
        raise RulesError(f"{source}: unknown top-level keys {sorted(unknown)}; "
                         "expected `default` and `profiles`")
    raw_default = data.get("default")
    if not isinstance(raw_default, Mapping):
        raise RulesError(f"{source}: default: missing or not a mapping (the default profile)")
    if raw_default.get("match"):
        raise RulesError(f"{source}: default.match: the default profile matches every account")
    try:
        default = Profile.model_validate({"name": "default", **raw_default})
    except ValidationError as exc:
        raise RulesError(_format_errors(source, "default", exc)) from None

    raw_profiles = data.get("profiles") or []
    if not isinstance(raw_profiles, list):
        raise RulesError(f"{source}: profiles: expected a list")
    profiles: list[Profile] = []
    for i, raw in enumerate(raw_profiles):
        where = f"profiles[{i}]"
        if not isinstance(raw, Mapping) or not raw.get("name"):
            raise RulesError(f"{source}: {where}: expected a mapping with a `name`")
        where = f"profiles[{i}] ({raw['name']})"
        if not raw.get("match"):
            raise RulesError(f"{source}: {where}.match: a profile needs a match (else edit the "
                             "default)")
        merged = _merge({k: v for k, v in raw_default.items() if k != "match"},
                        _one_curve_form(raw))
        try:
            profiles.append(Profile.model_validate(merged))
        except ValidationError as exc:
            raise RulesError(_format_errors(source, where, exc)) from None
    names = [p.name for p in profiles] + ["default"]
    if len(set(names)) != len(names):
        raise RulesError(f"{source}: profiles: names must be unique (and not 'default'): {names}")
    content = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return Rules(profiles=tuple(profiles), default=default, source=source, content=content)


def load_rules(path: Path | None = None) -> Rules:
    """Load and validate a rules file (the packaged default when `path` is None)."""
    source = Path(path) if path is not None else DEFAULT_RULES_FILE
    try:
        text = source.read_text()
    except OSError as exc:
        raise RulesError(f"{source}: cannot read the rules file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from None
    rules = parse_rules(data, source)
    logger.debug("loaded %d rules profiles from %s (%s)", len(rules.all_profiles), source,
                 rules.config_version)
    return rules


def load_rules_for(cfg: Any) -> Rules:
    """Rules as a `HealthConfig` section says: its file (or the default) and trend settings."""
    return load_rules(cfg.rules_file).with_trend(cfg.trend_days, cfg.trend_dead_band)


def resolve_profiles(frame: pd.DataFrame, rules: Rules) -> np.ndarray:
    """Index into `rules.all_profiles` per row: first matching profile in file order, else the
    default (the last index). A profile matches when every `match` column equals (or is one of)
    the given values, compared as text."""
    n = len(frame)
    out = np.full(n, len(rules.profiles), dtype=np.int64)
    unresolved = np.ones(n, dtype=bool)
    for i, profile in enumerate(rules.profiles):
        hit = unresolved.copy()
        for col, wanted in profile.match.items():
            if col not in frame.columns:
                raise RulesError(
                    f"{rules.source}: profile {profile.name!r} matches on column {col!r}, which "
                    "the features frame does not have"
                )
            allowed = [wanted] if isinstance(wanted, str) else list(wanted)
            hit &= _text_in(frame[col], allowed)
        out[hit] = i
        unresolved &= ~hit
    return out


def _text_in(col: pd.Series, allowed: list[str]) -> np.ndarray:
    """Per row: the value, as text, is one of `allowed` (missing never is). A categorical
    column of texts (what build_features gives) is compared once per category, not per row:
    converting the column to text costs more than the rest of a one-row score."""
    if isinstance(col.dtype, pd.CategoricalDtype) and isinstance(col.cat.categories.dtype,
                                                                  pd.StringDtype):
        known = _known_levels(tuple(col.cat.categories), tuple(allowed))
        # Code -1 (missing) reads the appended False.
        return known[col.cat.codes.to_numpy()]
    return col.astype("string").isin(allowed).to_numpy(dtype=bool)


@functools.lru_cache(maxsize=1024)
def _known_levels(levels: tuple[str, ...], allowed: tuple[str, ...]) -> np.ndarray:
    """Per category level, whether it is allowed, then False for the missing code: the same
    few levels come back on every one-account call (pandas' isin is costly per column)."""
    wanted = set(allowed)
    out = np.array([level in wanted for level in levels] + [False], dtype=bool)
    out.setflags(write=False)
    return out
