"""Helpers of the training tests: hand-made training sets (a seeded logistic process over monthly
snapshots, independent of the warehouse, generator and feature code), and a way for pytest-xdist
workers to share one expensive module fixture instead of each building its own."""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from healthscore.settings import load_settings
from training.datasets import TrainingSet
from training.labels import label_names
from training.settings import TrainingConfig


def suite_training(**update: Any) -> TrainingConfig:
    """The training settings the suite runs with (tests/settings.yaml over the defaults: a small
    LightGBM search), then `update`: what a test passes to `train_and_backtest` directly."""
    return load_settings(training=update).training


def fit_windows(n_accounts: int = 300, n_dates: int = 14
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`snapshot_frame`'s labelled 30-day churn rows in four time windows: training (7 dates),
    early stopping (2), calibration (2) and test (the rest), what one model's fit takes."""
    f = snapshot_frame(n_accounts=n_accounts, n_dates=n_dates).frame
    f = f[f["churn_30d"].notna()]
    dates = sorted(f["as_of"].unique())
    return tuple(f[f["as_of"].isin(ds)]  # type: ignore[return-value]
                 for ds in (dates[:7], dates[7:9], dates[9:11], dates[11:]))


def snapshot_frame(n_accounts: int = 400, n_dates: int = 24, seed: int = 0,
                   horizons: tuple[int, ...] = (30, 60, 90), signal: float = 1.0,
                   start: str = "2022-01-01") -> TrainingSet:
    """Accounts observed monthly; churn and expansion follow a logistic model of two features
    (plus a nonlinear bump), nested across horizons; labels past the data end are NaN."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n_dates, freq="MS")
    end = dates[-1] + pd.Timedelta(days=31)
    ids = np.array([f"acc-{i:04d}" for i in range(n_accounts)])
    seg = rng.choice(["enterprise", "mid-market", "smb"], n_accounts, p=[0.2, 0.3, 0.5])
    tier = rng.choice(["gold", "silver", "bronze"], n_accounts)
    base = rng.normal(0, 1, n_accounts)
    rows = []
    for d in dates:
        health = base + rng.normal(0, 0.7, n_accounts)
        logins = np.maximum(0, 20 + 8 * health + rng.normal(0, 4, n_accounts))
        tickets = rng.poisson(np.exp(0.5 - 0.6 * health))
        noise = rng.normal(0, 1, n_accounts)
        nps = np.where(rng.random(n_accounts) < 0.3, np.nan,
                       np.clip(np.round(7 + 1.5 * health + rng.normal(0, 1.5, n_accounts)), 0, 10))
        logit = -3.2 - signal * (1.2 * health - 0.35 * tickets
                                 + 0.8 * (np.abs(noise) > 1.6)) + (seg == "smb") * 0.6
        p_month = 1 / (1 + np.exp(-logit))
        # Months until the event: geometric; nested horizons by construction.
        months_to_churn = rng.geometric(np.clip(p_month, 1e-4, 1))
        p_exp = 1 / (1 + np.exp(-(-3.5 + signal * 0.9 * health)))
        months_to_exp = rng.geometric(np.clip(p_exp, 1e-4, 1))
        frame = pd.DataFrame({
            "account_id": ids, "as_of": d,
            "logins_30d": logins, "tickets_90d": tickets.astype(float), "nps_last": nps,
            "noise_feature": noise,
            "segment": pd.Categorical(seg, categories=["enterprise", "mid-market", "smb"]),
            "attr_tier": pd.Categorical(tier),
        })
        for h in horizons:
            observed = d + pd.Timedelta(days=h) <= end
            frame[f"churn_{h}d"] = np.where(observed, (months_to_churn <= h // 30).astype(float),
                                            np.nan)
        for h in horizons:
            observed = d + pd.Timedelta(days=h) <= end
            frame[f"expansion_{h}d"] = np.where(observed,
                                                (months_to_exp <= h // 30).astype(float), np.nan)
        rows.append(frame)
    out = pd.concat(rows, ignore_index=True)
    feats = ["logins_30d", "tickets_90d", "nps_last", "noise_feature", "segment", "attr_tier"]
    return TrainingSet(out, feats, label_names(horizons), frozenset({"accounts"}), end)


def shared_once(tmp_path_factory: Any, name: str, build: Callable[[Path], Any]) -> Any:
    """`build(folder)` once per test session even across xdist workers; others load its pickle.

    Under xdist the tests of one module may be spread over workers, and each would run a
    module fixture again (a generated world and two training jobs: a minute of CPU). The first
    worker builds under a lock in the session's shared temp root; the others wait and unpickle.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    root.mkdir(exist_ok=True)
    done = root / "result.pickle"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                (root / "work").mkdir(exist_ok=True)
                result = build(root / "work")
                done.write_bytes(pickle.dumps(result))
                return result
            return pickle.loads(done.read_bytes())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
