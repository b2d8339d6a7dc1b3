"""How the stored predictions did once their outcomes are known: ROC AUC, calibration and
top-decile lift per label, and the product's KPIs, computed from stored scores and real outcomes.

Pure numpy/scipy (no fitting code). A prediction made as of T for a horizon of h days is judged
only when the window [T, T+h) has fully passed (its label has matured); an account that churned
before T was never predicted. Accuracy figures are reported with the accuracy of always
answering "no" beside them, because with a low event rate a high accuracy alone says nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Mann-Whitney ROC AUC (ties count one half); None without both classes."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return None
    ranks = rankdata(p)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over quantile bins of p, and observed over predicted rate."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if not len(y):
        return {"ece": None, "observed": None, "predicted": None, "bins": []}
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    table = []
    ece = 0.0
    for b in np.unique(idx):
        m = idx == b
        table.append({"predicted": round(float(p[m].mean()), 4),
                      "observed": round(float(y[m].mean()), 4), "rows": int(m.sum())})
        ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return {"ece": round(float(ece), 4), "observed": round(float(y.mean()), 4),
            "predicted": round(float(p.mean()), 4), "bins": table}


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float | None:
    y = np.asarray(y, dtype=float)
    if not len(y) or y.mean() == 0:
        return None
    k = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-np.asarray(p, dtype=float), kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def classification_kpi(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy of "the event happens" when p >= threshold, with the always-no accuracy, the
    precision and the recall beside it."""
    y = np.asarray(y, dtype=bool)
    said = np.asarray(p, dtype=float) >= threshold
    n = len(y)
    if not n:
        return {"rows": 0}
    hits = int((said & y).sum())
    return {"rows": n, "threshold": threshold, "accuracy": round(float((said == y).mean()), 4),
            "always_no_accuracy": round(float((~y).mean()), 4),
            "precision": round(hits / int(said.sum()), 4) if said.any() else None,
            "recall": round(hits / int(y.sum()), 4) if y.any() else None,
            "event_rate": round(float(y.mean()), 4)}


def trend_accuracy(trend: np.ndarray, change: np.ndarray, dead_band: float) -> dict[str, Any]:
    """Share of stored trends (improving / stable / declining) that the score's next move over
    the same number of days went the same way as (change within the dead band: stable)."""
    trend = np.asarray(trend, dtype=object)
    change = np.asarray(change, dtype=float)
    known = np.isfinite(change) & np.isin(trend, ["improving", "stable", "declining"])
    if not known.any():
        return {"rows": 0, "accuracy": None}
    actual = np.where(change[known] > dead_band, "improving",
                      np.where(change[known] < -dead_band, "declining", "stable"))
    share = {t: round(float((actual == t).mean()), 4)
             for t in ("improving", "stable", "declining")}
    return {"rows": int(known.sum()), "accuracy": round(float((actual == trend[known]).mean()), 4),
            "majority_accuracy": max(share.values()), "actual_shares": share}


def event_within(entities: pd.DataFrame, events: pd.DataFrame, horizon: int) -> np.ndarray:
    """1.0 where the entity's account has an event (`account_id`, `at`) in [as_of,
    as_of + horizon), else 0.0; one value per entity row, in order."""
    ents = entities[["account_id", "as_of"]].reset_index(drop=True).copy()
    ents["row"] = np.arange(len(ents))
    ents["as_of"] = pd.to_datetime(ents["as_of"]).astype("datetime64[us]")
    ev = events[["account_id", "at"]].copy()
    ev["at"] = pd.to_datetime(ev["at"]).astype("datetime64[us]")
    both = ents.merge(ev, on="account_id", how="inner")
    hit = (both["at"] >= both["as_of"]) & (both["at"] < both["as_of"]
                                          + pd.Timedelta(days=horizon))
    out = np.zeros(len(ents))
    out[both.loc[hit, "row"].to_numpy(dtype=int)] = 1.0
    return out
