"""What training one (target, horizon) model produces: the bundle and its evaluation.

Its own module so the training job and its tracking both read it without importing each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.bundle import Bundle
from training import evaluate


@dataclass
class ModelResult:
    """One (target, horizon) model: the registered bundle and its evaluation."""

    label: str
    target: str
    horizon: int
    bundle: Bundle
    split: dict[str, Any]
    """How the rows were divided (windows of a time split, or the CV scheme)."""
    test: dict[str, dict[str, Any]]
    folds: list[dict[str, dict[str, Any]]]
    segments: dict[str, Any]
    y_test: np.ndarray
    test_predictions: dict[str, np.ndarray | None]
    test_frame: pd.DataFrame
    leakage: list[dict[str, Any]] = field(default_factory=list)
    promotion: dict[str, Any] | None = None
    registered_as: str | None = None
    """Registry name; default `healthscore-<target>-<h>d`."""
    pooled: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Metrics over all backtest folds' test rows pooled."""
    selection: dict[str, Any] | None = None
    """The champion choice among the candidates (`training.selection.choose_champion`); None
    for a model chosen otherwise (the table mode keeps its own)."""

    @property
    def champion(self) -> str:
        """Which candidate the bundle is (`model` = LightGBM, `logistic`, `rules`)."""
        return self.selection["scorer"] if self.selection else "model"

    @property
    def backtest_auc(self) -> float | None:
        """The AUC promotion compares: the champion's pooled out-of-fold ROC AUC when the
        candidates were compared (the one AUC its report states), else the folds' mean."""
        if self.selection is not None:
            return self.selection["roc_auc"][self.champion]["value"]
        vals = [f["model"]["roc_auc"] for f in self.folds if f["model"]["roc_auc"] is not None]
        return float(np.mean(vals)) if vals else None

    def backtest_key(self, fingerprint: str) -> str:
        """Identifies the backtest (data and fold windows) so two runs compare like for like."""
        tests = [f["_test"] for f in self.folds]
        return f"{fingerprint}:{json.dumps(tests)}"

    def to_report(self) -> dict[str, Any]:
        folds = [{k: v for k, v in f.items() if not k.startswith("_")} for f in self.folds]
        out: dict[str, Any] = {
            "target": self.target, "horizon": self.horizon,
            "split": self.split,
            "trees": self.bundle.n_trees,
            "selection": self.bundle.metadata.get("selection", {}),
            "calibration": self.bundle.metadata.get("calibration", {}),
            "test": self.test,
            "backtest": {
                "folds": [f | {"test": t["_test"]} for f, t in zip(folds, self.folds,
                                                                  strict=True)],
                "summary": evaluate.summarise_folds(folds),
                "model_roc_auc_mean": self.backtest_auc,
                "pooled": self.pooled,
            },
            "segments": self.segments,
            "reliability": evaluate.reliability_curve(
                self.y_test, self.test_predictions["model"]).to_dict("records"),
            "leakage": self.leakage,
        }
        oracle = self.test.get("oracle")
        if oracle:
            out["gap_to_oracle"] = {
                k: (oracle[k] - self.test["model"][k])
                if oracle.get(k) is not None and self.test["model"].get(k) is not None else None
                for k in ("roc_auc", "pr_auc", "top_decile_lift")}
        pooled_oracle = self.pooled.get("oracle")
        if pooled_oracle:
            out["backtest"]["gap_to_oracle"] = {
                k: pooled_oracle[k] - self.pooled["model"][k]
                for k in ("roc_auc", "pr_auc", "top_decile_lift")
                if pooled_oracle.get(k) is not None and self.pooled["model"].get(k) is not None}
        if self.selection is not None:
            # `test` is the pooled out-of-fold rows: the backtest's one AUC per candidate (the
            # folds keep their own figures, each for its own test window).
            out["test_rows"] = "every backtest fold's test rows pooled (out of fold)"
            out["champion"] = self.selection
            out["kind"] = self.bundle.kind
            del out["backtest"]["model_roc_auc_mean"]  # `pooled` is `test`: the same numbers
            for scorer in out["backtest"]["summary"].values():
                scorer.pop("roc_auc", None)
        if self.promotion:
            out["promotion"] = self.promotion
        return out
