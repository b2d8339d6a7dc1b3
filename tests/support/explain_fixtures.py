"""A small trained world for the explanation tests: generated, loaded into a warehouse, six
LightGBM models fitted through the training library and saved as bundles, built once per session.

`trained_world()` returns an `ExplainWorld`: the warehouse path, the generator's shocks, the
loaded bundles and the rules; it is cached per process, so every test module sharing the
session's base temporary directory builds it once. `population` adds every account
active at AS_OF with its features and the peer table. Test modules wrap `world_for` and
`population_of` in their own fixtures. 800 accounts x 600 days with monthly
as-of dates: about 40 s on a shared 2-core machine, and enough data for the models to learn
that usage matters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.settings import FeatureConfig
from healthscore.settings import load_settings
from scoring.bundle import Bundle, load_bundles, save_bundle
from scoring.health import Rules, load_rules
from training.settings import TrainingConfig

N_ACCOUNTS, DAYS, SEED = 800, 600, 11
START = date(2024, 1, 1)
AS_OF = pd.Timestamp("2025-07-15")
"""Explanations are asked as of this date (after the last training as-of date)."""
HORIZONS = (30, 60, 90)


@dataclass(eq=False)
class ExplainWorld:
    warehouse: Path
    models_dir: Path
    shocks: pd.DataFrame
    bundles: dict[str, Bundle]
    rules: Rules
    feature_cfg: FeatureConfig
    training: pd.DataFrame
    """The training frame (features and labels) the models were fitted on."""
    features: list[str]

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.warehouse), read_only=True)


def make_warehouse(out: Path, n_accounts: int = N_ACCOUNTS, days: int = DAYS,
                   seed: int = SEED) -> tuple[Path, pd.DataFrame]:
    """Generate a world and load it into a DuckDB warehouse (through ingestion when it exists);
    returns the warehouse and the generator's shocks."""
    from features.synth.generate import generate_world, write_world

    world = generate_world(n_accounts, START, days, seed)
    warehouse = out / "warehouse.duckdb"
    from features.contract.ingest import ingest_folder

    write_world(world, out / "raw")
    ingest_folder(out / "raw", warehouse, load_settings().ingest)
    return warehouse, world.shocks


def training_config() -> TrainingConfig:
    # Small data: smaller leaves so the trees still split on a few thousand rows.
    return TrainingConfig(min_child_samples=20, max_trees=200, num_threads=1, seed=SEED)


def train_bundles(con: duckdb.DuckDBPyConnection, feature_cfg: FeatureConfig, models_dir: Path
                  ) -> tuple[dict[str, Bundle], pd.DataFrame, list[str]]:
    """Monthly training set, then one model per (target, horizon): the labelled as-of dates
    split in time into training, early-stopping (2 dates) and calibration (2 dates) windows."""
    from features.registry import FEATURE_SET_VERSION
    from training.datasets import as_of_dates, build_training_set
    from training.model import fit_model

    cfg = training_config()
    dates = as_of_dates(con, None, AS_OF - pd.Timedelta(days=1), "MS", HORIZONS)
    ts = build_training_set(con, dates, feature_cfg, HORIZONS)
    for target in ("churn", "expansion"):
        for h in HORIZONS:
            label = f"{target}_{h}d"
            labelled = ts.frame[ts.frame[label].notna()]
            seen = np.sort(labelled["as_of"].unique())
            train, valid, calib = (labelled[labelled["as_of"].isin(part)] for part in
                                   (seen[:-4], seen[-4:-2], seen[-2:]))
            bundle = fit_model(train, valid, calib, ts.features, label, cfg,
                               FEATURE_SET_VERSION, metadata={"target": target, "horizon": h})
            save_bundle(bundle, models_dir / label)
    return load_bundles(models_dir), ts.frame, list(ts.features)


@functools.cache
def trained_world(root: str) -> ExplainWorld:
    """Build (once per process) the trained world under `root`."""
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    warehouse, shocks = make_warehouse(out)
    # The behaviour these tests check (a usage cut shows as usage factors) is the product's own
    # directed usage features'; event types are neutral and free (a model may learn either sign
    # for the product's own catalogue events), and tests/explain/test_explain_factors.py and
    # tests/training/test_train_event_types.py cover their explanations.
    feature_cfg = load_settings().features.model_copy(update={"top_event_types": 0})
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        bundles, frame, features = train_bundles(con, feature_cfg, out / "models")
    finally:
        con.close()
    return ExplainWorld(warehouse=warehouse, models_dir=out / "models", shocks=shocks,
                        bundles=bundles, rules=load_rules(), feature_cfg=feature_cfg,
                        training=frame, features=features)


@dataclass
class Population:
    """Every account active at AS_OF: its features, the connected tables and the peer table."""

    con: duckdb.DuckDBPyConnection
    features: pd.DataFrame
    connected: frozenset[str]
    peers: object

    def pick(self, segment: str = "enterprise") -> str:
        """The first account of a segment with data from every source (ids are not fixed: the
        generator decides who is active at AS_OF)."""
        f = self.features
        full = f[(f["segment"].astype(str) == segment) & f["nps_last"].notna()
                 & f["features_used_30d"].notna() & f["days_since_last_touch"].notna()
                 & f["ticket_sentiment_90d"].notna() & f["days_to_renewal"].notna()]
        assert len(full), f"no {segment} account with data from every source"
        return str(full["account_id"].iloc[0])

    def row(self, account_id: str) -> pd.DataFrame:
        got = self.features[self.features["account_id"] == account_id]
        assert len(got) == 1, f"{account_id} is not active at {AS_OF.date()}"
        return got.reset_index(drop=True)


def world_for(tmp_path_factory: pytest.TempPathFactory) -> ExplainWorld:
    """The session's trained world (built by the first test module that asks)."""
    return trained_world(str(tmp_path_factory.getbasetemp() / "explain_world"))


@functools.cache
def population_of(world: ExplainWorld) -> Population:
    """Every account active at AS_OF (built once per process; the connection stays open,
    read-only, for the session)."""
    from scoring.model_set import model_set
    from scoring.pipeline import Scorer, score_accounts
    from serving.peers import peers_of

    con = world.connect()
    scorer = Scorer(rules=world.rules, features=world.feature_cfg,
                    models=model_set(world.bundles))
    frame = score_accounts(con, None, AS_OF, scorer, trend=False)
    return Population(con, frame.features.drop(columns="churned_at", errors="ignore"),
                      frame.connected, peers_of(frame))
