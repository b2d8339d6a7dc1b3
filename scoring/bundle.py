"""The model bundle: what serving needs to rebuild a model's input and score it, saved on disk.

A bundle is one directory: the model and `bundle.json` (the model's kind, the ordered feature
list, the category levels of categorical features, the feature-set version, the calibrator's
parameters, the label it predicts and free metadata). The model is the champion of its target's
backtest: LightGBM (`model.txt`, its native text model), LightGBM boosted from a logistic fit
(`scoring.boosted`: the trees in `model.txt`, the line in `model.json`), a logistic regression
(`scoring.linear`, `model.json`) or the rules score read as a probability
(`scoring.rules_model`, `model.json`). All of them take LightGBM's `predict` arguments, so
everything downstream scores and explains them the same way. Categorical features are
encoded here, the same way for training and serving: the code of a value is its position in the
saved levels, and an unseen value is missing. Training writes bundles; serving loads them and
calls `Bundle.predict_proba`, which refuses a frame that lacks a feature or a bundle built for
another feature-set version, with a clear error.

It must not import training or any fitting code (sklearn); calibration is applied with numpy
from saved parameters.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.registry import FEATURE_SET_VERSION
from scoring.boosted import KIND as BOOSTED_KIND
from scoring.boosted import BoostedModel
from scoring.linear import KIND as LINEAR_KIND
from scoring.linear import LinearModel
from scoring.rules_model import KIND as RULES_KIND
from scoring.rules_model import RulesScoreModel

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 2
"""2: a bundle says its model's kind (LightGBM, LightGBM on a logistic fit, logistic regression
or the rules score)."""
MODEL_FILE = "model.txt"
NUMERIC_MODEL_FILE = "model.json"
"""The model file of a logistic-regression or rules-score bundle (numbers only)."""
LIGHTGBM = "lightgbm"
MODEL_KINDS = (LIGHTGBM, BOOSTED_KIND, LINEAR_KIND, RULES_KIND)
TREE_KINDS = (LIGHTGBM, BOOSTED_KIND)
"""The kinds that hold LightGBM trees: the backtest's LightGBM candidate is one of them."""
META_FILE = "bundle.json"
_TIE_BREAK = 1e-6


class BundleMismatchError(ValueError):
    """The input does not match what the model was trained on."""


@dataclass(frozen=True)
class Calibrator:
    """Maps the booster's raw log-odds to a calibrated probability.

    `isotonic`: piecewise-linear through (x, y) where x is the raw probability, clipped at the
    ends (sklearn's IsotonicRegression with out_of_bounds="clip"). `sigmoid`: Platt scaling,
    p = 1 / (1 + exp(-(a * logit + b))). `identity`: the raw probability.
    """

    method: Literal["isotonic", "sigmoid", "identity"] = "identity"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def apply(self, raw_logit: np.ndarray) -> np.ndarray:
        raw_logit = np.asarray(raw_logit, dtype=float)
        if self.method == "isotonic":
            raw_p = _sigmoid(raw_logit)
            iso = np.interp(raw_p, np.asarray(self.x), np.asarray(self.y))
            # Isotonic steps tie rows the booster ranked apart; a millionth of the raw
            # probability keeps its order (and ranking metrics) without moving calibration.
            return (1 - _TIE_BREAK) * iso + _TIE_BREAK * raw_p
        if self.method == "sigmoid":
            return _sigmoid(self.a * raw_logit + self.b)
        return _sigmoid(raw_logit)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "a": self.a,
                "b": self.b}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:
        return cls(method=d["method"], x=tuple(d.get("x", ())), y=tuple(d.get("y", ())),
                   a=float(d.get("a", 1.0)), b=float(d.get("b", 0.0)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Bundle:
    """A trained model and everything needed to score new rows with it."""

    booster: lgb.Booster | BoostedModel | LinearModel | RulesScoreModel
    """The model: a LightGBM booster, or a boosted, logistic or rules-score model with its
    interface."""
    label: str
    """What it predicts, e.g. `churn_90d`."""
    features: tuple[str, ...]
    categories: dict[str, list[str]]
    """Levels of each categorical feature, in code order."""
    feature_set_version: str
    calibrator: Calibrator = field(default_factory=Calibrator)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_trees(self) -> int:
        return int(self.booster.num_trees())

    @property
    def kind(self) -> str:
        """`lightgbm`, `lightgbm_on_logistic`, `logistic` or `rules`: which candidate of the
        backtest this is, in which form."""
        if isinstance(self.booster, BoostedModel):
            return BOOSTED_KIND
        if isinstance(self.booster, LinearModel):
            return LINEAR_KIND
        if isinstance(self.booster, RulesScoreModel):
            return RULES_KIND
        return LIGHTGBM

    def matrix(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The float64 model matrix, columns in `features` order, categories as codes."""
        if isinstance(data, pd.DataFrame):
            return encode_frame(data, self.features, self.categories, what=self.label)
        arr = np.asarray(data, dtype=float)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(self.features):
            raise BundleMismatchError(
                f"model {self.label} expects {len(self.features)} features "
                f"({', '.join(self.features[:5])}, ...), got an array of shape {arr.shape}"
            )
        return arr

    def predict_raw(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw log-odds (uncalibrated), the scale SHAP contributions add up to."""
        x = self.matrix(data)
        return np.asarray(self.booster.predict(
            x, raw_score=True, num_threads=prediction_threads(x)), dtype=float)

    def predict_proba(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probability of the event, one per row."""
        return self.calibrator.apply(self.predict_raw(data))

    def contributions(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Exact additive contributions in log-odds, one column per feature, then the base value:
        TreeSHAP for LightGBM, coefficient times standardised deviation for logistic
        regression (their sum for LightGBM on a logistic fit), the rules' own feature shares
        for the rules score."""
        x = self.matrix(data)
        return np.asarray(self.booster.predict(
            x, pred_contrib=True, num_threads=prediction_threads(x)), dtype=float)


SMALL_BATCH = 1000
"""Up to this many rows a prediction runs on the calling thread. OpenMP's default team waits
for every core: on a busy machine a one-row prediction spends far longer waiting than
predicting (bench/RESULTS.md); a big batch still gets all cores."""


def prediction_threads(x: np.ndarray) -> int:
    """LightGBM's `num_threads` for predicting (or explaining) the rows of `x`: the one policy
    for every prediction the service makes (bundles here, `scoring.model_set` too)."""
    return 1 if len(x) <= SMALL_BATCH else 0


def encode_frame(
    frame: pd.DataFrame,
    features: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    what: str = "model",
) -> np.ndarray:
    """Encode a feature frame for a model; a missing column is a BundleMismatchError."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise BundleMismatchError(
            f"{what}: the input lacks {len(missing)} feature(s) the model was trained on: "
            f"{', '.join(missing)}"
        )
    out = np.empty((len(frame), len(features)), dtype=float)
    numeric = [j for j, name in enumerate(features) if name not in categories]
    block = frame[[features[j] for j in numeric]]
    if all(dtype.kind in "fiub" for dtype in block.dtypes):
        # Every numeric feature already has a numeric dtype (what build_features gives): one
        # conversion for them all. Per column, pandas' overhead would make a one-row frame cost
        # more than the model itself (bench/RESULTS.md).
        out[:, numeric] = block.to_numpy(dtype=float, na_value=np.nan)
        todo = [j for j, name in enumerate(features) if name in categories]
    else:
        todo = list(range(len(features)))
    for j in todo:
        name = features[j]
        col = frame[name]
        if name in categories:
            # Missing values and unseen levels are NaN (not a level: levels are texts).
            levels = _levels(tuple(categories[name]))
            if isinstance(col.dtype, pd.CategoricalDtype):
                # Look up each of the column's categories once, not each row's value.
                found = levels.get_indexer(col.cat.categories.to_numpy(dtype=object))
                row_codes = col.cat.codes.to_numpy()
                codes = np.where(row_codes >= 0, found[row_codes], -1)
            else:
                codes = levels.get_indexer(col.to_numpy(dtype=object))
            out[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            try:
                numeric = pd.to_numeric(col, errors="raise")
                out[:, j] = numeric.to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError) as exc:
                raise BundleMismatchError(
                    f"{what}: feature {name!r} must be numeric, got {col.dtype} ({exc})"
                ) from None
    return out


@functools.lru_cache(maxsize=256)
def _levels(levels: tuple[str, ...]) -> pd.Index:
    """A model's levels of one categorical feature as an index, built once per model."""
    return pd.Index(list(levels), dtype=object)


def category_levels(frame: pd.DataFrame, features: Sequence[str]) -> dict[str, list[str]]:
    """Levels of the non-numeric features of a training frame, sorted for a stable code order."""
    levels: dict[str, list[str]] = {}
    dtypes = frame.dtypes  # one lookup for every feature: a wide frame's columns cost each
    for name in features:
        dtype = dtypes[name]
        if isinstance(dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(dtype):
            if pd.api.types.is_bool_dtype(dtype):
                continue
            # The distinct values first, then their texts: the same levels, far fewer texts.
            values = {str(v) for v in frame[name].dropna().unique()}
            levels[name] = sorted(values)
    return levels


def monotone_horizons(probabilities: np.ndarray) -> np.ndarray:
    """Make probabilities non-decreasing across horizons (columns in ascending horizon order).

    An event within 30 days is also an event within 90 days, so p30 <= p60 <= p90 must hold per
    row; separately trained models can break it, the running maximum restores it.
    """
    return np.maximum.accumulate(np.asarray(probabilities, dtype=float), axis=1)


def predict_horizons(bundles: Mapping[int, Bundle], frame: pd.DataFrame) -> pd.DataFrame:
    """Calibrated probabilities of one target at every horizon, monotone in the horizon."""
    horizons = sorted(bundles)
    first = bundles[horizons[0]]
    data: pd.DataFrame | np.ndarray = frame
    if all(b.features == first.features and b.categories == first.categories
           for b in bundles.values()):
        # Models of one training job share their inputs: encode the frame once, not per model.
        data = first.matrix(frame)
    raw = np.column_stack([bundles[h].predict_proba(data) for h in horizons])
    mono = monotone_horizons(raw)
    return pd.DataFrame(mono, columns=[bundles[h].label for h in horizons], index=frame.index)


def save_bundle(bundle: Bundle, directory: Path | str) -> Path:
    """Write the bundle to a directory (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A directory that held another kind of champion before: drop the files this kind lacks.
    for name in {MODEL_FILE, NUMERIC_MODEL_FILE} - set(_model_files(bundle.kind)):
        (directory / name).unlink(missing_ok=True)
    model = bundle.booster
    if isinstance(model, lgb.Booster):
        model.save_model(str(directory / MODEL_FILE))
    elif isinstance(model, BoostedModel):
        model.trees.save_model(str(directory / MODEL_FILE))
        (directory / NUMERIC_MODEL_FILE).write_text(json.dumps(model.start.to_dict()))
    else:
        (directory / NUMERIC_MODEL_FILE).write_text(json.dumps(model.to_dict()))
    meta = {
        "format": BUNDLE_FORMAT,
        "kind": bundle.kind,
        "label": bundle.label,
        "features": list(bundle.features),
        "categories": bundle.categories,
        "feature_set_version": bundle.feature_set_version,
        "calibrator": bundle.calibrator.to_dict(),
        "metadata": bundle.metadata,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return directory


def load_bundle(
    directory: Path | str, feature_set_version: str | None = FEATURE_SET_VERSION
) -> Bundle:
    """Load a bundle; refuse one built for another feature-set version (None skips the check)."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{directory} is not a model bundle (needs {META_FILE}): run `healthscore train` "
            "first"
        )
    meta = json.loads(meta_path.read_text())
    kind = meta.get("kind", LIGHTGBM)
    if kind not in MODEL_KINDS:
        raise BundleMismatchError(f"{meta_path}: unknown model kind {kind!r} "
                                  f"(this code reads {', '.join(MODEL_KINDS)})")
    for name in _model_files(kind):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory} is not a model bundle (needs {name} "
                                    f"and {META_FILE}): run `healthscore train` first")
    model_file = directory / _model_files(kind)[0]
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleMismatchError(
            f"{meta_path}: bundle format {meta.get('format')!r}, this code reads {BUNDLE_FORMAT}"
        )
    if feature_set_version is not None and meta["feature_set_version"] != feature_set_version:
        raise BundleMismatchError(
            f"{meta_path}: model {meta['label']} was trained on feature-set version "
            f"{meta['feature_set_version']!r} but the features are version "
            f"{feature_set_version!r}: retrain with `healthscore train`"
        )
    booster: lgb.Booster | BoostedModel | LinearModel | RulesScoreModel
    if kind == LIGHTGBM:
        booster = lgb.Booster(model_file=str(model_file))
    elif kind == BOOSTED_KIND:
        booster = BoostedModel(
            LinearModel.from_dict(json.loads((directory / NUMERIC_MODEL_FILE).read_text())),
            lgb.Booster(model_file=str(model_file)))
    elif kind == LINEAR_KIND:
        booster = LinearModel.from_dict(json.loads(model_file.read_text()))
    else:
        booster = RulesScoreModel.from_dict(json.loads(model_file.read_text()))
    features = tuple(meta["features"])
    if tuple(booster.feature_name()) != features:
        raise BundleMismatchError(f"{meta_path}: feature list differs from {model_file.name}'s")
    return Bundle(
        booster=booster,
        label=meta["label"],
        features=features,
        categories={k: list(v) for k, v in meta["categories"].items()},
        feature_set_version=meta["feature_set_version"],
        calibrator=Calibrator.from_dict(meta["calibrator"]),
        metadata=meta.get("metadata", {}),
    )


def _model_files(kind: str) -> tuple[str, ...]:
    """The model files a bundle of `kind` holds (the first is the one its features are read
    from)."""
    if kind == LIGHTGBM:
        return (MODEL_FILE,)
    if kind == BOOSTED_KIND:
        return (MODEL_FILE, NUMERIC_MODEL_FILE)
    return (NUMERIC_MODEL_FILE,)


def load_bundles(
    models_dir: Path | str, feature_set_version: str | None = FEATURE_SET_VERSION
) -> dict[str, Bundle]:
    """Every bundle directly under `models_dir`, by label (`churn_30d`, ...)."""
    models_dir = Path(models_dir)
    out: dict[str, Bundle] = {}
    for meta in sorted(models_dir.glob(f"*/{META_FILE}")):
        bundle = load_bundle(meta.parent, feature_set_version)
        out[bundle.label] = bundle
    if not out:
        raise FileNotFoundError(f"no model bundles under {models_dir}: run `healthscore train`")
    return out
