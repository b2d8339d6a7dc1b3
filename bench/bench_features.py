"""Bench: point-in-time features for every active account at 12 monthly as-of dates.

Target: 10,000 accounts x 730 days, all active accounts at 12 monthly dates, in under
60 s and 4 GB peak memory on 2 cores. Beside it, a plain pandas groupby of three of the same
features (active_users_30d, events_30d, tickets_90d) on the same entities as the baseline, which
must give the same values, and a single-account build (the online path).

    .venv/bin/python bench/bench_features.py            # 10,000 accounts
    .venv/bin/python bench/bench_features.py --small    # 1,000 accounts, a quick check

The generated world and its warehouse are kept in bench/out/ and reused (--fresh rebuilds).
Data preparation (generate, write, ingest) runs in a child process so the peak memory reported
for the feature steps is the feature build's own (ru_maxrss of this process).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.build import build_features  # noqa: E402
from features.contract.settings import IngestConfig  # noqa: E402
from features.entities import build_entities  # noqa: E402
from features.settings import FeatureConfig  # noqa: E402

OUT = Path(__file__).parent / "out"
START = date(2024, 1, 1)
DAYS = 730
SEED = 7
TARGET_SECONDS = 60.0
TARGET_MB = 4096.0
THREADS = 2
MEMORY_LIMIT = "3GB"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds of this process (all DuckDB threads): less sensitive than wall time to other
    work on a shared machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall and CPU seconds of one step."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_s() - self.cpu


def _prepare(n_accounts: int, folder: Path, db: Path, timings: dict) -> None:
    """Child process: generate the world, write it, load the warehouse."""
    from features.synth.generate import generate_world, write_world

    t = time.perf_counter()
    world = generate_world(n_accounts, START, DAYS, SEED)
    timings["generate"] = (time.perf_counter() - t, len(world.tables["usage_events"]))
    t = time.perf_counter()
    write_world(world, folder, "parquet")
    timings["write parquet"] = (time.perf_counter() - t, sum(map(len, world.tables.values())))
    del world
    t = time.perf_counter()
    how = "ingest"
    try:
        from features.contract.ingest import ingest_folder

        ingest_folder(folder, db, IngestConfig(), now=pd.Timestamp("2100-01-01").to_pydatetime())
    except ImportError:
        how = "load parquet"
        _load_parquet(folder, db)
    timings[how] = (time.perf_counter() - t, 0)
    timings["prepare peak MB"] = (peak_mb(), 0)


def _load_parquet(folder: Path, db: Path) -> None:
    """Fallback while features/contract/ingest.py is not there: the files as they are, in DuckDB."""
    db.unlink(missing_ok=True)
    with duckdb.connect(str(db)) as con:
        for path in sorted(folder.glob("*.parquet")):
            if path.stem == "truth":
                continue
            con.execute(
                f'create table "{path.stem}" as select * from read_parquet(?)', [str(path)]
            )


def prepare(n_accounts: int, fresh: bool) -> tuple[Path, dict]:
    folder = OUT / f"world_{n_accounts}"
    db = OUT / f"warehouse_{n_accounts}.duckdb"
    if db.exists() and not fresh:
        return db, {}
    OUT.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    with mp.Manager() as manager:
        timings = manager.dict()
        child = mp.get_context("spawn").Process(target=_prepare,
                                                args=(n_accounts, folder, db, timings))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"preparing the world failed (exit {child.exitcode})")
        return db, dict(timings)


def load_for_pandas(con: duckdb.DuckDBPyConnection,
                    ents: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usage and ticket rows the baseline needs, as pandas frames."""
    lo = ents["as_of"].min() - pd.Timedelta(days=90)
    hi = ents["as_of"].max()
    usage = con.execute(
        "select account_id, user_id, ts, coalesce(quantity, 1.0) as quantity "
        "from usage_events where ts >= ? and ts < ?", [lo, hi]).df()
    tickets = con.execute(
        "select account_id, created_at from tickets where created_at >= ? and created_at < ?",
        [lo, hi]).df()
    return usage, tickets


def pandas_baseline(usage: pd.DataFrame, tickets: pd.DataFrame,
                    ents: pd.DataFrame) -> pd.DataFrame:
    """active_users_30d, events_30d, tickets_90d with pandas groupby, one as-of date at a time."""
    parts = []
    for as_of, group in ents.groupby("as_of", sort=True):
        u = usage[(usage["ts"] >= as_of - pd.Timedelta(days=30)) & (usage["ts"] < as_of)]
        g = u.groupby("account_id")
        k = tickets[(tickets["created_at"] >= as_of - pd.Timedelta(days=90))
                    & (tickets["created_at"] < as_of)]
        part = group[["account_id", "as_of"]].copy()
        ids = part["account_id"]
        part["active_users_30d"] = ids.map(g["user_id"].nunique()).fillna(0).astype(float)
        part["events_30d"] = ids.map(g["quantity"].sum()).fillna(0).astype(float)
        part["tickets_90d"] = ids.map(k.groupby("account_id").size()).fillna(0).astype(float)
        parts.append(part)
    return pd.concat(parts).loc[ents.index].reset_index(drop=True)


Row = tuple[str, int, float, float | None, float]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 accounts instead of 10,000")
    parser.add_argument("--fresh", action="store_true", help="regenerate the world")
    parser.add_argument("--accounts", type=int, default=None)
    args = parser.parse_args()
    n_accounts = args.accounts or (1_000 if args.small else 10_000)
    console = Console()
    rows: list[Row] = []

    with console.status(f"preparing a world of {n_accounts:,} accounts x {DAYS} days"):
        db, prep = prepare(n_accounts, args.fresh)
    for step in ("generate", "write parquet", "ingest", "load parquet"):
        if step in prep:
            secs, n = prep[step]
            rows.append((f"prepare: {step}", n, secs, None, prep["prepare peak MB"][0]))

    con = duckdb.connect(str(db), read_only=True)
    con.execute(f"set threads = {THREADS}")
    con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
    usage_rows = con.execute("select count(*) from usage_events").fetchone()[0]
    end = pd.Timestamp(START) + pd.Timedelta(days=DAYS)
    dates = pd.date_range(end=end - pd.Timedelta(days=1), periods=12, freq="MS")
    cfg = FeatureConfig()

    with Clock() as c:
        ents = build_entities(con, dates)
    rows.append(("entities: 12 monthly dates", len(ents), c.wall, c.cpu, peak_mb()))

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("features", total=1.0)
        with Clock() as c:
            frame = build_features(
                con, ents, cfg,
                progress=lambda step, done: bar.update(task, completed=done,
                                                       description=f"features: {step}"),
            )
    feature_s, feature_mb = c.wall, peak_mb()
    rows.append((f"features: all active x 12 dates ({usage_rows:,} usage rows)", len(frame),
                 c.wall, c.cpu, feature_mb))

    one_id = ents.loc[ents["as_of"] == dates[-1], "account_id"].iloc[len(ents) // 24]
    one = ents[(ents["account_id"] == one_id) & (ents["as_of"] == dates[-1])]
    walls, cpus = [], []
    for _ in range(9):
        with Clock() as c:
            single = build_features(con, one, cfg)
        walls.append(c.wall)
        cpus.append(c.cpu)
    rows.append(("features: one account, one date (median of 9)", len(single),
                 statistics.median(walls), statistics.median(cpus), peak_mb()))
    with Clock() as c:
        build_entities(con, dates[-1], account_ids=[one_id])
    rows.append(("entities: one account", 1, c.wall, c.cpu, peak_mb()))
    expected = frame[(frame["account_id"] == one_id) & (frame["as_of"] == dates[-1])]
    pd.testing.assert_frame_equal(single.reset_index(drop=True),
                                  expected.reset_index(drop=True), check_categorical=False)

    with Clock() as c:
        usage, tickets = load_for_pandas(con, ents)
    rows.append(("pandas baseline: load usage + tickets", len(usage) + len(tickets), c.wall,
                 c.cpu, peak_mb()))
    with Clock() as c:
        base = pandas_baseline(usage, tickets, ents)
    rows.append(("pandas baseline: groupby 3 features x 12 dates", len(base), c.wall, c.cpu,
                 peak_mb()))
    for name in ("active_users_30d", "events_30d", "tickets_90d"):
        np.testing.assert_allclose(frame[name].to_numpy(), base[name].to_numpy(),
                                   err_msg=f"{name}: Ibis and pandas disagree")

    table = Table(title=f"bench_features: {n_accounts:,} accounts x {DAYS} days, "
                        f"{THREADS} threads, DuckDB memory_limit {MEMORY_LIMIT}")
    for col in ("step", "rows", "seconds", "cpu s", "peak MB"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for step, n, wall, cpu, mb in rows:
        table.add_row(step, f"{n:,}", f"{wall:.2f}", "" if cpu is None else f"{cpu:.2f}",
                      f"{mb:,.0f}")
    console.print(table)
    ok = feature_s < TARGET_SECONDS and feature_mb < TARGET_MB
    verdict = "[green]within[/green]" if ok else "[red]OUTSIDE[/red]"
    console.print(f"features: {feature_s:.1f} s, peak {feature_mb:,.0f} MB: {verdict} the target "
                  f"({TARGET_SECONDS:.0f} s, {TARGET_MB:,.0f} MB) "
                  f"{'(full size)' if n_accounts >= 10_000 else '(small run: target is for 10k)'}"
                  f"; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    console.print("pandas baseline agrees with the Ibis features on active_users_30d, "
                  "events_30d and tickets_90d; the single-account build equals its batch row")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
