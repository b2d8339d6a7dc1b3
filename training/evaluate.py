"""Evaluation: metrics on held-out rows, the report (JSON and Markdown) and its plots.

Metrics for one ranking or probability against 0/1 outcomes: ROC AUC, PR AUC (average
precision), top-decile lift, recall at the top 10%, Brier score, expected calibration error
(ECE: 10 equal-width bins, weighted by rows; the 10-equal-mass-bin variant is `ece_quantile`)
and the reliability curve. Ties in a ranking are shared fairly: the top decile takes a tied
group's positives in proportion to the seats left. Rankings that are not probabilities (the
rules score) get ranking metrics only.

Pure functions over arrays and dicts, plus plot writers that only draw. No fitting, no MLflow.
The metrics are numpy over one sort each, with the values scikit-learn's `roc_auc_score`,
`average_precision_score` and `brier_score_loss` give (to 1e-12, tested): a backtest computes
them for every scorer, fold and segment, where scikit-learn's input validation cost more than
the arithmetic.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

log = logging.getLogger(__name__)

RANKING_METRICS = ("roc_auc", "pr_auc", "top_decile_lift", "recall_at_10pct")
PROBABILITY_METRICS = ("brier", "ece", "ece_quantile", "mean_prediction")
HEADLINE = ("roc_auc", "pr_auc", "top_decile_lift", "recall_at_10pct", "brier", "ece")


def _top_share_positives(y: np.ndarray, score: np.ndarray, share: float) -> float:
    """Expected positives among the top `share` of rows by score, ties split in proportion."""
    n = len(y)
    k = max(1, math.ceil(share * n))
    scored = ~np.isnan(score)  # rows without a score take no seat's positives
    levels, group = np.unique(score[scored], return_inverse=True)
    y = y[scored]
    pos = np.bincount(group, y, len(levels))[::-1]
    count = np.bincount(group, minlength=len(levels))[::-1]
    before = np.cumsum(count) - count
    whole = before + count <= k
    positives = float(pos[whole].sum())
    cut = np.flatnonzero(~whole)
    if len(cut) and before[cut[0]] < k:
        positives += pos[cut[0]] * (k - before[cut[0]]) / count[cut[0]]
    return positives


def top_decile_lift(y: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Event rate in the top `share` of rows by score, over the overall event rate."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    base = y.mean()
    if base == 0:
        return float("nan")
    k = max(1, math.ceil(share * len(y)))
    return float(_top_share_positives(y, score, share) / k / base)


def recall_at_top(y: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Share of all events that fall in the top `share` of rows by score."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    total = y.sum()
    if total == 0:
        return float("nan")
    return float(_top_share_positives(y, score, share) / total)


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = 10,
                      strategy: str = "uniform") -> pd.DataFrame:
    """Per bin of predicted probability: rows, mean prediction and observed event rate."""
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 0, 1)
    if strategy == "uniform":
        edges = np.linspace(0, 1, bins + 1)
    else:
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
        if len(edges) < 2:
            edges = np.array([p.min(), p.max() + 1e-12])
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    rows = np.bincount(idx, minlength=nb)
    full = rows > 0
    mean_p = np.bincount(idx, p, nb)[full] / rows[full]
    observed = np.bincount(idx, y, nb)[full] / rows[full]
    return pd.DataFrame({"bin_low": edges[:-1][full].astype(float),
                         "bin_high": edges[1:][full].astype(float), "rows": rows[full],
                         "mean_predicted": mean_p, "observed": observed})


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10,
                               strategy: str = "uniform") -> float:
    curve = reliability_curve(y, p, bins, strategy)
    if curve.empty:
        return float("nan")
    w = curve["rows"] / curve["rows"].sum()
    return float((w * (curve["mean_predicted"] - curve["observed"]).abs()).sum())


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC (ties shared, rows with a NaN score left out); None with one class only. The one
    AUC of every report: over a backtest's pooled out-of-fold rows it is the number the
    champion is chosen by and registered with (`training.selection.pooled_auc`)."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    keep = ~np.isnan(score)
    y, score = y[keep], score[keep]
    if not 0 < y.sum() < len(y):
        return None
    return rank_auc(y, score)


def rank_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of `score` for the 0/1 labels `y` (both classes present), as the Mann-Whitney
    statistic on average ranks: the value `sklearn.metrics.roc_auc_score` gives."""
    ranks = rankdata(score, method="average")
    positives = y == 1
    n1 = int(positives.sum())
    n0 = len(y) - n1
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """PR AUC as average precision over the distinct thresholds (both classes present):
    the value `sklearn.metrics.average_precision_score` gives."""
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each tied group
    tps = np.cumsum(yy)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference of probability and outcome (`brier_score_loss`)."""
    return float(np.mean((y - p) ** 2))


def bootstrap_aucs(y: np.ndarray, scores: Mapping[str, np.ndarray], seed: int,
                   resamples: int, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """ROC AUC of each scorer on `resamples` bootstraps (multinomial weights), the same
    resamples for every scorer so that differences are paired; ties shared as in `roc_auc`.
    The scheme of the table mode's champion intervals (`training.table`).

    `groups` (one label per row, e.g. the account): whole groups are drawn, each row weighing
    its group's draw count. A backtest's pooled rows hold the same account at several test
    dates, and those rows are not independent draws: resampling rows would narrow the interval
    as if they were."""
    y = np.asarray(y, float)
    rng = np.random.default_rng(seed)
    if groups is None:
        n = len(y)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    else:
        code, labels = pd.factorize(np.asarray(groups))
        k = len(labels)
        weights = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples)[:, code].astype(float)
    out: dict[str, np.ndarray] = {}
    for name, s in scores.items():
        _, group = np.unique(np.asarray(s, float), return_inverse=True)
        g = int(group.max()) + 1
        aucs = np.empty(resamples)
        for b in range(resamples):
            w = weights[b]
            pos = np.bincount(group, w * y, g)
            neg = np.bincount(group, w * (1 - y), g)
            below = np.cumsum(neg) - neg
            total = pos.sum() * neg.sum()
            aucs[b] = (pos * (below + 0.5 * neg)).sum() / total if total > 0 else np.nan
        out[name] = aucs
    return out


def binary_metrics(y: np.ndarray, score: np.ndarray, probability: bool = True
                   ) -> dict[str, float | int | None]:
    """Every metric of one ranking (and, if it is a probability, its calibration)."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    keep = ~np.isnan(score)
    y, score = y[keep], score[keep]
    two_classes = 0 < y.sum() < len(y)
    out: dict[str, float | int | None] = {
        "rows": int(len(y)), "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else None,
        "roc_auc": roc_auc(y, score),
        "pr_auc": average_precision(y, score) if two_classes else None,
        "top_decile_lift": _none_if_nan(top_decile_lift(y, score)) if len(y) else None,
        "recall_at_10pct": _none_if_nan(recall_at_top(y, score)) if len(y) else None,
    }
    if probability and len(y):
        out.update({
            "brier": brier(y, np.clip(score, 0, 1)),
            "ece": expected_calibration_error(y, score),
            "ece_quantile": expected_calibration_error(y, score, strategy="quantile"),
            "mean_prediction": float(score.mean()),
        })
    else:
        out.update({k: None for k in PROBABILITY_METRICS})
    return out


def _none_if_nan(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def decile_lift_table(y: np.ndarray, score: np.ndarray, n: int = 10) -> list[float]:
    """Event rate per score decile (highest first) over the base rate, for the lift chart."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    base = y.mean()
    if base == 0 or len(y) < n:
        return []
    order = np.argsort(-score, kind="mergesort")
    return [float(chunk.mean() / base) for chunk in np.array_split(y[order], n)]


def evaluate_rows(
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray | None],
    probabilistic: Sequence[str] = ("model", "logistic", "oracle"),
) -> dict[str, dict[str, Any]]:
    """Metrics of every available scorer on the same rows."""
    return {name: binary_metrics(y, p, probability=name in probabilistic)
            for name, p in predictions.items() if p is not None}


def by_segment(
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray | None],
    segment: pd.Series | np.ndarray,
    probabilistic: Sequence[str] = ("model", "logistic", "oracle"),
    min_rows: int = 30,
) -> dict[str, dict[str, dict[str, Any]]]:
    """The same metrics within each segment (segments with too few rows are skipped)."""
    seg = pd.Series(np.asarray(segment, dtype=object)).fillna("(missing)").astype(str).to_numpy()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for s in sorted(set(seg)):
        m = seg == s
        if m.sum() < min_rows:
            continue
        out[s] = evaluate_rows(y[m], {k: (None if v is None else np.asarray(v)[m])
                                      for k, v in predictions.items()}, probabilistic)
    return out


def summarise_folds(folds: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict]:
    """Mean and standard deviation of each scorer's metrics across backtest folds."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    scorers = sorted({s for f in folds for s in f})
    for s in scorers:
        out[s] = {}
        for metric in HEADLINE:
            vals = [f[s][metric] for f in folds if s in f and f[s].get(metric) is not None]
            out[s][metric] = {"mean": float(np.mean(vals)) if vals else None,
                              "std": float(np.std(vals)) if len(vals) > 1 else None}
    return out


# --- report ---------------------------------------------------------------------------------

def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def metrics_table(metrics: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = HEADLINE
                  ) -> str:
    head = "| scorer | " + " | ".join(columns) + " |"
    sep = "|---|" + "---|" * len(columns)
    rows = [f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in columns) + " |"
            for name, m in metrics.items()]
    return "\n".join([head, sep, *rows])


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: one section per model, baselines side by side."""
    run = report.get("run", {})
    lines = ["# HealthScore training report", ""]
    for key in ("mode", "data_window", "feature_set_version", "rows", "seed", "run_id"):
        if key in run:
            lines.append(f"- **{key.replace('_', ' ')}:** {run[key]}")
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    if report.get("notes"):
        lines += ["", "## Backtest fitted to the history", ""] + [f"- {n}" for n in
                                                                  report["notes"]]
    for label, m in report.get("models", {}).items():
        lines += ["", f"## {label}", ""]
        if m.get("trained_on"):
            seen, refit = m["trained_on"], m.get("refit", {})
            lines.append(f"Registered model: refit on {seen['rows']} rows ({seen['positives']}"
                         f" positives), as-of {seen.get('first_as_of')}..{seen.get('last_as_of')}"
                         f"; {refit.get('trees', '–')} trees ({refit.get('rule', '')}); "
                         "calibrated on the folds' out-of-fold predictions. The figures below "
                         "are the backtest folds' models'.")
        split = m.get("split") or {}
        if "scheme" in split:
            lines.append(f"Evaluation: {split['scheme']}.")
        if "train" in split:
            lines.append("Windows (as-of dates): " + "; ".join(
                f"{w} {split[w]['first']}..{split[w]['last']} ({split[w]['dates']})"
                for w in ("train", "valid", "calib", "test") if w in split))
        cal = m.get("calibration", {})
        sel = m.get("selection") or {}
        leaves = f" of {sel['num_leaves']} leaves" if "num_leaves" in sel else ""
        if len(sel.get("valid_logloss", {})) > 1:
            leaves += " (early-stopping log loss " + ", ".join(
                f"{k}: {v:.4f}" for k, v in sel["valid_logloss"].items()) + ")"
        lines.append(f"Trees: {m.get('trees', '–')}{leaves}; calibration: "
                     f"{cal.get('method', '–')} ({cal.get('positives', '–')} positives in its "
                     "window).")
        champ = m.get("champion")
        if champ:
            lines += ["", f"### Candidates ({champ['basis']}, {champ['rows']} rows, "
                      f"{champ['positives']} positives; bootstrap 95% intervals)", "",
                      "| candidate | ROC AUC | 95% interval | champion's lead |",
                      "|---|---|---|---|"]
            for k, a in champ["roc_auc"].items():
                ci = a.get("ci95")
                lead = champ["lead"].get(k, {})
                lines.append(f"| {k} | {_fmt(a['value'])} | "
                             + (f"{ci[0]:.3f}..{ci[1]:.3f}" if ci else "–") + " | "
                             + ("champion" if k == champ["scorer"] else _fmt(lead.get("value")))
                             + " |")
            lines += ["", f"**Champion:** {champ['scorer']} ({champ['kind']})."]
        title = "Backtest, every fold's test rows pooled" if champ else "Held-out test"
        lines += ["", f"### {title}", "", metrics_table(m["test"])]
        gap = m.get("gap_to_oracle")
        if gap:
            lines += ["", "Gap to the oracle (oracle minus model): "
                      + ", ".join(f"{k} {_fmt(v)}" for k, v in gap.items())]
        bt = m.get("backtest")
        if bt:
            lines += ["", f"### Rolling-origin backtest ({len(bt['folds'])} folds, mean ± sd)", ""]
            cols = tuple(c for c in ("roc_auc", "pr_auc", "top_decile_lift", "ece")
                         if any(c in ms for ms in bt["summary"].values()))
            lines.append("| scorer | " + " | ".join(cols) + " |")
            lines.append("|---|" + "---|" * len(cols))
            for scorer, ms in bt["summary"].items():
                lines.append(f"| {scorer} | " + " | ".join(
                    f"{_fmt(ms[c]['mean'])} ± {_fmt(ms[c]['std'])}" for c in cols) + " |")
            if bt.get("pooled") and not champ:
                lines += ["", "Every fold's test rows pooled:", "", metrics_table(bt["pooled"])]
            if bt.get("gap_to_oracle"):
                lines += ["", "Gap to the oracle, pooled folds (oracle minus model): " + ", ".join(
                    f"{k} {_fmt(v)}" for k, v in bt["gap_to_oracle"].items())]
        seg = m.get("segments")
        if seg:
            rows_of = "pooled backtest rows" if champ else "test"
            lines += ["", f"### By segment ({rows_of}, ROC AUC / top-decile lift)", ""]
            scorers = sorted({s for v in seg.values() for s in v})
            lines.append("| segment | rows | positives | " + " | ".join(scorers) + " |")
            lines.append("|---|---|---|" + "---|" * len(scorers))
            for s, v in seg.items():
                first = next(iter(v.values()))
                lines.append(f"| {s} | {first['rows']} | {first['positives']} | " + " | ".join(
                    f"{_fmt(v[x]['roc_auc'])} / {_fmt(v[x]['top_decile_lift'], 2)}"
                    if x in v else "–" for x in scorers) + " |")
        promo = m.get("promotion")
        if promo:
            lines += ["", f"**Registry:** {promo.get('model_name', '')} version "
                      f"{promo.get('version', '–')} -> `{promo['alias']}`: {promo['reason']}"]
        leak = m.get("leakage")
        if leak:
            lines += ["", "**Leakage guard:** " + "; ".join(
                f"{x['feature']} alone has ROC AUC {x['roc_auc']:.3f}" for x in leak)]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    js = directory / "report.json"
    md = directory / "report.md"
    js.write_text(json.dumps(jsonable(report), indent=2))
    md.write_text(render_markdown(report))
    return js, md


def jsonable(obj: Any) -> Any:
    """The same structure with numpy scalars, timestamps and NaN (as null) made JSON-safe."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return _json_default(obj)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    return str(x)


# --- plots ----------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_reliability(y: np.ndarray, predictions: Mapping[str, np.ndarray | None], title: str,
                     path: Path) -> Path:
    """Reliability curve of each probabilistic scorer (equal-mass bins), with the diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    top = 0.0
    for name, p in predictions.items():
        if p is None:
            continue
        curve = reliability_curve(y, p, bins=10, strategy="quantile")
        ax.plot(curve["mean_predicted"], curve["observed"], marker="o", label=name)
        top = max(top, curve["mean_predicted"].max(), curve["observed"].max())
    lim = min(1.0, top * 1.1 + 0.01)
    ax.plot([0, lim], [0, lim], "k--", lw=1, label="perfect")
    ax.set(xlim=(0, lim), ylim=(0, lim), xlabel="mean predicted probability",
           ylabel="observed event rate", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_lift(y: np.ndarray, rankings: Mapping[str, np.ndarray | None], title: str,
              path: Path) -> Path:
    """Lift per score decile (highest-risk decile first) for every scorer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    available = {k: v for k, v in rankings.items() if v is not None}
    width = 0.8 / max(1, len(available))
    for i, (name, s) in enumerate(available.items()):
        lifts = decile_lift_table(y, s)
        if lifts:
            ax.bar(np.arange(1, len(lifts) + 1) + (i - len(available) / 2 + 0.5) * width, lifts,
                   width=width, label=name)
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set(xlabel="decile (1 = highest predicted risk)", ylabel="lift", title=title,
           xticks=range(1, 11))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_shap_summary(contributions: np.ndarray, matrix: np.ndarray, features: Sequence[str],
                      title: str, path: Path, max_display: int = 15) -> Path:
    """SHAP beeswarm summary from exact TreeSHAP contributions (log-odds), drawn by `shap`."""
    import shap

    plt = _pyplot()
    frame = pd.DataFrame(matrix, columns=list(features))
    shap.summary_plot(contributions[:, :-1], frame, show=False, max_display=max_display,
                      plot_size=(7, 6))
    fig = plt.gcf()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
