"""Bench: validated ingestion of a generated world, Parquet and CSV, and of RavenStack.

Ingest has no target of its own; this measures where the time and memory go so the
demo (1,500 accounts x 730 days) and the 10,000-account feature bench stay practical: seconds,
rows per second and the peak memory of the ingest itself.

    .venv/bin/python bench/bench_ingest.py            # 1,500 accounts x 730 days (the demo)
    .venv/bin/python bench/bench_ingest.py --small    # 300 accounts x 365 days
    .venv/bin/python bench/bench_ingest.py --accounts 10000 --no-csv
    .venv/bin/python bench/bench_ingest.py --big            # a ~500 MB usage-event CSV
    .venv/bin/python bench/bench_ingest.py --big --code /path/to/other/checkout
    .venv/bin/python bench/bench_ingest.py --big --compare /path/to/other/checkout --rounds 2

Worlds are generated into bench/out/ingest_* by a child process and reused (--fresh rebuilds);
each ingest also runs in its own child process, so the peak memory reported is the ingest's.

`--big` is the streaming target (peak memory under 1 GB for a 500 MB usage CSV): a small
generated world (300 accounts x 730 days) whose accounts, subscriptions and usage are repeated
with shifted account ids until usage_events.csv is about `--mb` MB, written once to
/tmp/healthscore_bench_ingest_big and reused. The ingest is `healthscore ingest` run under
`/usr/bin/time -v` (wall time, maximum resident set size); `--code` runs the command of another
checkout of the project on the same folder, for a before/after figure. `--compare` runs the
other checkout and this one alternately (other, this, other, this, ... `--rounds` times each) on
the same folder and reports every run and the medians: on a shared machine the load changes
from minute to minute, and only runs interleaved this way compare the code rather than the load.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "out"
START = date(2024, 1, 1)
SEED = 7
NOW = datetime(2100, 1, 1, tzinfo=UTC)  # the world's dates may run past today
RAVENSTACK = Path(__file__).resolve().parents[1] / "tests" / "data" / "ravenstack"


def _generate(n_accounts: int, days: int, folder: Path, fmt: str) -> None:
    from features.synth.generate import generate_world, write_world

    write_world(generate_world(n_accounts, START, days, SEED), folder, fmt)


def _ingest(folder: Path, db: Path, mapping: str | None, out: dict) -> None:
    from features.contract.ingest import ingest_folder
    from features.contract.settings import IngestConfig

    db.unlink(missing_ok=True)
    t = time.perf_counter()
    report = ingest_folder(folder, db, IngestConfig(), mapping=mapping, now=NOW)
    out["seconds"] = time.perf_counter() - t
    out["rows"] = sum(report.row_counts().values())
    out["usage_rows"] = report.row_counts().get("usage_events", 0)
    out["problems"] = sum(p.count for p in report.problems if p.action != "ignored")
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(target, *args) -> None:  # type: ignore[no-untyped-def]
    proc = mp.get_context("spawn").Process(target=target, args=args)
    proc.start()
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"{target.__name__} failed (exit {proc.exitcode})")


def world(n_accounts: int, days: int, fmt: str, fresh: bool) -> Path:
    folder = OUT / f"ingest_{n_accounts}x{days}_{fmt}"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if not (folder / "accounts.csv").exists() and not (folder / "accounts.parquet").exists():
        _child(_generate, n_accounts, days, folder, fmt)
    return folder


def measure(folder: Path, mapping: str | None = None) -> dict:
    with mp.Manager() as manager:
        out = manager.dict()
        _child(_ingest, folder, OUT / "ingest_bench.duckdb", mapping, out)
        return dict(out)


BIG = Path("/tmp/healthscore_bench_ingest_big")


def _write_big(folder: Path, mb: int) -> None:
    """Accounts, subscriptions and usage of a small world, repeated with shifted account ids."""
    import pandas as pd

    from features.synth.generate import generate_world

    tables = generate_world(300, START, 730, SEED).tables
    base = {n: tables[n] for n in ("accounts", "subscriptions", "usage_events")}
    folder.mkdir(parents=True, exist_ok=True)
    usage_path = folder / "usage_events.csv"
    copies, k = [], 0
    with usage_path.open("w", newline="") as fh:
        while usage_path.stat().st_size < mb * 1_000_000 or k == 0:
            part = base["usage_events"].assign(
                account_id=base["usage_events"]["account_id"] + f"-{k}")
            part.to_csv(fh, index=False, header=k == 0)
            fh.flush()
            copies.append(k)
            k += 1
    for name in ("accounts", "subscriptions"):
        frame = base[name]
        parts = []
        for k in copies:
            part = frame.assign(account_id=frame["account_id"] + f"-{k}")
            if name == "subscriptions":
                part = part.assign(subscription_id=part["subscription_id"] + f"-{k}")
            parts.append(part)
        pd.concat(parts, ignore_index=True).to_csv(folder / f"{name}.csv", index=False)


def big(mb: int, code: Path) -> dict[str, str]:
    """Ingest the big folder with the `healthscore` command of checkout `code`."""
    folder = BIG / f"usage_{mb}mb"
    if not (folder / "accounts.csv").exists():
        _child(_write_big, folder, mb)
    db = BIG / "warehouse.duckdb"
    for leftover in (db, Path(f"{db}.wal")):
        leftover.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONHASHSEED": "0"}
    cli = Path(sys.executable).with_name("healthscore")
    proc = subprocess.run(["/usr/bin/time", "-v", str(cli), "ingest", str(folder),
                           "--warehouse", str(db), "--json"],
                          cwd=code, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"ingest failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    stats = {}
    for line in proc.stderr.splitlines():
        key, _, value = line.strip().partition(": ")
        stats[key] = value
    doc = json.loads(proc.stdout)
    rows = {n: t["rows_loaded"] for n, t in doc.get("tables", {}).items()}
    for leftover in (db, Path(f"{db}.wal")):
        leftover.unlink(missing_ok=True)
    return {"csv_mb": f"{(folder / 'usage_events.csv').stat().st_size / 1e6:,.0f}",
            "wall": stats.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "?"),
            "peak_mb": f"{int(stats['Maximum resident set size (kbytes)']) / 1024:,.0f}",
            "rows": f"{sum(rows.values()):,}", "usage_rows": f"{rows.get('usage_events', 0):,}"}


def _seconds(wall: str) -> float:
    """`/usr/bin/time`'s wall clock (h:mm:ss or m:ss.ss) in seconds."""
    total = 0.0
    for part in wall.split(":"):
        total = total * 60 + float(part)
    return total


def compare(mb: int, other: Path, this: Path, rounds: int) -> int:
    """Alternate `rounds` ingests of each checkout on the big folder; print each and medians."""
    import statistics

    from rich.progress import Progress

    console = Console()
    runs: list[dict[str, str]] = []
    order = [(other, "other"), (this, "this")] * rounds
    with Progress(console=console) as bar:
        task = bar.add_task(f"ingesting a {mb} MB usage CSV, alternately", total=len(order))
        for code, which in order:
            load = os.getloadavg()[0]
            start = datetime.now(UTC)
            r = big(mb, code)
            runs.append({**r, "which": which, "code": str(code), "start": f"{start:%H:%M}",
                         "load": f"{load:.1f}-{os.getloadavg()[0]:.1f}"})
            bar.advance(task)
    table = Table(title=f"ingest of a {runs[0]['csv_mb']} MB usage-event CSV, alternating")
    for col in ("run", "code", "start (UTC)", "load average", "rows loaded", "wall time",
                "peak RSS MB"):
        table.add_column(col, justify="left" if col in ("code",) else "right")
    for i, r in enumerate(runs, 1):
        table.add_row(str(i), r["code"], r["start"], r["load"], r["rows"], r["wall"],
                      r["peak_mb"])
    for which, code in (("other", other), ("this", this)):
        mine = [r for r in runs if r["which"] == which]
        wall = statistics.median(_seconds(r["wall"]) for r in mine)
        peak = statistics.median(float(r["peak_mb"].replace(",", "")) for r in mine)
        table.add_row("median", str(code), "", "", mine[0]["rows"], f"{wall:.1f} s",
                      f"{peak:,.0f}")
    console.print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true",
                        help="ingest a ~500 MB usage-event CSV with `healthscore ingest`")
    parser.add_argument("--mb", type=int, default=500, help="size of the big usage CSV")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="checkout whose `healthscore ingest` runs the big bench")
    parser.add_argument("--compare", type=Path, default=None,
                        help="with --big: alternate runs of this checkout and of --code")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each with --compare")
    parser.add_argument("--small", action="store_true", help="300 accounts x 365 days")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--fresh", action="store_true", help="regenerate the worlds")
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV copy of the world")
    args = parser.parse_args(argv)
    if args.big and args.compare is not None:
        return compare(args.mb, args.compare.resolve(), args.code.resolve(), args.rounds)
    if args.big:
        console = Console()
        with console.status(f"ingesting a {args.mb} MB usage CSV with {args.code}"):
            r = big(args.mb, args.code.resolve())
        table = Table(title=f"ingest of a {r['csv_mb']} MB usage-event CSV ({args.code})")
        for col in ("usage CSV MB", "usage rows", "rows loaded", "wall time", "peak RSS MB"):
            table.add_column(col, justify="right")
        table.add_row(r["csv_mb"], r["usage_rows"], r["rows"], r["wall"], r["peak_mb"])
        console.print(table)
        return 0
    n = args.accounts or (300 if args.small else 1500)
    days = args.days or (365 if args.small else 730)
    OUT.mkdir(parents=True, exist_ok=True)
    console = Console()

    table = Table(title=f"ingest: generated world {n:,} accounts x {days} days, and RavenStack")
    for col in ("input", "rows loaded", "usage rows", "seconds", "rows/s", "peak MB",
                "problem rows"):
        table.add_column(col, justify="left" if col == "input" else "right")
    runs = [(f"world, parquet ({n:,} x {days})", world(n, days, "parquet", args.fresh), None)]
    if not args.no_csv:
        runs.append((f"world, csv ({n:,} x {days})", world(n, days, "csv", args.fresh), None))
    runs.append(("RavenStack + mapping", RAVENSTACK, "ravenstack"))
    for label, folder, mapping in runs:
        with console.status(f"ingesting {label}"):
            r = measure(folder, mapping)
        table.add_row(label, f"{r['rows']:,}", f"{r['usage_rows']:,}", f"{r['seconds']:.1f}",
                      f"{r['rows'] / r['seconds']:,.0f}", f"{r['peak_mb']:,.0f}",
                      f"{r['problems']:,}")
    (OUT / "ingest_bench.duckdb").unlink(missing_ok=True)
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
