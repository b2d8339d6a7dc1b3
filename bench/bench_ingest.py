"""Bench: validated ingestion of a generated world, Parquet and CSV, and of RavenStack.

Ingest has no target of its own; this measures where the time and memory go so the
demo (1,500 accounts x 730 days) and the 10,000-account feature bench stay practical: seconds,
rows per second and the peak memory of the ingest itself.

    .venv/bin/python bench/bench_ingest.py            # 1,500 accounts x 730 days (the demo)
    .venv/bin/python bench/bench_ingest.py --small    # 300 accounts x 365 days
    .venv/bin/python bench/bench_ingest.py --accounts 10000 --no-csv

Worlds are generated into bench/out/ingest_* by a child process and reused (--fresh rebuilds);
each ingest also runs in its own child process, so the peak memory reported is the ingest's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="300 accounts x 365 days")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--fresh", action="store_true", help="regenerate the worlds")
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV copy of the world")
    args = parser.parse_args(argv)
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
