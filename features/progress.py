"""The progress bar every long command shows: rich, fed by (step, fraction done) callbacks.

Library functions report progress through a plain `Callable[[str, float], None]` and never
import rich; the commands of every package turn those calls into one bar line per step here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(description: str, *, console: Any = None, transient: bool = False
                 ) -> Iterator[Callable[[str, float], None]]:
    """A rich progress bar fed by (step, fraction done) callbacks, one line per step."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                  console=console, transient=transient) as bar:
        tasks: dict[str, Any] = {}

        def report(step: str, done: float) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(f"{description}: {step}", total=1.0)
            bar.update(tasks[step], completed=min(1.0, max(0.0, done)))

        yield report
