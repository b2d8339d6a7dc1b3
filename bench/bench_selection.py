"""Bench: does the searched LightGBM beat logistic regression and the rules score on the backtest?

The product's case: a ten-month world billed monthly, with usage events only (no tickets,
surveys or touchpoints) and customer event types (`features.synth.params.EXAMPLE_EVENT_TYPES`),
trained as `healthscore train` trains with no config file (default `TrainingConfig`, the
warehouse path: contract ingest, `load_training_set`, the rules score, `plan_backtests`,
`train_and_backtest`). Prints, per model, each candidate's pooled out-of-fold ROC AUC with its
bootstrap 95% interval (`training.selection.choose_champion`), the oracle's on the same rows,
and which candidate the backtest picks. Nothing here looks at anything but the backtest.

    .venv/bin/python bench/bench_selection.py [--accounts 2000] [--days 305] [--seeds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _world(accounts: int, days: int, seed: int, folder: Path) -> object:
    """The generated world billed monthly, events only, written as contract CSVs."""
    import features.synth.params as P
    from features.synth.generate import generate_world, write_world

    saved = P.SEGMENT_PROFILES
    P.SEGMENT_PROFILES = tuple(dataclasses.replace(p, terms=(P.MONTH,), term_probs=(1.0,))
                               for p in saved)
    try:
        world = generate_world(accounts, date(2024, 1, 1), days, seed=seed,
                               event_types=P.EXAMPLE_EVENT_TYPES)
    finally:
        P.SEGMENT_PROFILES = saved
    for table in ("tickets", "surveys", "touchpoints"):
        del world.tables[table]
    write_world(world, folder)
    return world


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--days", type=int, default=305)
    parser.add_argument("--seeds", type=str, default="5",
                        help="comma-separated generator seeds, e.g. 1,2,3")
    parser.add_argument("--targets", type=str, default="churn")
    args = parser.parse_args()

    from features.contract.ingest import ingest_folder
    from features.registry import EVENT_TYPE_PREFIX
    from healthscore.settings import load_settings
    from training import baselines
    from training.model import monotone_constraints
    from training.pipeline import plan_backtests, train_and_backtest
    from training.selection import NAMES, shown_auc

    console = Console(width=200)
    table = Table(title=f"{args.accounts} accounts x {args.days} days, monthly billing, events "
                        "only, customer event types: pooled out-of-fold ROC AUC [95% CI]")
    for col in ("seed", "model", "folds", "rows", "pos", "LightGBM", "logistic", "rules",
                "oracle", "champion", "lead [95% CI]", "s"):
        table.add_column(col, justify="right")
    for seed in (int(s) for s in args.seeds.split(",")):
        clock = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            world = _world(args.accounts, args.days, seed, root / "raw")
            settings = load_settings(paths={"warehouse": str(root / "wh.duckdb")},
                                     training={"targets": tuple(args.targets.split(","))})
            ingest_folder(root / "raw", settings.paths.warehouse, settings.ingest)
            from training.pipeline import load_training_set

            ts = load_training_set(settings)
        cfg = settings.training
        rules = baselines.rules_scores(ts.frame[["account_id", "as_of", *ts.features]],
                                       ts.connected)
        typed = [f for f in ts.features if f.startswith(EVENT_TYPE_PREFIX)]
        mono = monotone_constraints(ts.features, "churn_30d", cfg) or [0] * len(ts.features)
        bound = [f for f, m in zip(ts.features, mono, strict=True) if m and f in typed]
        plans = plan_backtests(ts, cfg, list(cfg.targets))
        results = train_and_backtest(ts, cfg, rules=rules, truth=world.truth, plans=plans,
                                     targets=list(plans))
        spent = time.perf_counter() - clock
        for label, r in results.items():
            c = r.selection
            assert c is not None
            oracle = r.test.get("oracle", {}).get("roc_auc")
            table.add_row(str(seed), label, str(len(r.folds)), f"{c['rows']:,}",
                          f"{c['positives']:,}", shown_auc(c, "model"), shown_auc(c, "logistic"),
                          shown_auc(c, "rules"), "–" if oracle is None else f"{oracle:.3f}",
                          NAMES[c["scorer"]], _lead(c), f"{spent:.0f}")
        console.print(f"seed {seed}: {len(ts.frame):,} rows, {len(ts.features)} features "
                      f"({len(typed)} event-type, monotone-bound among them: {bound or 'none'})")
    console.print(table)


def _lead(choice: dict) -> str:
    """The champion's lead over the runner-up, with its paired bootstrap interval."""
    leads = choice.get("lead") or {}
    if not leads:
        return "–"
    k = min(leads, key=lambda k: leads[k]["value"] if leads[k]["value"] is not None else 1.0)
    value, ci = leads[k]["value"], leads[k].get("ci95")
    if value is None:
        return "–"
    return f"{value:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "") + f" vs {k}"


if __name__ == "__main__":
    main()
