"""Bench: the synthetic world generator, end to end (generate, then write parquet).

Target: 10,000 accounts x 730 days in under 2 minutes on 2 cores, written to parquet,
with 15-25 million usage rows. Prints a rich table with the time of each generation stage (from
the progress callback), the write, the rows of each table and the peak memory (ru_maxrss).

    .venv/bin/python bench/bench_generate.py            # 10,000 accounts x 730 days
    .venv/bin/python bench/bench_generate.py --small    # 1,000 accounts, a quick check

Files go to bench/out/generate/ (gitignored) and are left there for a look.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.synth.generate import generate_world, write_world  # noqa: E402

OUT = Path(__file__).parent / "out" / "generate"
START = date(2024, 1, 1)
DAYS = 730
SEED = 7
TARGET_SECONDS = 120.0
USAGE_ROWS = (15e6, 25e6)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n_accounts: int, days: int, console: Console) -> Table:
    stages: list[tuple[str, float, float]] = []  # (stage, seconds since start, peak MB)
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("generate", total=1.0)

        def on_stage(stage: str, done: float) -> None:
            if not stages or stages[-1][0] != stage:
                stages.append((stage, time.perf_counter() - t0, peak_mb()))
            bar.update(task, completed=done, description=f"generate: {stage}")

        world = generate_world(n_accounts, START, days, SEED, progress=on_stage)
        generated = time.perf_counter() - t0
        if OUT.exists():
            shutil.rmtree(OUT)
        task = bar.add_task("write parquet", total=1.0)
        t1 = time.perf_counter()
        paths = write_world(world, OUT, "parquet",
                            progress=lambda name, done: bar.update(
                                task, completed=done, description=f"write: {name}"))
        written = time.perf_counter() - t1

    total = generated + written
    table = Table(title=f"generate: {n_accounts:,} accounts x {days} days, seed {SEED} "
                        f"(target < {TARGET_SECONDS:.0f} s for 10,000 x 730)")
    table.add_column("step")
    table.add_column("rows", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("peak MB", justify="right")
    # Each stage runs from its first progress report to the next stage's.
    marks = stages + [("end", generated, peak_mb())]
    for (stage, at, _), (_, nxt, mb) in zip(marks[:-1], marks[1:], strict=True):
        if stage != "done":
            table.add_row(f"  {stage}", "", f"{nxt - at:.1f}", f"{mb:,.0f}")
    rows = sum(len(f) for f in world.tables.values())
    table.add_row("generate_world", f"{rows:,}", f"{generated:.1f}", f"{peak_mb():,.0f}")
    table.add_row("write_world (parquet)", f"{rows + len(world.truth):,}", f"{written:.1f}",
                  f"{peak_mb():,.0f}")
    table.add_row("[bold]total[/bold]", "", f"[bold]{total:.1f}[/bold]", f"{peak_mb():,.0f}")
    for name, frame in world.tables.items():
        table.add_row(f"  rows: {name}", f"{len(frame):,}", "", "")
    table.add_row("  rows: truth", f"{len(world.truth):,}", "", "")
    size = sum(p.stat().st_size for p in paths.values()) / 1e6
    table.add_row("  files on disk (MB)", f"{size:,.0f}", "", "")
    usage = len(world.tables["usage_events"])
    if n_accounts == 10_000 and days == DAYS:
        ok_time = total < TARGET_SECONDS
        ok_rows = USAGE_ROWS[0] <= usage <= USAGE_ROWS[1]
        table.caption = (f"time {'PASS' if ok_time else 'FAIL'} ({total:.1f} s), usage rows "
                         f"{'PASS' if ok_rows else 'FAIL'} ({usage / 1e6:.1f} M in 15-25 M)")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 accounts: a quick check")
    parser.add_argument("--accounts", type=int, default=None, help="override the account count")
    args = parser.parse_args(argv)
    n = args.accounts or (1_000 if args.small else 10_000)
    console = Console()
    console.print(run(n, DAYS, console))


if __name__ == "__main__":
    main()
