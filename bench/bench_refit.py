"""Bench: the registered model refit on every labelled month vs the latest backtest fold's model.

A generated world is cut at a month: training sees only the as-of dates before it, with every
label whose window closes after the cut censored (what a job run on that day would know), and
the next months' snapshots, labelled from the full world, judge the models. Per churn horizon:

- `fold 0`: the latest backtest fold's model (fitted on the earliest months only, calibrated on
  its own calibration window): what was registered before the refit;
- `refit`: the registered model (every labelled row, the folds' median best round, calibrated
  on the folds' out-of-fold predictions);
- `refit, trees scaled`: the same with the tree count scaled by refit rows / fold-0 training
  rows (the alternative the refit's tree rule declines).

    .venv/bin/python bench/bench_refit.py [--small] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="400 accounts instead of 1,000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--future-months", type=int, default=6)
    args = parser.parse_args()

    import duckdb
    from sklearn.metrics import log_loss, roc_auc_score

    from features.contract.warehouse import load_frames
    from features.synth.generate import generate_world
    from healthscore.settings import load_settings
    from training.datasets import TrainingSet, as_of_dates, build_training_set
    from training.model import refit_model
    from training.pipeline import plan_backtests, train_and_backtest

    settings = load_settings()
    cfg = settings.training
    world = generate_world(400 if args.small else 1000, date(2024, 1, 1), 730, args.seed)
    con = duckdb.connect(":memory:")
    load_frames(con, world.tables)
    full = build_training_set(con, as_of_dates(con, None, None, "MS", cfg.horizons),
                              settings.features, cfg.horizons)
    dates = full.dates
    cut = dates[-args.future_months]
    past = full.frame[full.frame["as_of"] < cut].copy()
    for h in cfg.horizons:
        for t in cfg.targets:
            past.loc[past["as_of"] + pd.Timedelta(days=h) > cut, f"{t}_{h}d"] = np.nan
    ts = TrainingSet(past.reset_index(drop=True), full.features, full.labels, full.connected,
                     cut)
    future = full.frame[full.frame["as_of"] >= cut]
    plans = plan_backtests(ts, cfg, ["churn"])
    refit = train_and_backtest(ts, cfg, targets=["churn"], logistic=False, plans=plans)
    fold0 = train_and_backtest(ts, cfg, targets=["churn"], logistic=False, plans=plans,
                               refit=False)

    table = Table(title=f"bench_refit: {len(full.frame['account_id'].unique()):,} accounts, "
                        f"seed {args.seed}; trained before {cut.date()}, judged on "
                        f"{args.future_months} later monthly as-of dates")
    for col in ("model", "variant", "trained on", "trees", "calibration", "rows", "positives",
                "ROC AUC", "log loss", "Brier", "mean p / rate"):
        table.add_column(col, justify="left" if col in ("model", "variant", "trained on",
                                                        "calibration") else "right")
    for label, r in refit.items():
        rows = future[future[label].notna()]
        y = rows[label].to_numpy(float)
        seen = ts.frame[ts.frame[label].notna()]
        f0 = fold0[label].bundle
        ratio = len(seen) / f0.metadata["rows"]["train"]
        choice = dict(r.bundle.metadata["selection"]["refit"])
        choice["trees"] = int(min(cfg.max_trees, max(1, round(choice["trees"] * ratio))))
        scaled = refit_model(seen, ts.features, label, cfg, f0.feature_set_version, choice,
                             r.bundle.calibrator)
        split = fold0[label].split["train"]
        for variant, bundle, span in (
                ("fold 0", f0, f"{split['first']} .. {split['last']}"),
                ("refit", r.bundle, f"{seen['as_of'].min().date()} .. "
                                    f"{seen['as_of'].max().date()}"),
                ("refit, trees scaled", scaled, "same")):
            p = bundle.predict_proba(rows)
            table.add_row(label, variant, span, str(bundle.n_trees), bundle.calibrator.method,
                          f"{len(y):,}", f"{int(y.sum()):,}", f"{roc_auc_score(y, p):.3f}",
                          f"{log_loss(y, np.clip(p, 1e-6, 1 - 1e-6)):.4f}",
                          f"{np.mean((p - y) ** 2):.4f}", f"{p.mean():.3f} / {y.mean():.3f}")
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
