"""Bench: portfolio intelligence. Usage-anomaly precision and recall on the generator's injected,
labelled anomalies, and the time of value / RFM / lifecycle for 10,000 accounts.

Anomalies: a world generated with `AnomalyInjection()` (1.5 per account-year, 7-14 days each,
sized on the account's volume so every label is an observable change: drops only where at
least 10 events a week can go missing, to near zero, keeping up to 20% from 30 a week; spikes
of 3-5x adding at least 20 events a week; an account too small for a drop gets a spike) is
loaded into DuckDB; the product's own `scoring.anomalies.daily_usage` reads every account's
daily events and active users, and `judge_windows` judges each day's window as the daily job
does (window ending the day before). Every account is judged, whatever its volume (the count
test decides what a small count can show). Consecutive days flagged for one account and metric
are one episode: one alert (an open alert is not raised again). An episode is a true positive
when its windows overlap a labelled anomaly of that account moving that metric; a labelled
anomaly is recalled when some flagged window of its account and one of its metrics overlaps
it. Recall is over ALL injected anomalies ("judged" counts those whose account was judged at
the anomaly's start). False positives are the world's own dynamics (health drift, champion
departures, usage cuts, outages): the share that coincides with one of its recorded shocks is
shown.

Speed: a 10,000-account scored frame (hand-made feature rows through the rules score, random
probabilities: the frame `score_accounts` returns) through `value_scores`, `rfm_scores` and
`lifecycle_stages`, best of three; and the anomaly judgement of 10,000 accounts x 2 metrics.

    .venv/bin/python bench/bench_portfolio.py [--accounts 1000] [--days 365] [--seed 3 11 17]
        [--quality-only] [--small]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

START = date(2024, 1, 1)


def _episodes(flags: pd.DataFrame) -> pd.DataFrame:
    f = flags.sort_values(["row", "metric", "t"])
    new = (f["row"] != f["row"].shift()) | (f["metric"] != f["metric"].shift()) \
        | (f["t"] != f["t"].shift() + 1)
    return f.groupby(new.cumsum()).agg(row=("row", "first"), metric=("metric", "first"),
                                       t0=("t", "min"), t1=("t", "max")).reset_index(drop=True)


def anomaly_world(accounts: int, days: int, seed: int) -> tuple[list[str], dict, object, float]:
    """(account ids, metric -> accounts x days, the world, seconds): a world with injected
    anomalies, loaded into DuckDB and read back by the product's `daily_usage`."""
    import duckdb

    from features.contract.warehouse import load_frames
    from features.synth.anomalies import AnomalyInjection
    from features.synth.generate import generate_world
    from scoring.portfolio.settings import AnomalyConfig

    clock = time.perf_counter()
    world = generate_world(accounts, START, days, seed, anomalies=AnomalyInjection())
    con = duckdb.connect()
    load_frames(con, world.tables)
    end = pd.Timestamp(START) + pd.Timedelta(days=days)
    from scoring.anomalies import daily_usage

    ids, _axis, grids = daily_usage(con, end.date(), days, AnomalyConfig().metrics)
    con.close()
    return ids, grids, world, time.perf_counter() - clock


def evaluate(ids: list[str], grids: dict, world: object, days: int, cfg: object
             ) -> dict[str, float]:
    """Precision of the episodes and recall of the labelled anomalies, judging every day."""
    from scoring.anomalies import judge_windows

    span, window = cfg.history_weeks * 7 + cfg.window_days, cfg.window_days  # type: ignore[attr-defined]
    clock = time.perf_counter()
    flagged, judged_at = [], {}
    for t in range(span, days + 1):  # t: the as-of day index; the window is [t - window, t)
        for metric, grid in grids.items():
            got = judge_windows(grid[:, t - span:t], cfg)  # type: ignore[arg-type]
            flagged += [(i, metric, t) for i in np.flatnonzero(got.anomalous)]
            judged_at[(metric, t)] = got.judged
    judge_time = time.perf_counter() - clock
    flags = pd.DataFrame(flagged, columns=["row", "metric", "t"])

    labels = world.anomalies.copy()  # type: ignore[attr-defined]
    index = pd.Index(ids)
    labels["row"] = index.get_indexer(labels["account_id"])
    labels["s"] = (labels["start"] - pd.Timestamp(START)).dt.days
    labels["e"] = (labels["end"] - pd.Timestamp(START)).dt.days
    labels = labels[labels["s"] >= span - window].reset_index(drop=True)
    by_key: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    for lab in labels.itertuples():
        for metric in lab.metrics.split(";"):
            by_key.setdefault((lab.row, metric), []).append((lab.s, lab.e, lab.Index))

    def matches(row: int, metric: str, first: int, last: int) -> list[int]:
        """Labels of (row, metric) overlapping the window days [first, last]."""
        return [k for s, e, k in by_key.get((row, metric), []) if s <= last and e >= first]

    episodes = _episodes(flags) if len(flags) else pd.DataFrame(columns=["row", "metric", "t0",
                                                                          "t1"])
    hits = [matches(r.row, r.metric, r.t0 - window, r.t1 - 1) for r in episodes.itertuples()]
    true = np.array([bool(h) for h in hits], dtype=bool)
    found = {k for r in flags.itertuples() for k in matches(r.row, r.metric, r.t - window,
                                                            r.t - 1)}
    detectable = set()
    for lab in labels.itertuples():
        t = min(lab.s + window, days)
        if any(judged_at.get((m, t), np.zeros(len(ids), bool))[lab.row]
               for m in lab.metrics.split(";")):
            detectable.add(lab.Index)
    shocks = world.shocks.copy()  # type: ignore[attr-defined]
    shocks["row"] = index.get_indexer(shocks["account_id"])
    shocks["d"] = (pd.to_datetime(shocks["date"]) - pd.Timestamp(START)).dt.days
    explained = 0
    for r, ok in zip(episodes.itertuples(), true, strict=True):
        if not ok:
            near = shocks[(shocks["row"] == r.row) & (shocks["d"] >= r.t0 - window - 28)
                          & (shocks["d"] < r.t1)]
            explained += bool(len(near))
    out: dict[str, float] = {
        "labelled": len(labels), "judged": len(detectable), "episodes": len(episodes),
        "true episodes": int(true.sum()),
        "precision": float(true.mean()) if len(true) else float("nan"),
        "recall (all)": len(found) / max(len(labels), 1),
        "recall (judged)": len(found & detectable) / max(len(detectable), 1),
        "false episodes near a recorded shock": explained / max(int((~true).sum()), 1),
        "judging s": judge_time, "judgements": (days + 1 - span) * len(grids) * len(ids)}
    for kind in ("drop", "spike"):
        mine = set(labels.index[labels["kind"] == kind])
        out[f"{kind}s"] = len(mine)
        out[f"recall {kind}s (all)"] = len(found & mine) / max(len(mine), 1)
    return out


def anomaly_quality(accounts: int, days: int, seed: int, console: Console) -> dict[str, float]:
    from scoring.portfolio.settings import AnomalyConfig

    cfg = AnomalyConfig()
    ids, grids, world, built = anomaly_world(accounts, days, seed)
    out = evaluate(ids, grids, world, days, cfg)
    out["world + warehouse + daily_usage s"] = built
    table = Table(title=f"Usage anomalies: {accounts} accounts x {days} days, seed {seed}, "
                        f"{out['labelled']} injected (count test z >= {cfg.z_threshold:g}, "
                        f"drop >= {cfg.min_drop:.0%} and {cfg.min_drop_events:g}, spike >= "
                        f"{cfg.min_spike:.0%} and {cfg.min_spike_events:g}, dispersion "
                        f"{cfg.min_dispersion:g}-{cfg.max_dispersion:g})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in out.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else f"{v:,}")
    console.print(table)
    return out


def speed(n: int, console: Console) -> dict[str, float]:
    from features.contract.tables import TABLES
    from scoring.anomalies import judge_windows
    from scoring.health import load_rules, score_frame
    from scoring.health.examples import random_features
    from scoring.pipeline import ScoredFrame
    from scoring.portfolio.lifecycle import lifecycle_stages
    from scoring.portfolio.rfm import rfm_scores
    from scoring.portfolio.settings import PortfolioConfig
    from scoring.portfolio.value import value_scores

    feats = random_features(n, seed=1)
    connected = frozenset(t.name for t in TABLES)
    scores = score_frame(feats, connected, load_rules())
    scores["account_status"] = "active"
    scores["name"] = scores["account_id"]
    rng = np.random.default_rng(2)
    probs = pd.DataFrame({f"{t}_{h}d": rng.uniform(0, 1, n) for t in ("churn", "expansion")
                          for h in (30, 60, 90)})
    frame = ScoredFrame(date(2025, 6, 1), connected, scores, feats, probs)
    cfg = PortfolioConfig()
    steps = {"value_scores": lambda: value_scores(frame, cfg),
             "rfm_scores": lambda: rfm_scores(frame, cfg.rfm),
             "lifecycle_stages": lambda: lifecycle_stages(frame, cfg.lifecycle)}
    out: dict[str, float] = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(3):
            clock = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - clock)
        out[name] = best
    out["value + RFM + lifecycle"] = sum(out.values())
    a = cfg.anomalies
    usage = rng.poisson(30.0, size=(n, a.history_weeks * 7 + a.window_days)).astype(float)
    clock = time.perf_counter()
    for _ in cfg.anomalies.metrics:
        judge_windows(usage, a)
    out["anomaly judgement (2 metrics)"] = time.perf_counter() - clock
    table = Table(title=f"Portfolio views of {n:,} accounts (best of 3, seconds)")
    table.add_column("step")
    table.add_column("s", justify="right")
    for k, v in out.items():
        table.add_row(k, f"{v:.3f}")
    console.print(table)
    return out


def pipeline_speed(n: int, days: int, console: Console) -> dict[str, float]:
    """The views on the pipeline's own frame: a generated world of `n` accounts, every active
    account scored by `score_accounts` (rules only), then value, RFM and lifecycle."""
    import duckdb

    from features.contract.warehouse import load_frames
    from features.synth.generate import generate_world
    from scoring.health import load_rules
    from scoring.pipeline import Scorer, score_accounts
    from scoring.portfolio.lifecycle import lifecycle_stages
    from scoring.portfolio.rfm import rfm_scores
    from scoring.portfolio.settings import PortfolioConfig
    from scoring.portfolio.value import value_scores

    world = generate_world(n, START, days, 5)
    con = duckdb.connect()
    load_frames(con, world.tables)
    del world
    cfg = PortfolioConfig()
    clock = time.perf_counter()
    frame = score_accounts(con, None, None, Scorer(rules=load_rules()), trend=False).active()
    scored = time.perf_counter() - clock
    clock = time.perf_counter()
    value_scores(frame, cfg)
    rfm_scores(frame, cfg.rfm)
    lifecycle_stages(frame, cfg.lifecycle)
    views = time.perf_counter() - clock
    con.close()
    out = {"active accounts": len(frame), "score_accounts s": scored, "views s": views,
           "together s": scored + views}
    table = Table(title=f"On the pipeline's frame: {n:,} accounts x {days} days generated")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in out.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else f"{v:,}")
    console.print(table)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, nargs="+", default=[3],
                        help="One world per seed (thresholds were chosen on 3).")
    parser.add_argument("--quality-only", action="store_true",
                        help="Only the anomaly precision and recall, no speed.")
    parser.add_argument("--speed-accounts", type=int, default=10_000)
    parser.add_argument("--pipeline-days", type=int, default=180,
                        help="Days of the world the pipeline run scores (0: skip it).")
    parser.add_argument("--small", action="store_true",
                        help="Quick version: 300 accounts x 240 days, 2,000 for the speed.")
    args = parser.parse_args()
    if args.small:
        args.accounts, args.days, args.speed_accounts, args.pipeline_days = 300, 240, 2000, 0
    console = Console()
    worlds = [anomaly_quality(args.accounts, args.days, seed, console) for seed in args.seed]
    summary = Table(title=f"Usage anomalies over all injected anomalies, {args.accounts:,} "
                          f"accounts x {args.days} days")
    for col in ("seed", "injected", "drops / spikes", "episodes", "precision", "recall (all)",
                "drops / spikes recalled"):
        summary.add_column(col, justify="right")
    for seed, q in zip(args.seed, worlds, strict=True):
        summary.add_row(str(seed), f"{q['labelled']:,}", f"{q['drops']:,} / {q['spikes']:,}",
                        f"{q['episodes']:,}", f"{q['precision']:.3f}",
                        f"{q['recall (all)']:.3f}",
                        f"{q['recall drops (all)']:.3f} / {q['recall spikes (all)']:.3f}")
    console.print(summary)
    ok = all(q["precision"] >= 0.8 and q["recall (all)"] >= 0.7 for q in worlds)
    if not args.quality_only:
        timing = speed(args.speed_accounts, console)
        if args.pipeline_days:
            pipeline_speed(args.speed_accounts, args.pipeline_days, console)
        ok = ok and timing["value + RFM + lifecycle"] < 10
    console.print(f"targets (precision >= 0.8 and recall of ALL injected anomalies >= 0.7 in "
                  f"every world{'' if args.quality_only else ', views < 10 s'}): "
                  f"{'met' if ok else 'NOT met'}")

if __name__ == "__main__":
    main()
