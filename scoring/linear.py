"""A servable logistic regression: the linear champion as numbers, applied with numpy alone.

When logistic regression beats the trees on the backtest, it is what serving scores with, so it
must load and predict without sklearn (scoring never imports it). The model reads the same model
matrix as a LightGBM bundle (`scoring.bundle.encode_frame`: features in order, categories as
codes) and builds its design from it:

- a numeric feature: its value with a missing one replaced by the training median, and, when
  the training rows had missing values, a 0/1 missing indicator;
- a categorical feature: one 0/1 column per level seen often enough in training (the others,
  and missing, are all zeros);

every design column then standardised by its training mean and spread. The log-odds are
`intercept + sum(coef * z)`, so `coef * z` summed over a feature's columns is that feature's
exact additive contribution (the coefficient times the standardised deviation from the training
mean) and the intercept is the log-odds of the average training row: the same shape as
LightGBM's `pred_contrib` (one column per feature, then the base value).

`LinearModel.predict` takes LightGBM's arguments (`raw_score`, `pred_contrib`, `num_threads`), so
a bundle and the model set call every kind of model the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KIND = "logistic"
VALUE, MISSING, LEVEL = "value", "missing", "level"


@dataclass(frozen=True)
class DesignColumn:
    feature: int
    """Position of the feature in the model matrix."""
    kind: str
    """`value`, `missing` (indicator) or `level` (one-hot of a category code)."""
    level: float = 0.0
    """The category code of a `level` column."""


@dataclass
class LinearModel:
    features: tuple[str, ...]
    columns: tuple[DesignColumn, ...]
    medians: np.ndarray
    """Per feature: the training median used for a missing value (NaN for categories)."""
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    C: float | None = None
    """The inverse L2 strength it was fitted with (recorded, not used to predict)."""

    @classmethod
    def layout(cls, X: np.ndarray, features: Sequence[str], categorical: Sequence[str],
               min_level_rows: int = 20) -> LinearModel:
        """An unfitted model whose design (imputation, columns, standardisation) is learnt from
        the training matrix `X`; `with_coefficients` completes it."""
        X = np.asarray(X, dtype=float)
        cats = set(categorical)
        columns: list[DesignColumn] = []
        medians = np.full(len(features), np.nan)
        for j, name in enumerate(features):
            col = X[:, j]
            seen = ~np.isnan(col)
            if not seen.any():
                continue  # all missing in training: carries nothing
            if name in cats:
                codes, counts = np.unique(col[seen], return_counts=True)
                columns += [DesignColumn(j, LEVEL, float(c))
                            for c, k in zip(codes, counts, strict=True) if k >= min_level_rows]
                continue
            medians[j] = float(np.median(col[seen]))
            columns.append(DesignColumn(j, VALUE))
            if not seen.all():
                columns.append(DesignColumn(j, MISSING))
        model = cls(tuple(features), tuple(columns), medians, np.zeros(len(columns)),
                    np.ones(len(columns)), np.zeros(len(columns)), 0.0)
        d = model._unscaled(X)
        spread = d.std(axis=0) if len(d) else np.ones(len(columns))
        model.center = d.mean(axis=0) if len(d) else np.zeros(len(columns))
        model.scale = np.where(spread > 1e-12, spread, 1.0)
        return model

    def with_coefficients(self, coef: np.ndarray, intercept: float, C: float | None = None
                          ) -> LinearModel:
        return LinearModel(self.features, self.columns, self.medians, self.center, self.scale,
                           np.asarray(coef, dtype=float).ravel(), float(intercept), C)

    def _unscaled(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        out = np.empty((len(X), len(self.columns)))
        for k, c in enumerate(self.columns):
            col = X[:, c.feature]
            if c.kind == VALUE:
                out[:, k] = np.where(np.isnan(col), self.medians[c.feature], col)
            elif c.kind == MISSING:
                out[:, k] = np.isnan(col)
            else:
                out[:, k] = col == c.level
        return out

    def design(self, X: np.ndarray) -> np.ndarray:
        """The standardised design matrix of a model matrix (what the coefficients multiply)."""
        return (self._unscaled(X) - self.center) / self.scale

    def _owners(self) -> np.ndarray:
        owners = np.zeros((len(self.columns), len(self.features)))
        for k, c in enumerate(self.columns):
            owners[k, c.feature] = 1.0
        return owners

    def predict(self, X: np.ndarray, raw_score: bool = False, pred_contrib: bool = False,
                num_threads: int = 0) -> np.ndarray:
        """LightGBM's calling convention: probabilities, raw log-odds (`raw_score`), or one
        contribution per feature then the base value (`pred_contrib`)."""
        z = self.design(X)
        if pred_contrib:
            out = np.empty((len(z), len(self.features) + 1))
            out[:, :-1] = (z * self.coef) @ self._owners()
            out[:, -1] = self.intercept
            return out
        raw = z @ self.coef + self.intercept
        return raw if raw_score else 1.0 / (1.0 + np.exp(-raw))

    def num_trees(self) -> int:
        return 0

    def feature_name(self) -> list[str]:
        return list(self.features)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "features": list(self.features),
                "columns": [{"feature": c.feature, "kind": c.kind, "level": c.level}
                            for c in self.columns],
                "medians": [None if np.isnan(m) else float(m) for m in self.medians],
                "center": self.center.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "C": self.C}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LinearModel:
        return cls(tuple(d["features"]),
                   tuple(DesignColumn(int(c["feature"]), str(c["kind"]), float(c["level"]))
                         for c in d["columns"]),
                   np.array([np.nan if m is None else m for m in d["medians"]], dtype=float),
                   np.asarray(d["center"], dtype=float), np.asarray(d["scale"], dtype=float),
                   np.asarray(d["coef"], dtype=float), float(d["intercept"]), d.get("C"))
