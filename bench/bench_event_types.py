"""Bench: how close churn models come to the oracle on a world with customer event types.

Generates a world declaring `features.synth.params.EXAMPLE_EVENT_TYPES` (two types raising
churn, one lowering it, two noise), builds the monthly training set through
`training.datasets.build_training_set` (the event types chosen as every path chooses them), and
backtests the 90-day churn model (three rolling-origin folds, their held-out rows pooled) with
the event-type features and without them, against the generator's oracle on the same rows (the
best forecast the data allows: the intent as the counts show it, the latent state as the
features show it, `oracle_probability` with `training.oracle.estimate_state`), and the oracle
that reads the latent state instead, for each seed.

    .venv/bin/python bench/bench_event_types.py [--accounts 1500] [--days 730] [--seeds 7 1 2]
        [--test-config] [--types-only]

`--test-config` trains as tests/training/test_train_event_types.py does (200 trees, 8 leaves
configured, no logistic baseline); `--types-only` skips the run without the event-type features.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1500)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 1, 2])
    parser.add_argument("--test-config", action="store_true")
    parser.add_argument("--types-only", action="store_true")
    args = parser.parse_args()
    table = Table(title=f"90-day churn, {args.accounts} accounts x {args.days} days: pooled "
                        "backtest ROC AUC")
    for col in ("seed", "features", "n features", "model", "oracle", "gap to oracle",
                "oracle, latent state", "logistic", "rows", "seconds"):
        table.add_column(col, justify="right")
    for seed in args.seeds:
        _one_seed(args.accounts, args.days, seed, table, args.test_config, args.types_only)
    Console(width=160).print(table)


def _one_seed(accounts: int, days: int, seed: int, table: Table, test_config: bool,
              types_only: bool) -> None:

    import duckdb

    from features.registry import EVENT_TYPE_PREFIX
    from features.settings import FeatureConfig
    from features.synth.generate import generate_world
    from features.synth.params import EXAMPLE_EVENT_TYPES
    from training.baselines import oracle_probabilities
    from training.datasets import TrainingSet, as_of_dates, build_training_set
    from training.evaluate import roc_auc
    from training.pipeline import train_and_backtest
    from training.settings import TrainingConfig

    clock = time.perf_counter()
    world = generate_world(accounts, date(2024, 1, 1), days, seed,
                           event_types=EXAMPLE_EVENT_TYPES)
    con = duckdb.connect(":memory:")
    for name, frame in world.tables.items():
        con.register("_t", frame)
        con.execute(f'create table "{name}" as select * from _t')
        con.unregister("_t")
    cfg = TrainingConfig(horizons=(90,), targets=("churn",),
                         **({"max_trees": 200, "num_leaves": (8,)} if test_config else {}))
    dates = as_of_dates(con, None, None, cfg.as_of_frequency, cfg.horizons)
    ts = build_training_set(con, dates, FeatureConfig(), cfg.horizons)
    plain = TrainingSet(ts.frame, [f for f in ts.features if not f.startswith(EVENT_TYPE_PREFIX)],
                        ts.labels, ts.connected, ts.data_end)
    runs = [("with event types", ts), *([] if types_only else [("without event types", plain)])]
    for label, s in runs:
        r = train_and_backtest(s, cfg, truth=world.truth, logistic=not test_config,
                               refit=False)["churn_90d"]
        auc = {k: v["roc_auc"] for k, v in r.pooled.items()}
        latent = roc_auc(r.y_test, oracle_probabilities(world.truth, r.test_frame, 90, "churn"))
        table.add_row(str(seed), label, str(len(s.features)), f"{auc['model']:.3f}",
                      f"{auc['oracle']:.3f}", f"{auc['oracle'] - auc['model']:.3f}",
                      f"{latent:.3f}",
                      f"{auc['logistic']:.3f}" if "logistic" in auc else "-", str(len(ts.frame)),
                      f"{time.perf_counter() - clock:.0f}")


if __name__ == "__main__":
    main()
