"""The six champion models as one set: encode a frame once, score and explain every model.

Owns grouping the loaded bundles (`scoring.bundle.load_bundles`, keyed by label) by target
and horizon, and by input encoding: bundles trained on the same feature list and category
levels share one model matrix, so a call encodes each distinct encoding once (pandas work is the
expensive part of a one-row call; LightGBM on a numpy row costs little). Probabilities
are calibrated and made monotone across a target's horizons exactly as `predict_horizons` does.
It words nothing and computes no rules score.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from cachetools import LRUCache

from scoring.bundle import (
    Bundle,
    BundleMismatchError,
    monotone_horizons,
    prediction_threads,
)

_LABEL = re.compile(r"^(churn|expansion)_(\d+)d$")
CONTRIBUTION_EPSILON = 1e-9
"""Contributions smaller than this (in log-odds) are no factor at all."""


def contribution_order(contributions: np.ndarray) -> np.ndarray:
    """Feature positions by falling |contribution| (ties in feature order): a factor's rank."""
    return np.argsort(-np.abs(contributions), kind="stable")


@dataclass(frozen=True)
class ModelEntry:
    label: str
    target: Literal["churn", "expansion"]
    horizon: int
    bundle: Bundle
    encoding: int
    """Index of the model matrix (in `ModelSet.encodings`) this model reads."""


@dataclass(frozen=True)
class Encoding:
    features: tuple[str, ...]
    categories: dict[str, list[str]]

    def index(self) -> dict[str, int]:
        return {name: j for j, name in enumerate(self.features)}

    def codes(self) -> dict[str, dict[str, int]]:
        return {name: {str(level): k for k, level in enumerate(levels)}
                for name, levels in self.categories.items()}


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and math.isnan(value))


def encode_values(values: Mapping[str, Any], enc: Encoding, codes: Mapping[str, Mapping[str, int]]
                  ) -> np.ndarray:
    """One account's values (a features row as a mapping) as a 1-row model matrix: the same
    encoding as `scoring.bundle.encode_frame`, without pandas' per-column cost."""
    absent = [f for f in enc.features if f not in values]
    if absent:
        raise BundleMismatchError(
            f"models: the input lacks {len(absent)} feature(s) the model was trained on: "
            f"{', '.join(absent)}"
        )
    out = np.empty((1, len(enc.features)), dtype=float)
    for j, name in enumerate(enc.features):
        value = values[name]
        if _missing(value):
            out[0, j] = np.nan
        elif name in codes:
            out[0, j] = codes[name].get(str(value), np.nan)
        else:
            try:
                out[0, j] = float(value)
            except (TypeError, ValueError) as exc:
                raise BundleMismatchError(
                    f"models: feature {name!r} must be numeric, got {value!r} ({exc})"
                ) from None
    return out


def _target_horizon(label: str, bundle: Bundle) -> tuple[str, int]:
    m = _LABEL.match(label)
    if m is None:
        meta = bundle.metadata
        if meta.get("target") in ("churn", "expansion") and meta.get("horizon"):
            return str(meta["target"]), int(meta["horizon"])
        raise BundleMismatchError(
            f"model {label!r}: cannot tell its target and horizon (expected a label like "
            "churn_90d or metadata target/horizon)"
        )
    return m.group(1), int(m.group(2))


class ModelSet:
    """Bundles by label, grouped by target (horizons ascending) and by input encoding."""

    def __init__(self, bundles: Mapping[str, Bundle]) -> None:
        keys: dict[str, int] = {}
        encodings: list[Encoding] = []
        entries = []
        for label, bundle in bundles.items():
            target, horizon = _target_horizon(label, bundle)
            sig = json.dumps([list(bundle.features), bundle.categories], sort_keys=True)
            if sig not in keys:
                keys[sig] = len(encodings)
                encodings.append(Encoding(tuple(bundle.features), dict(bundle.categories)))
            entries.append(ModelEntry(label, target, horizon, bundle, keys[sig]))  # type: ignore[arg-type]
        self.entries: tuple[ModelEntry, ...] = tuple(
            sorted(entries, key=lambda e: (e.target != "churn", e.horizon)))
        self.encodings: tuple[Encoding, ...] = tuple(encodings)
        self.indexes: tuple[dict[str, int], ...] = tuple(e.index() for e in encodings)
        self.codes: tuple[dict[str, dict[str, int]], ...] = tuple(e.codes() for e in encodings)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(e.label for e in self.entries)

    def by_target(self, target: str) -> tuple[ModelEntry, ...]:
        return tuple(e for e in self.entries if e.target == target)

    def entry(self, label: str) -> ModelEntry:
        for e in self.entries:
            if e.label == label:
                return e
        raise KeyError(f"no model {label!r}; have {', '.join(self.labels)}")

    def matrices(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """One float64 model matrix per encoding (a missing feature is a BundleMismatchError)."""
        from scoring.bundle import encode_frame

        return [encode_frame(frame, enc.features, enc.categories, what="models")
                for enc in self.encodings]

    def row_matrices(self, values: Mapping[str, Any]) -> list[np.ndarray]:
        """`matrices` of one account given as a mapping of its feature values."""
        return [encode_values(values, enc, codes)
                for enc, codes in zip(self.encodings, self.codes, strict=True)]

    def raw(self, matrices: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw log-odds per model (what the contributions add up to)."""
        return {e.label: np.asarray(e.bundle.booster.predict(
            matrices[e.encoding], raw_score=True,
            num_threads=prediction_threads(matrices[e.encoding])), dtype=float)
            for e in self.entries}

    def probabilities(self, matrices: Sequence[np.ndarray],
                      raw: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Calibrated probabilities, non-decreasing across each target's horizons per row."""
        raw = raw if raw is not None else self.raw(matrices)
        out: dict[str, np.ndarray] = {}
        for target in ("churn", "expansion"):
            group = self.by_target(target)
            if not group:
                continue
            cols = np.column_stack([e.bundle.calibrator.apply(raw[e.label]) for e in group])
            mono = monotone_horizons(cols)
            for j, e in enumerate(group):
                out[e.label] = mono[:, j]
        return out

    def top_factors(self, matrices: Sequence[np.ndarray], label: str, k: int
                    ) -> list[list[dict[str, Any]]]:
        """Per row, model `label`'s k largest contributions (exact TreeSHAP, log-odds):
        feature, contribution and whether it raises or lowers the model's output. The
        explanation's ranking (serving/factors.py) without its wording: what a batch writes
        for every account."""
        e = self.entry(label)
        x = matrices[e.encoding]
        contrib = np.asarray(e.bundle.booster.predict(
            x, pred_contrib=True, num_threads=prediction_threads(x)), dtype=float)[:, :-1]
        names = self.encodings[e.encoding].features
        out = []
        for row in contrib:
            top = [j for j in contribution_order(row)[:k]
                   if abs(row[j]) >= CONTRIBUTION_EPSILON]
            out.append([{"feature": names[j], "contribution": float(row[j]),
                         "direction": "raises" if row[j] > 0 else "lowers"} for j in top])
        return out

    def contributions(self, matrices: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Exact TreeSHAP per model: one column per feature of its encoding, then the bias."""
        return {e.label: np.asarray(e.bundle.booster.predict(
            matrices[e.encoding], pred_contrib=True,
            num_threads=prediction_threads(matrices[e.encoding])), dtype=float)
            for e in self.entries}


# Sets built from the same bundle objects are reused: grouping costs JSON of the levels.
_SETS: LRUCache[tuple[tuple[str, int], ...], tuple[ModelSet, tuple[Bundle, ...]]] = \
    LRUCache(maxsize=8)
_LOCK = threading.Lock()


def flatten(bundles: Mapping[str, Any]) -> dict[str, Bundle]:
    """Bundles by label, from `load_bundles`' {label: Bundle} or a {target: {horizon: Bundle}}
    grouping (what the service keeps)."""
    out: dict[str, Bundle] = {}
    for key, value in bundles.items():
        if isinstance(value, Bundle):
            out[key] = value
        elif isinstance(value, Mapping):
            for bundle in value.values():
                out[bundle.label] = bundle
        else:
            raise TypeError(f"bundles[{key!r}]: expected a Bundle or a mapping of Bundles")
    return out


def model_set(bundles: Mapping[str, Any] | ModelSet | None) -> ModelSet | None:
    """The ModelSet of these bundles (by label, or grouped by target and horizon), cached per
    bundle objects; None when there are none."""
    if bundles is None:
        return None
    if isinstance(bundles, ModelSet):
        return bundles if bundles.entries else None
    bundles = flatten(bundles)
    if not bundles:
        return None
    key = tuple(sorted((label, id(b)) for label, b in bundles.items()))
    with _LOCK:
        hit = _SETS.get(key)
    if hit is not None:
        return hit[0]
    built = ModelSet(bundles)
    with _LOCK:
        # Holding the bundles keeps their ids from being reused while the entry lives.
        _SETS[key] = (built, tuple(bundles.values()))
    return built


def load_models(models_dir: Path | str) -> tuple[ModelSet | None, str | None]:
    """The champion models under `models_dir` as one set, or (None, why there are none): a
    service or a command without trained models still scores by the rules."""
    from scoring.bundle import load_bundles

    try:
        bundles = load_bundles(models_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        return None, f"probabilities unavailable: {exc}"
    models = model_set(bundles)
    if models is None:
        return None, "probabilities unavailable: no churn/expansion models"
    return models, None
