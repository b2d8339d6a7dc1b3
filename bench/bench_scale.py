"""Bench: how the product's costs grow with size, and where one machine stops being enough.

Four measurements, each at three sizes or more, each in a child process of its own so its peak
memory (RSS of the child and anything it starts) is its own:

- feature build: `features.build.build_features` (DuckDB) on warehouses of 1 M, 10 M and
  100 M usage events, for every active account at the warehouse's today (the account-level
  snapshot the daily job builds) and, up to 10 M events, at the 12-date monthly training grid;
  beside it the usage features computed by two pandas baselines (`bench/pandas_baseline.py`:
  plain groupby, and a careful pandas + numpy version), which must equal the product's values.
  Throughput is usage events in the warehouse per second. Target: 100 M events in under 2
  minutes, and at least 10x the plain pandas groupby baseline at 10 M.
- training: the six models (churn and expansion x 30/60/90 days) through the product's path
  with default settings except LightGBM's one thread (`training.pipeline.train_and_backtest`:
  per model and backtest fold the LightGBM search by successive halving (`training.search`,
  `search_trials` candidates early-stopped on the validation window, bounded by
  `search_seconds` of wall time), the fit of its winner early-stopped over the leaf
  candidates, calibration, test metrics, the champion's bootstrap intervals, segment metrics
  and the leakage guard; then the refit on every labelled row. Not the logistic candidate,
  `logistic=False`; no rules ranking is passed, so there is no rules candidate), against a
  bare `lightgbm.train` of every booster it trained (the search's included), on the same
  matrices with the same parameters and the rounds it ran, binned once per `lightgbm.Dataset`
  the product built, with no validation set. Target: at most 1.3x bare in CPU seconds (the
  machine is shared: wall time is load).
- batch scoring, the rules score and the six probabilities: the stage of
  `scoring.pipeline.score_accounts` after its feature build (`score_built`), on the features
  of a generated world resampled to 100 k and 1 M accounts (current and trend-date rows, as the
  daily job has them). Target: 1 M accounts in under 90 s. Factors are not included.
- end to end: `score_accounts` for the whole portfolio of each warehouse (features included).

The warehouses are one generated world (500 accounts x 730 days, about 1 M usage events) written
once and repeated with shifted account ids in DuckDB SQL (copy k of account A is `rKKKK-A`),
each table in (account_id, time) order as ingestion stores it. They are kept in
bench/out/scale/ (gitignored) and deleted after the run unless `--keep`.

    .venv/bin/python bench/bench_scale.py                      # 1M,10M,100M events; full sizes
    .venv/bin/python bench/bench_scale.py --sizes 1M,10M       # a quicker run
    .venv/bin/python bench/bench_scale.py --small              # 1M,3M events, small sizes
    .venv/bin/python bench/bench_scale.py --only features,score
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "out" / "scale"
START = date(2024, 1, 1)
DAYS = 730
SEED = 7
BASE_ACCOUNTS = 500
DUCKDB_THREADS = 2
TARGETS = {"features_100m_s": 120.0, "pandas_ratio_10m": 10.0, "score_1m_s": 90.0,
           "train_overhead": 1.3}
TIME_COLUMNS = {"accounts": "created_at", "subscriptions": "start_date", "usage_events": "ts",
                "tickets": "created_at", "surveys": "ts", "touchpoints": "ts",
                "invoices": "issued_at", "churn_events": "churned_at",
                "expansion_events": "ts"}
BASELINES = ("pandas groupby baseline", "pandas + numpy baseline")
"""The two baselines of `bench/pandas_baseline.py`: plain groupby, and the careful one."""
ID_COLUMNS = ("account_id", "user_id", "subscription_id", "ticket_id", "invoice_id")


# --- measuring --------------------------------------------------------------------------------
def peak_mb() -> float:
    """Peak RSS of this process and of its waited-for children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def size_label(n: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if abs(v - round(v)) < 0.05 else f"{v:.1f}{unit}"
    return str(int(n))


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * mult)


def run_child(task: str, **kw: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last line is its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({"task": task,
                                                                              **kw})]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{task} {kw} failed (exit {proc.returncode})")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# --- warehouses -------------------------------------------------------------------------------
def base_path() -> Path:
    return OUT / "base.duckdb"


def warehouse_path(copies: int) -> Path:
    return OUT / f"warehouse_{copies}x.duckdb"


def child_base() -> dict[str, Any]:
    """Generate the world once and store it as ingestion does (each table ordered by account
    and time)."""
    import duckdb

    from features.synth.generate import generate_world

    t = time.perf_counter()
    world = generate_world(BASE_ACCOUNTS, START, DAYS, SEED)
    path = base_path()
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        for name, frame in world.tables.items():
            con.register("_incoming", frame)
            con.execute(f'create table "{name}" as select * from _incoming '
                        f'order by account_id, "{TIME_COLUMNS[name]}"')
            con.unregister("_incoming")
    return {"seconds": time.perf_counter() - t,
            "usage_events": len(world.tables["usage_events"])}


def child_replicate(copies: int) -> dict[str, Any]:
    """`copies` copies of the base world, account ids prefixed by the copy number, appended in
    copy order so every table stays in (account_id, time) order."""
    import duckdb

    path = warehouse_path(copies)
    path.unlink(missing_ok=True)
    t = time.perf_counter()
    with duckdb.connect(str(path)) as con:
        con.execute(f"set threads = {DUCKDB_THREADS}")
        con.execute(f"attach '{base_path()}' as base (read_only)")
        tables = [r[0] for r in con.execute(
            "select table_name from duckdb_tables() where database_name = 'base'").fetchall()]
        for name in tables:
            cols = [r[0] for r in con.execute(
                "select column_name from duckdb_columns() where database_name = 'base' "
                "and table_name = ? order by column_index", [name]).fetchall()]
            con.execute(f'create table "{name}" as select * from base."{name}" limit 0')
            ids = [c for c in cols if c in ID_COLUMNS]
            replace = ", ".join(f"$prefix || \"{c}\" as \"{c}\"" for c in ids)
            sql = (f'insert into "{name}" select * replace ({replace}) from base."{name}" '
                   f'order by account_id, "{TIME_COLUMNS[name]}"')
            for k in range(copies):
                con.execute(sql.replace("$prefix", f"'r{k:04d}-'"))
        usage = con.execute("select count(*) from usage_events").fetchone()[0]
        accounts = con.execute("select count(*) from accounts").fetchone()[0]
        con.execute("checkpoint")
    return {"seconds": time.perf_counter() - t, "usage_events": usage, "accounts": accounts,
            "mb": path.stat().st_size / 2**20}


def open_warehouse(copies: int):
    from features.contract.warehouse import connect

    con = connect(warehouse_path(copies), read_only=True)
    con.execute(f"set threads = {DUCKDB_THREADS}")
    return con


def entities(con, grid: bool):
    import pandas as pd

    from features.contract.warehouse import today
    from features.entities import build_entities

    end = pd.Timestamp(today(con))
    dates = pd.date_range(end=end - pd.Timedelta(days=1), periods=12, freq="MS") if grid \
        else [end]
    return build_entities(con, list(dates))


def window_events(con, ents) -> int:
    """Usage rows inside the entities' windows (90 days before some as-of date)."""
    import pandas as pd

    rows = 0
    for as_of in sorted(ents["as_of"].unique()):
        as_of = pd.Timestamp(as_of)
        rows += con.execute("select count(*) from usage_events where ts >= ? and ts < ?",
                            [as_of - pd.Timedelta(days=90), as_of]).fetchone()[0]
    return rows


# --- children ---------------------------------------------------------------------------------
def child_features(copies: int, grid: bool) -> dict[str, Any]:
    from features.build import build_features
    from healthscore.settings import load_settings

    con = open_warehouse(copies)
    ents = entities(con, grid)
    cfg = load_settings().features
    base_mb = peak_mb()
    t, c = time.perf_counter(), cpu_s()
    frame = build_features(con, ents, cfg)
    wall, cpu = time.perf_counter() - t, cpu_s() - c
    usage = con.execute("select count(*) from usage_events").fetchone()[0]
    return {"seconds": wall, "cpu": cpu, "entities": len(frame), "usage_events": usage,
            "window_events": window_events(con, ents), "dates": int(ents["as_of"].nunique()),
            "mb": peak_mb(), "mb_before": base_mb, "load": load()}


def child_pandas(copies: int, grid: bool, check: bool, plain: bool = False) -> dict[str, Any]:
    """One pandas baseline: `plain` groupby on the rows as stored, or the careful numpy one."""
    import pandas_baseline as pb

    from features.event_types import event_types
    from healthscore.settings import load_settings

    con = open_warehouse(copies)
    ents = entities(con, grid)
    cfg = load_settings().features
    types = event_types(con, cfg)
    t, c = time.perf_counter(), cpu_s()
    if plain:
        usage = pb.load_rows(con, ents)
        loaded = time.perf_counter() - t
        frame = pb.plain_usage_features(usage, ents, types)
    else:
        usage, ids = pb.load_usage(con, ents)
        loaded = time.perf_counter() - t
        frame = pb.usage_features(usage, ids, ents, types)
    wall, cpu = time.perf_counter() - t, cpu_s() - c
    out = {"seconds": wall, "cpu": cpu, "load_seconds": loaded, "rows_loaded": len(usage),
           "entities": len(frame), "mb": peak_mb(), "load": load(), "checked": False}
    if check:
        from features.build import build_features

        del usage
        product = build_features(con, ents, cfg)
        bad = pb.compare(product, frame)
        if bad:
            raise SystemExit(f"pandas baseline disagrees with build_features on {bad}")
        out["checked"] = True
        out["columns"] = len(frame.columns)
    return out


def training_set_path() -> Path:
    return OUT / "training_set.pkl"


def child_training_set() -> dict[str, Any]:
    """The monthly training set of the base world, through the product's own builder."""
    import pickle

    import duckdb

    from healthscore.settings import load_settings
    from training.datasets import as_of_dates, build_training_set

    settings = load_settings()
    t = time.perf_counter()
    con = duckdb.connect(str(base_path()), read_only=True)
    horizons = settings.training.horizons
    dates = as_of_dates(con, None, None, "MS", horizons)
    ts = build_training_set(con, dates, settings.features, horizons)
    training_set_path().write_bytes(pickle.dumps(ts))
    return {"seconds": time.perf_counter() - t, "rows": len(ts.frame),
            "features": len(ts.features)}


def child_train(rows: int, save_models: bool) -> dict[str, Any]:
    """The product's training path on `rows` snapshots, recording every `lightgbm.train` it
    makes (matrix, labels, parameters, rounds run) for the bare replay."""
    import pickle

    import lightgbm as lgb
    import numpy as np

    from healthscore.settings import load_settings
    from training import model as training_model
    from training.datasets import TrainingSet, resample_snapshots
    from training.pipeline import train_and_backtest

    base = pickle.loads(training_set_path().read_bytes())
    frame = resample_snapshots(base.frame, rows, seed=0)
    ts = TrainingSet(frame, base.features, base.labels, base.connected, base.data_end)
    cfg = load_settings(training={"num_threads": 1}).training
    calls: list[dict[str, Any]] = []
    inside = [0.0]
    real_train = lgb.train

    def recording_train(params, train_set, num_boost_round=100, **kw):
        # Read before training: a Dataset frees its raw data once constructed.
        call = {"params": dict(params), "data": train_set.data, "label": train_set.label,
                "categorical": train_set.categorical_feature, "names": train_set.feature_name,
                "dataset": id(train_set), "dataset_params": dict(train_set.params or {})}
        # The rounds run, early stopping's patience included: a booster that lightgbm.train
        # re-loads from text (keep_training_booster=False) reports only its best iteration.
        ran = [0]

        def count(env) -> None:
            ran[0] = env.iteration - env.begin_iteration + 1

        kw["callbacks"] = [*(kw.get("callbacks") or []), count]
        t0 = time.perf_counter()
        booster = real_train(params, train_set, num_boost_round=num_boost_round, **kw)
        inside[0] += time.perf_counter() - t0
        calls.append({**call, "rounds": ran[0]})
        return booster

    training_model.lgb.train = recording_train  # the module's `lgb` is lightgbm itself
    try:
        t, c = time.perf_counter(), cpu_s()
        results = train_and_backtest(ts, cfg, logistic=False)
        wall, cpu = time.perf_counter() - t, cpu_s() - c
    finally:
        training_model.lgb.train = real_train
    mb = peak_mb()
    folder = OUT / f"train_calls_{rows}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    arrays: dict[int, str] = {}
    manifest = []
    datasets: dict[int, str] = {}
    for i, call in enumerate(calls):
        key = id(call["data"])
        if key not in arrays:
            arrays[key] = f"x{len(arrays)}.npy"
            np.save(folder / arrays[key], np.asarray(call["data"], dtype=float))
        np.save(folder / f"y{i}.npy", np.asarray(call["label"], dtype=float))
        dataset = datasets.setdefault(call["dataset"], f"d{len(datasets)}")
        manifest.append({"x": arrays[key], "y": f"y{i}.npy", "params": call["params"],
                         "rounds": call["rounds"], "categorical": list(call["categorical"]),
                         "names": list(call["names"]), "dataset": dataset,
                         "dataset_params": call["dataset_params"]})
    (folder / "calls.json").write_text(json.dumps(manifest))
    if save_models:
        from scoring.bundle import save_bundle

        models = OUT / "models"
        shutil.rmtree(models, ignore_errors=True)
        for label, r in results.items():
            save_bundle(r.bundle, models / label)
    return {"seconds": wall, "cpu": cpu, "lgb_seconds": inside[0], "calls": len(calls),
            "rounds": sum(c["rounds"] for c in calls), "rows": rows,
            "features": len(ts.features), "mb": mb, "load": load()}


def child_bare(rows: int) -> dict[str, Any]:
    """Every booster of the product's run, trained again with nothing but `lightgbm.train` on
    the same matrix, parameters and rounds (no validation set, no early stopping). One
    `lightgbm.Dataset` per dataset the product built, with its parameters: the product's
    search bins its training rows once for all its candidates, and so does the replay."""
    import lightgbm as lgb
    import numpy as np

    folder = OUT / f"train_calls_{rows}"
    manifest = json.loads((folder / "calls.json").read_text())
    seconds = 0.0
    built: dict[str, Any] = {}
    c = cpu_s()
    for call in manifest:
        x = np.load(folder / call["x"])
        y = np.load(folder / call["y"])
        t = time.perf_counter()
        data = built.get(call["dataset"])
        if data is None:
            data = built[call["dataset"]] = lgb.Dataset(
                x, label=y, feature_name=call["names"], categorical_feature=call["categorical"],
                params=call["dataset_params"] or None, free_raw_data=False)
        lgb.train(call["params"], data, num_boost_round=call["rounds"])
        seconds += time.perf_counter() - t
    shutil.rmtree(folder, ignore_errors=True)
    return {"seconds": seconds, "cpu": cpu_s() - c, "mb": peak_mb(), "load": load()}


def scoring_frames_path() -> Path:
    return OUT / "scoring_features.pkl"


def child_scoring_features() -> dict[str, Any]:
    """The base world's accounts and their features at today and at today minus the trend
    days, as `score_accounts` builds them (the models' event types)."""
    import pickle

    import duckdb
    import pandas as pd

    from features.build import build_features
    from features.contract.warehouse import today
    from features.entities import ACTIVE
    from healthscore.settings import load_settings
    from scoring.health.profiles import load_rules_for
    from scoring.model_set import load_models
    from scoring.pipeline import Scorer, _accounts, _status, feature_config

    settings = load_settings()
    models, note = load_models(OUT / "models")
    scorer = Scorer(rules=load_rules_for(settings.health), features=settings.features,
                    models=models, models_note=note)
    con = duckdb.connect(str(base_path()), read_only=True)
    when = pd.Timestamp(today(con))
    accounts = _accounts(con, None, frozenset(["accounts", "churn_events"]))
    # The portfolio: the accounts active at today, as `score_accounts(..., None, ...)` scores.
    accounts = accounts[_status(accounts, when) == ACTIVE].reset_index(drop=True)
    ids = accounts["account_id"].tolist()
    prev = when - pd.Timedelta(days=scorer.rules.trend_days)
    ents = pd.DataFrame({"account_id": ids + ids, "as_of": [when] * len(ids) + [prev] * len(ids)})
    ents["as_of"] = ents["as_of"].astype("datetime64[us]")
    feats = build_features(con, ents, feature_config(scorer))
    from features.contract.warehouse import connected_tables

    scoring_frames_path().write_bytes(pickle.dumps(
        {"accounts": accounts, "features": feats, "when": when, "n": len(ids),
         "connected": connected_tables(con)}))
    return {"accounts": len(ids)}


def child_score(n: int) -> dict[str, Any]:
    """The scoring stage of `score_accounts` (rules and six probabilities) on `n` accounts."""
    import pickle

    import numpy as np
    import pandas as pd

    from healthscore.settings import load_settings
    from scoring.health.profiles import load_rules_for
    from scoring.model_set import load_models
    from scoring.pipeline import Scorer, _status, score_built

    settings = load_settings()
    models, note = load_models(OUT / "models")
    scorer = Scorer(rules=load_rules_for(settings.health), features=settings.features,
                    models=models, models_note=note)
    saved = pickle.loads(scoring_frames_path().read_bytes())
    base_n = saved["n"]
    pick = np.random.default_rng(0).integers(0, base_n, n)
    ids = np.array([f"s{i:07d}" for i in range(n)], dtype=object)
    accounts = saved["accounts"].iloc[pick].reset_index(drop=True)
    accounts["account_id"] = ids
    feats = saved["features"]
    cur = feats.iloc[pick].reset_index(drop=True)
    old = feats.iloc[base_n + pick].reset_index(drop=True)
    cur["account_id"] = ids
    old["account_id"] = ids
    when = saved["when"]
    status = _status(accounts, when)
    stored = pd.DataFrame({"account_id": pd.Series([], dtype=str),
                           "as_of": pd.Series([], dtype="datetime64[us]"),
                           "score": pd.Series([], dtype=float)})
    before = peak_mb()
    t, c = time.perf_counter(), cpu_s()
    scored = score_built(accounts, status, cur, old, stored, when, scorer, saved["connected"])
    wall, cpu = time.perf_counter() - t, cpu_s() - c
    probs = scored.probabilities
    return {"seconds": wall, "cpu": cpu, "accounts": n, "mb": peak_mb(), "mb_before": before,
            "scored": int(scored.scores["score"].notna().sum()),
            "with_probabilities": int(probs.notna().all(axis=1).sum()),
            "models": len(probs.columns), "load": load()}


def child_score_e2e(copies: int) -> dict[str, Any]:
    """`score_accounts` for every active account of a warehouse: features, rules, models."""
    from healthscore.settings import load_settings
    from scoring.health.profiles import load_rules_for
    from scoring.model_set import load_models
    from scoring.pipeline import Scorer, score_accounts

    settings = load_settings()
    models, note = load_models(OUT / "models")
    scorer = Scorer(rules=load_rules_for(settings.health), features=settings.features,
                    models=models, models_note=note)
    con = open_warehouse(copies)
    t, c = time.perf_counter(), cpu_s()
    scored = score_accounts(con, None, None, scorer)
    wall, cpu = time.perf_counter() - t, cpu_s() - c
    usage = con.execute("select count(*) from usage_events").fetchone()[0]
    return {"seconds": wall, "cpu": cpu, "accounts": len(scored), "usage_events": usage,
            "mb": peak_mb(), "load": load()}


CHILDREN = {"base": child_base, "replicate": child_replicate, "features": child_features,
            "pandas": child_pandas, "training_set": child_training_set, "train": child_train,
            "bare": child_bare, "scoring_features": child_scoring_features,
            "score": child_score, "score_e2e": child_score_e2e}


# --- the run ----------------------------------------------------------------------------------
def machine() -> str:
    return f"{os.cpu_count()} cores {platform.machine()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None,
                        help="usage events of the feature warehouses, e.g. 1M,10M,100M")
    parser.add_argument("--train-rows", default=None, help="training snapshots, e.g. 30k,100k")
    parser.add_argument("--score-accounts", default=None, help="accounts scored, e.g. 100k,1M")
    parser.add_argument("--grid-max", default="10M",
                        help="largest warehouse also built at the 12-date training grid")
    parser.add_argument("--pandas-max", default="10M",
                        help="largest warehouse the pandas baseline runs on")
    parser.add_argument("--only", default="features,train,score,e2e")
    parser.add_argument("--small", action="store_true", help="quick sizes")
    parser.add_argument("--keep", action="store_true", help="keep the warehouses")
    parser.add_argument("--json", type=Path, default=OUT / "results.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        result = CHILDREN[spec.pop("task")](**spec)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    sizes = [parse_size(s) for s in (args.sizes or ("1M,3M" if args.small else "1M,10M,100M")
                                     ).split(",")]
    train_rows = [parse_size(s) for s in (args.train_rows or (
        "10k,30k" if args.small else "30k,100k,300k")).split(",")]
    score_n = [parse_size(s) for s in (args.score_accounts or (
        "10k,100k" if args.small else "10k,100k,1M")).split(",")]
    only = set(args.only.split(","))
    grid_max, pandas_max = parse_size(args.grid_max), parse_size(args.pandas_max)
    console = Console(width=160)
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    me = "bench/bench_scale.py"

    def add(kind: str, command: str, size: str, r: dict[str, Any], **extra: Any) -> None:
        rows.append({"kind": kind, "command": command, "size": size, "machine": machine(),
                     **r, **extra})
        save()  # as it goes: a long run cut short keeps what it measured

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                               time.gmtime()),
                                         "rows": rows}, indent=1, default=str))

    copies_for: dict[int, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("scale bench", total=None)

        def step(desc: str, fn):
            bar.update(task, description=f"{desc} (load {load()})")
            return fn()

        if not base_path().exists():
            step("generate the base world", lambda: run_child("base"))
        import duckdb

        with duckdb.connect(str(base_path()), read_only=True) as con:
            base_events = con.execute("select count(*) from usage_events").fetchone()[0]
        copies_for = {s: max(1, round(s / base_events)) for s in sizes}

        if "features" in only or "e2e" in only:
            for s in sizes:
                copies = copies_for[s]
                label = size_label(s)
                if not warehouse_path(copies).exists():
                    total, _, free = shutil.disk_usage(OUT)
                    need = copies * 25 * 2**20
                    if free < 4 * need:
                        raise SystemExit(f"not enough disk for the {label} warehouse")
                    r = step(f"replicate {copies}x ({label} events)",
                             lambda c=copies: run_child("replicate", copies=c))
                    add("prepare", f"{me} (replicate {copies}x in DuckDB SQL)", label, r)
                if "features" in only:
                    for grid in (False, True):
                        if grid and s > grid_max:
                            continue
                        what = "12 monthly dates" if grid else "today"
                        r = step(f"features {label} {what}", lambda c=copies, g=grid:
                                 run_child("features", copies=c, grid=g))
                        add("features (DuckDB)", f"{me} --sizes {label}", label, r, dates=what)
                        baselines = ((True, BASELINES[0]), (False, BASELINES[1])) \
                            if s <= pandas_max else ()
                        for plain, kind in baselines:
                            r2 = step(f"{kind} {label} {what}",
                                      lambda c=copies, g=grid, p=plain:
                                      run_child("pandas", copies=c, grid=g, plain=p,
                                                check=(c == min(copies_for.values()))))
                            add(f"features ({kind})", f"{me} --sizes {label}", label,
                                {**r2, "usage_events": r["usage_events"],
                                 "window_events": r["window_events"], "dates": r["dates"]},
                                dates=what, duckdb_seconds=r["seconds"])
        if "train" in only or "score" in only or "e2e" in only:
            if not training_set_path().exists():
                step("training set of the base world", lambda: run_child("training_set"))
        # scoring needs the models: train them once when they are missing
        if "train" in only or ({"score", "e2e"} & set(only) and not (OUT / "models").exists()):
            for i, n in enumerate(train_rows if "train" in only else train_rows[:1]):
                label = size_label(n)
                r = step(f"train six models, {label} snapshots",
                         lambda n=n, i=i: run_child("train", rows=n, save_models=(i == 0)))
                b = step(f"bare lightgbm.train, {label} snapshots",
                         lambda n=n: run_child("bare", rows=n))
                add("training (product)", f"{me} --train-rows {label}", label, r)
                add("training (bare lightgbm.train)", f"{me} --train-rows {label}", label, b,
                    overhead=r["cpu"] / b["cpu"], wall_ratio=r["seconds"] / b["seconds"])
        if "score" in only:
            step("scoring features of the base world", lambda: run_child("scoring_features"))
            for n in score_n:
                label = size_label(n)
                r = step(f"score {label} accounts", lambda n=n: run_child("score", n=n))
                add("batch scoring (rules + 6 probabilities)",
                    f"{me} --score-accounts {label}", label, r)
        if "e2e" in only:
            for s in sizes:
                copies = copies_for[s]
                label = size_label(s)
                if warehouse_path(copies).exists():
                    r = step(f"score_accounts end to end, {label} events",
                             lambda c=copies: run_child("score_e2e", copies=c))
                    add("score_accounts end to end (features + rules + 6 probabilities)",
                        f"{me} --sizes {label} --only e2e", label, r)
    if not args.keep:
        for copies in copies_for.values():
            warehouse_path(copies).unlink(missing_ok=True)

    save()
    table = Table(title=f"bench_scale on {machine()} (DuckDB threads {DUCKDB_THREADS}, "
                        f"LightGBM 1 thread); load average now {load()}")
    for col in ("measurement", "size", "as-of dates", "seconds", "throughput", "peak MB",
                "vs", "load", "command"):
        table.add_column(col, justify="left" if col in ("measurement", "command", "as-of dates",
                                                        "vs", "load") else "right")
    verdicts: list[str] = []
    for r in rows:
        vs, rate = "", ""
        if r["kind"].startswith("features"):
            rate = f"{r['usage_events'] / r['seconds'] / 1e6:.2f} M events/s"
            if r["kind"].endswith("baseline)"):
                vs = f"DuckDB {r['seconds'] / r['duckdb_seconds']:.1f}x faster"
        elif r["kind"].startswith("training (bare"):
            vs = f"product / bare = {r['overhead']:.2f}x CPU ({r['wall_ratio']:.2f}x wall)"
        elif r["kind"].startswith("training"):
            rate = f"{r['rows'] / r['seconds']:,.0f} rows/s"
            vs = f"{r['calls']} boosters, {r['rounds']} rounds; in lgb.train " \
                 f"{r['lgb_seconds']:.1f} s"
        elif "scoring" in r["kind"] or "score_accounts" in r["kind"]:
            rate = f"{r['accounts'] / r['seconds']:,.0f} accounts/s"
        dates = r.get("dates", "")
        table.add_row(r["kind"], r["size"], str(dates), f"{r['seconds']:.1f}", rate,
                      f"{r['mb']:,.0f}", vs, r.get("load", ""), r["command"])
    console.print(table)
    for r in rows:
        if r["kind"] == "features (DuckDB)" and r["size"] == "100M" and r["dates"] == "today":
            ok = r["seconds"] < TARGETS["features_100m_s"]
            verdicts.append(f"features of 100M events {r['seconds']:.1f} s < 120 s: "
                            f"{'met' if ok else 'NOT met'}")
        if r["kind"] == f"features ({BASELINES[0]})" and r["size"] == "10M":
            ratio = r["seconds"] / r["duckdb_seconds"]
            verdicts.append(f"DuckDB vs pandas groupby at 10M ({r['dates']}): {ratio:.1f}x "
                            f"(target >= 10x): {'met' if ratio >= 10 else 'NOT met'}")
        if r["kind"] == f"features ({BASELINES[1]})" and r["size"] == "10M":
            ratio = r["seconds"] / r["duckdb_seconds"]
            verdicts.append(f"DuckDB vs the careful pandas + numpy baseline at 10M "
                            f"({r['dates']}): {ratio:.1f}x")
        if r["kind"].startswith("batch scoring") and r["size"] == "1M":
            verdicts.append(f"scoring 1M accounts {r['seconds']:.1f} s < 90 s: "
                            f"{'met' if r['seconds'] < 90 else 'NOT met'}")
        if r["kind"].startswith("training (bare"):
            verdicts.append(f"training overhead at {r['size']}: {r['overhead']:.2f}x CPU "
                            f"(<= 1.3x): {'met' if r['overhead'] <= 1.3 else 'NOT met'}")
    for v in verdicts:
        console.print(v)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
