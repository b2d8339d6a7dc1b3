"""Per-account model factors: exact TreeSHAP contributions turned into sentences a CSM reads.

Owns mapping one model's contribution row (LightGBM `pred_contrib`: one log-odds value per
feature, then the base value; their sum is the raw output exactly) through the feature registry
and the wording file to factors: the raw value, the peer median of the account's segment as the
baseline, the rank and the direction, split into positive, negative and missing and grouped by
dimension. Contributions are log-odds: a factor shows its rank and direction, and only the whole
sum is ever turned into a probability (base probability -> the account's probability). Pure: no
model calls, no I/O; the explanation driver (serving/explain.py) computes the contributions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from features.registry import feature
from scoring.health.wording import fill
from scoring.model_set import CONTRIBUTION_EPSILON, ModelEntry, contribution_order
from serving.explain_words import ExplainWords
from serving.peers import PeerGroup
from serving.schemas.explanation import DimensionEffect, Factor, ModelExplanation

EPSILON = CONTRIBUTION_EPSILON
CONTEXT_DIMENSION = "profile"
"""Who the customer is (segment, industry, tenure, seats, custom attributes): the model weighs
it, but it is context, not a signal a CSM can act on, so it is listed apart from the positive,
negative and missing factors."""


def additivity_error(contributions: np.ndarray, raw: np.ndarray) -> float:
    """Largest |base + sum(contributions) - raw output| over the rows: 0 up to float error."""
    contributions = np.atleast_2d(contributions)
    return float(np.max(np.abs(contributions.sum(axis=1) - np.asarray(raw, dtype=float))))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(np.isnan(value))
    except TypeError:
        return False


def _shown_value(value: Any) -> float | str | None:
    if _is_missing(value):
        return None
    if isinstance(value, str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def factor_text(name: str, value: Any, words: ExplainWords, *, connected: frozenset[str],
                peer_median: float | None, group: str) -> str:
    """One sentence for a feature's value against its peer group's median."""
    spec = feature(name)
    description = spec.description
    if _is_missing(value):
        if spec.source not in connected:
            return words.fill("factor.not_connected", description=description,
                              source=words.source(spec.source)["what"]
                              if spec.source != "accounts" else spec.source)
        return words.fill("factor.missing", description=description)
    shown = words.value(name, value)
    if peer_median is None or isinstance(value, str):
        return words.fill("factor.no_peer", description=description, value=shown)
    peer = words.value(name, peer_median)
    template = words.feature_sentence(name) or words.get("factor.line")
    return fill(template, description=description, value=shown, peer=peer, group=group)


def explain_model(
    entry: ModelEntry,
    features: tuple[str, ...],
    contributions: np.ndarray,
    values: Mapping[str, Any],
    probability: float,
    words: ExplainWords,
    *,
    connected: frozenset[str],
    peers: PeerGroup | None = None,
    group: str = "",
    top_k: int = 5,
    texts: dict[str, str] | None = None,
) -> ModelExplanation:
    """Factors of one model for one account.

    `contributions` is the model's pred_contrib row (features in `features` order, then the base
    value); `values` the account's feature values as built (categories as text); `probability`
    its calibrated (monotone) probability. `texts` caches each feature's sentence across the
    models of one account (the same value and peer median read the same in every model).
    """
    texts = {} if texts is None else texts
    contributions = np.asarray(contributions, dtype=float).ravel()
    if len(contributions) != len(features) + 1:
        raise ValueError(f"{entry.label}: {len(contributions)} contributions for "
                         f"{len(features)} features (expected one per feature plus the base)")
    base = float(contributions[-1])
    contrib = contributions[:-1]
    raw = base + float(contrib.sum())
    # Good for the account: lower churn, higher expansion.
    good_sign = -1.0 if entry.target == "churn" else 1.0
    target = str(words.get(f"targets.{entry.target}"))
    order = contribution_order(contrib)
    rank = np.empty(len(contrib), dtype=int)
    rank[order] = np.arange(1, len(contrib) + 1)

    positive: list[Factor] = []
    negative: list[Factor] = []
    missing: list[Factor] = []
    profile: list[Factor] = []
    dims: dict[str, float] = {}
    for j in order:
        c = float(contrib[j])
        name = features[j]
        spec = feature(name)
        dims[spec.dimension] = dims.get(spec.dimension, 0.0) + c
        if abs(c) < EPSILON:
            continue
        value = values.get(name)
        if spec.dimension == CONTEXT_DIMENSION:
            bucket = profile
        elif _is_missing(value):
            bucket = missing
        else:
            bucket = positive if c * good_sign > 0 else negative
        if len(bucket) >= top_k:
            continue
        median = peers.median(name) if peers is not None else None
        factor = Factor(
            feature=name, dimension=spec.dimension, rank=int(rank[j]),
            direction="raises" if c > 0 else "lowers", contribution=c,
            value=_shown_value(value), peer_median=median,
            peer_percentile=peers.percentile(name, value) if peers is not None
            and not isinstance(value, str) else None,
            text=texts[name] if name in texts else texts.setdefault(name, factor_text(
                name, value, words, connected=connected, peer_median=median, group=group)),
        )
        bucket.append(factor)

    dim_order = sorted(dims, key=lambda d: (-abs(dims[d]), d))
    effects = [DimensionEffect(dimension=d, label=words.dimension(d), contribution=dims[d],
                               direction="raises" if dims[d] > 0 else "lowers", rank=i + 1)
               for i, d in enumerate(dim_order) if abs(dims[d]) >= EPSILON]
    base_p = float(entry.bundle.calibrator.apply(np.array([base]))[0])
    text = words.fill("outlook.line", Target=target.capitalize(), target=target,
                      horizon=entry.horizon, probability=probability) + " (" + words.fill(
        "outlook.whole_sum", base=base_p, probability=probability) + ")"
    return ModelExplanation(
        label=entry.label, target=entry.target, horizon=entry.horizon,
        probability=float(np.clip(probability, 0.0, 1.0)),
        base_probability=float(np.clip(base_p, 0.0, 1.0)), base_log_odds=base,
        raw_log_odds=raw, positive=positive, negative=negative, missing=missing,
        profile=profile,
        dimensions=effects, text=text,
    )
