"""The rules score as a servable model: a probability from the composite through a fitted line.

When nothing trained beats the rules score on the backtest, the rules score is the champion:
its probability is `sigmoid(a * score + b)`, with `a` and `b` fitted on the labelled rows (for
churn `a` is negative: a lower score is a higher risk). The model keeps the rules it was
fitted for (their canonical content, so a later edit of the rules file does not silently
change what the numbers mean), the tables that were connected, and the training median of the
score for a row no dimension can score.

It reads the same model matrix as every bundle (`scoring.bundle.encode_frame`) and decodes it
back to feature values for `scoring.health.score_frame`, the one rules function. Its factors
are the rules score's own reasons (`scoring.health.summary.factor_table`: each feature's 0-100
score and its share of the composite): the log-odds are `b + a * sum(share * score)`, so
`a * share * (score - NEUTRAL)` is each feature's exact additive contribution and
`b + a * NEUTRAL` the base value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.health.profiles import Rules, parse_rules
from scoring.health.scoring import score_frame
from scoring.health.summary import factor_table

KIND = "rules"
NEUTRAL = 50.0
"""The score a feature's contribution is measured from: the middle of the 0-100 scale."""


@dataclass
class RulesScoreModel:
    features: tuple[str, ...]
    categories: dict[str, list[str]]
    connected: frozenset[str]
    rules_content: str
    """Canonical JSON of the rules (`Rules.content`)."""
    trend: tuple[int, float]
    a: float
    b: float
    fill: float
    """Score used for a row without any scored dimension (training median)."""
    _rules: Rules | None = field(default=None, repr=False, compare=False)

    @classmethod
    def for_rules(cls, rules: Rules, features: Sequence[str],
                  categories: Mapping[str, Sequence[str]], connected: frozenset[str],
                  a: float, b: float, fill: float) -> RulesScoreModel:
        return cls(tuple(features), {k: list(v) for k, v in categories.items()},
                   frozenset(connected), rules.content, (rules.trend_days, rules.trend_dead_band),
                   float(a), float(b), float(fill), rules)

    @property
    def rules(self) -> Rules:
        if self._rules is None:
            self._rules = parse_rules(json.loads(self.rules_content), Path("bundle:rules")) \
                .with_trend(*self.trend)
        return self._rules

    @property
    def config_version(self) -> str:
        return self.rules.config_version

    def frame(self, X: np.ndarray) -> pd.DataFrame:
        """The feature values of a model matrix (categories decoded), as score_frame reads."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        data: dict[str, Any] = {"account_id": [f"row-{i}" for i in range(len(X))],
                                "as_of": pd.Timestamp("2000-01-01")}
        for j, name in enumerate(self.features):
            col = X[:, j]
            if name in self.categories:
                levels = np.asarray(self.categories[name] + [None], dtype=object)
                codes = np.where(np.isnan(col), len(levels) - 1, col).astype(int)
                data[name] = pd.Categorical(levels[codes], categories=self.categories[name])
            else:
                data[name] = col
        return pd.DataFrame(data)

    def scores(self, X: np.ndarray) -> np.ndarray:
        """The rules composite (0-100) of each row; the training median where it is NaN."""
        s = score_frame(self.frame(X), self.connected, self.rules)["score"].to_numpy(float)
        return np.where(np.isnan(s), self.fill, s)

    def predict(self, X: np.ndarray, raw_score: bool = False, pred_contrib: bool = False,
                num_threads: int = 0) -> np.ndarray:
        """LightGBM's calling convention, as `scoring.linear.LinearModel.predict`."""
        if pred_contrib:
            return self._contributions(X)
        raw = self.a * self.scores(X) + self.b
        return raw if raw_score else 1.0 / (1.0 + np.exp(-raw))

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        frame = self.frame(X)
        scored = score_frame(frame, self.connected, self.rules)
        index = {name: j for j, name in enumerate(self.features)}
        out = np.zeros((len(frame), len(self.features) + 1))
        connected = self.connected | {"accounts"}
        for i in range(len(frame)):
            if np.isnan(scored["score"].iloc[i]):
                out[i, -1] = self.a * self.fill + self.b
                continue
            profile = self.rules.profile(str(scored["profile"].iloc[i]))
            table = factor_table(frame.iloc[i].to_dict(), connected, profile)
            table = table[table["share"] > 0]
            for name, share, s in zip(table["feature"], table["share"], table["score"],
                                      strict=True):
                if name in index:
                    out[i, index[name]] += self.a * share * (s - NEUTRAL)
            out[i, -1] = self.b + self.a * NEUTRAL
        return out

    def num_trees(self) -> int:
        return 0

    def feature_name(self) -> list[str]:
        return list(self.features)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "features": list(self.features), "categories": self.categories,
                "connected": sorted(self.connected), "rules_content": self.rules_content,
                "trend": list(self.trend), "a": self.a, "b": self.b, "fill": self.fill,
                "config_version": self.config_version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RulesScoreModel:
        return cls(tuple(d["features"]), {k: list(v) for k, v in d["categories"].items()},
                   frozenset(d["connected"]), str(d["rules_content"]),
                   (int(d["trend"][0]), float(d["trend"][1])), float(d["a"]), float(d["b"]),
                   float(d["fill"]))
