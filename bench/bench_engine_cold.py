"""Bench: the service's analyze (`serving.scores.analyze` on a `ServiceState`) of a warehouse
account at an as-of date it has not precomputed (the cold path: two feature rows built from the
warehouse snapshot, rules score with trend, six calibrated models, TreeSHAP factors),
in-process, no HTTP.

The service precomputes every account as of the data date at start-up, so a request for that
date is a lookup (bench_service measures it over HTTP); any other date, e.g. a CSM looking back
ten days, takes this path once per (account, date), then the state's account cache answers.
Here the cache is off (`feature_cache_size=0`, and each call is a different account) so every
call is cold. No target of its own: it shows what the cold path costs next to bench_explain's
50 ms target for `serving.explain`.

    .venv/bin/python bench/bench_engine_cold.py [--small]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build(root: Path, n_accounts: int, days: int) -> None:
    """A generated world in a warehouse file and six models trained on it (as bench_explain)."""
    import duckdb
    from bench_explain import train

    from features.contract.warehouse import load_frames
    from features.synth.generate import generate_world
    from healthscore.settings import load_settings

    world = generate_world(n_accounts, date(2024, 1, 1), days, seed=7)
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    load_frames(con, world.tables)
    as_of = pd.Timestamp(date(2024, 1, 1)) + pd.Timedelta(days=days - 30)
    train(con, as_of, load_settings().features, root / "models")
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a smaller world, fewer accounts")
    args = parser.parse_args()
    n_accounts, days, n_calls = (300, 450, 30) if args.small else (800, 600, 60)

    from healthscore.settings import load_settings
    from serving import schemas, scores
    from serving.state import ServiceState

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with console.status(f"Generating {n_accounts} accounts x {days} days, training six "
                            "models, starting the service"):
            build(root, n_accounts, days)
            settings = load_settings(
                paths={"warehouse": str(root / "warehouse.duckdb"),
                       "store_url": f"sqlite:///{root}/store.db",
                       "models_dir": str(root / "models")},
                serving={"feature_cache_size": 0, "warehouse_check_seconds": 3600.0})
            state = ServiceState(settings, start_worker=False,
                                 snapshot_dir=root / "snapshots")
            # As HealthScoreService does once the state is loaded (healthscore/service.py).
            gc.collect()
            gc.freeze()
        try:
            ids = state.portfolio.account_ids[:n_calls + 5]
            when = state.default_as_of - timedelta(days=10)
            wall: list[float] = []
            cpu: list[float] = []
            for i, account in enumerate(ids):
                req = schemas.AnalyzeRequest(accountId=account, asOf=when)
                t, c = time.perf_counter(), time.process_time()
                scores.analyze(state, req)
                if i >= 5:  # the first calls compile the online SQL
                    wall.append((time.perf_counter() - t) * 1000.0)
                    cpu.append((time.process_time() - c) * 1000.0)
        finally:
            state.close()
    table = Table(title=f"Service analyze, cold (as of {when}, not precomputed): {len(wall)} "
                        f"accounts of {n_accounts}")
    for col in ("median ms", "p95 ms", "max ms", "CPU ms (median)"):
        table.add_column(col, justify="right")
    table.add_row(f"{statistics.median(wall):.1f}", f"{np.percentile(wall, 95):.1f}",
                  f"{max(wall):.1f}", f"{statistics.median(cpu):.1f}")
    console.print(table)
    console.print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
