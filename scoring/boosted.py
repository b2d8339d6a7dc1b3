"""LightGBM boosted from a logistic fit: the line first, the trees on what it misses.

A booster trained with LightGBM's `init_score` learns trees that add to a given starting
log-odds; it does not store that start, so it cannot predict alone. `BoostedModel` keeps the
two together: the logistic regression the boosting began from (`scoring.linear.LinearModel`,
fitted on the same rows with the same model matrix) and the trees. Its log-odds are the line's
plus the trees', and both halves are exactly additive per feature (the line's coefficient times
the standardised deviation, the trees' TreeSHAP), so its contributions are their sum: one
column per feature, then the two base values added.

It takes LightGBM's `predict` arguments, like every model a bundle holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from scoring.linear import LinearModel

KIND = "lightgbm_on_logistic"


@dataclass
class BoostedModel:
    start: LinearModel
    """The logistic regression whose log-odds the boosting began from."""
    trees: lgb.Booster
    """The trees fitted on top of it (their output excludes the start)."""

    def predict(self, X: np.ndarray, raw_score: bool = False, pred_contrib: bool = False,
                num_threads: int = 0) -> np.ndarray:
        """Probabilities, raw log-odds (`raw_score`), or one contribution per feature then the
        base value (`pred_contrib`): in each case the line's and the trees' added."""
        X = np.asarray(X, dtype=float)
        if pred_contrib:
            return self.start.predict(X, pred_contrib=True) + np.asarray(
                self.trees.predict(X, pred_contrib=True, num_threads=num_threads), dtype=float)
        raw = self.start.predict(X, raw_score=True) + np.asarray(
            self.trees.predict(X, raw_score=True, num_threads=num_threads), dtype=float)
        return raw if raw_score else 1.0 / (1.0 + np.exp(-raw))

    def num_trees(self) -> int:
        return int(self.trees.num_trees())

    def feature_name(self) -> list[str]:
        return list(self.trees.feature_name())
