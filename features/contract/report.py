"""Rich rendering of an ingest report for the command line: row counts and problems.

Output layer only: it formats `features.contract.ingest.IngestReport` and never decides anything.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from features.contract.ingest import FOLDER, IngestReport
from features.contract.validate import Problem

_ACTION_STYLE = {"refused": "bold red", "dropped": "yellow", "blanked": "yellow",
                 "kept": "cyan", "ignored": "dim"}


def summary_table(report: IngestReport) -> Table:
    """One row per contract table: its files, rows read and loaded, rows with problems."""
    table = Table(title=f"ingest {report.data_dir}", title_justify="left")
    table.add_column("table")
    table.add_column("file(s)")
    table.add_column("rows read", justify="right")
    table.add_column("rows loaded", justify="right")
    table.add_column("problem rows", justify="right")
    flagged: dict[str, int] = {}
    for p in report.problems:
        flagged[p.table] = flagged.get(p.table, 0) + p.count
    for name, t in report.tables.items():
        loaded = f"{t.rows_loaded:,}" if report.loaded else "-"
        table.add_row(name, ", ".join(t.files), f"{t.rows_read:,}", loaded,
                      f"{flagged.get(name, 0):,}" if flagged.get(name) else "")
    for name in report.not_connected:
        table.add_row(Text(name, style="dim"), Text("not connected", style="dim"), "", "", "")
    return table


def _examples(p: Problem) -> str:
    parts = []
    for e in p.examples:
        where = e.file + (f":{e.row}" if e.row is not None else "")
        parts.append(where + (f" {e.value!r}" if e.value is not None else ""))
    more = p.count - len(p.examples)
    if more > 0 and p.examples:
        parts.append(f"(+{more:,} more)")
    return "\n".join(parts)


def problems_table(problems: list[Problem]) -> Table:
    """Counts per (table, column, problem) with the first examples (file:row value)."""
    table = Table(title="problems (file:row is the line in the file)", title_justify="left")
    for col, justify in (("table", "left"), ("column", "left"), ("problem", "left"),
                         ("action", "left"), ("rows", "right"), ("examples", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for p in sorted(problems, key=lambda p: (not p.fatal, p.table == FOLDER)):
        table.add_row(p.table, p.column, p.problem,
                      Text(p.action, style=_ACTION_STYLE.get(p.action, "")), f"{p.count:,}",
                      _examples(p))
    return table


def render_report(report: IngestReport) -> RenderableType:
    parts: list[RenderableType] = [summary_table(report)]
    if report.problems:
        parts.append(problems_table(report.problems))
    if report.refused:
        parts.append(Text("refused: fatal problems above; the warehouse was not changed",
                          style="bold red"))
    else:
        parts.append(Text(f"loaded into {report.warehouse} in {report.seconds:.1f}s",
                          style="green"))
    return Group(*parts)


def print_report(report: IngestReport, console: Console | None = None) -> None:
    (console or Console()).print(render_report(report))
