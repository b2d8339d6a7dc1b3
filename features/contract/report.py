"""An ingest report for the command line: a rich table on a terminal, plain lines elsewhere, or
one JSON document.

Output layer only: it formats `features.contract.ingest.IngestReport` and never decides anything.
Off a terminal (a log file, CI, cron) rich would wrap tables at 80 columns and cut cells, so
there every problem example is one plain line that names file:row, column and value whole. On a
terminal the tables fold long cells onto more lines instead of cutting them. Text from the input
(file names, values) is never read as rich markup, so a value like "[b]" shows as it is.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from features.contract.ingest import FOLDER, IngestReport
from features.contract.validate import Example, Problem

_ACTION_STYLE = {"refused": "bold red", "dropped": "yellow", "blanked": "yellow",
                 "kept": "cyan", "ignored": "dim"}
_PROBLEMS_TITLE = "problems (file:row is the line in the file)"


def ordered(problems: list[Problem]) -> list[Problem]:
    """Fatal problems first, problems about the folder itself last."""
    return sorted(problems, key=lambda p: (not p.fatal, p.table == FOLDER))


def _flagged(report: IngestReport) -> dict[str, int]:
    flagged: dict[str, int] = {}
    for p in report.problems:
        flagged[p.table] = flagged.get(p.table, 0) + p.count
    return flagged


def _outcome(report: IngestReport) -> str:
    if report.refused:
        return "refused: fatal problems above; the warehouse was not changed"
    return f"loaded into {report.warehouse} in {report.seconds:.1f}s"


def _where(e: Example) -> str:
    return e.file + (f":{e.row}" if e.row is not None else "")


# --- a terminal ------------------------------------------------------------------------------
def summary_table(report: IngestReport) -> Table:
    """One row per contract table: its files, rows read and loaded, rows with problems."""
    table = Table(title=Text(f"ingest {report.data_dir}"), title_justify="left")
    table.add_column("table", overflow="fold")
    table.add_column("file(s)", overflow="fold")
    for col in ("rows read", "rows loaded", "problem rows"):
        table.add_column(col, justify="right", overflow="fold")
    flagged = _flagged(report)
    for name, t in report.tables.items():
        loaded = f"{t.rows_loaded:,}" if report.loaded else "-"
        table.add_row(name, Text(", ".join(t.files)), f"{t.rows_read:,}", loaded,
                      f"{flagged.get(name, 0):,}" if flagged.get(name) else "")
    for name in report.not_connected:
        table.add_row(Text(name, style="dim"), Text("not connected", style="dim"), "", "", "")
    return table


_EXAMPLES_WIDTH = 40
"""Widest the examples column asks for; longer values fold within it."""


def _example_lines(p: Problem) -> list[str]:
    """file:row on one line, the value under it: each stays whole in a narrow column."""
    lines = []
    for e in p.examples:
        lines.append(_where(e))
        if e.value is not None:
            lines.append(repr(e.value))
    more = p.count - len(p.examples)
    if more > 0 and p.examples:
        lines.append(f"(+{more:,} more)")
    return lines


def problems_table(problems: list[Problem]) -> Table:
    """Counts per (table, column, problem) with the first examples (file:row, value).

    The examples column is as wide as its longest line (up to `_EXAMPLES_WIDTH`) and the other
    columns give way first; every column folds rather than cuts, so even a narrow terminal shows
    each file:row and value whole, if on more lines.
    """
    examples = {id(p): _example_lines(p) for p in problems}
    longest = max((len(line) for lines in examples.values() for line in lines), default=0)
    table = Table(title=_PROBLEMS_TITLE, title_justify="left")
    for col, justify in (("table", "left"), ("column", "left"), ("problem", "left"),
                         ("action", "left"), ("rows", "right")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    table.add_column("examples", overflow="fold",
                     width=max(len("examples"), min(longest, _EXAMPLES_WIDTH)))
    for p in ordered(problems):
        table.add_row(Text(p.table), Text(p.column), Text(p.problem),
                      Text(p.action, style=_ACTION_STYLE.get(p.action, "")), f"{p.count:,}",
                      Text("\n".join(examples[id(p)])))
    return table


def render_report(report: IngestReport) -> RenderableType:
    parts: list[RenderableType] = [summary_table(report)]
    if report.problems:
        parts.append(problems_table(report.problems))
    parts.append(Text(_outcome(report), style="bold red" if report.refused else "green"))
    if report.problems_file is not None:
        parts.append(Text(f"every problem: {report.problems_file}", overflow="fold"))
    return Group(*parts)


# --- a log -----------------------------------------------------------------------------------
def problem_lines(p: Problem) -> list[str]:
    """One line per example, e.g. `usage_events.csv:7 column account_id value 'x': unknown
    account_id (not in accounts) (action: refused, table: usage_events)`."""
    tail = f": {p.problem} (action: {p.action}, table: {p.table})"
    column = f" column {p.column}" if p.column else ""
    lines = [_where(e) + column + (f" value {e.value!r}" if e.value is not None else "") + tail
             for e in p.examples] or [p.table + column + tail]
    more = p.count - len(p.examples)
    if more > 0 and p.examples and all(e.row is not None for e in p.examples):
        lines.append(f"... {more:,} more rows" + (f" in column {p.column}" if p.column else "")
                     + tail)
    return lines


def report_lines(report: IngestReport) -> list[str]:
    """The whole report as plain lines: nothing wraps or is cut, whatever the width."""
    lines = [f"ingest {report.data_dir}"]
    flagged = _flagged(report)
    for name, t in report.tables.items():
        loaded = f"rows loaded {t.rows_loaded:,}" if report.loaded else "not loaded"
        problems = f", rows with problems {flagged[name]:,}" if flagged.get(name) else ""
        lines.append(f"{name}: {', '.join(t.files)}, rows read {t.rows_read:,}, {loaded}"
                     + problems)
    if report.not_connected:
        lines.append(f"not connected: {', '.join(report.not_connected)}")
    if report.problems:
        lines.append(_PROBLEMS_TITLE + ":")
        lines += [line for p in ordered(report.problems) for line in problem_lines(p)]
    lines.append(_outcome(report))
    if report.problems_file is not None:
        lines.append(f"every problem: {report.problems_file}")
    return lines


def print_report(report: IngestReport, console: Console | None = None) -> None:
    """Rich tables on a terminal, plain lines otherwise (see the module docstring)."""
    console = console or Console()
    if console.is_terminal:
        console.print(render_report(report))
        return
    for line in report_lines(report):
        # `out`: no markup, wrapping or cropping, so a value like "[b]" prints as it is.
        console.out(line, highlight=False)


# --- a program -------------------------------------------------------------------------------
def report_document(report: IngestReport) -> dict[str, Any]:
    """What `healthscore ingest --json` prints: the outcome, the tables and every problem with
    all its fields (`rows_loaded` is null when nothing was loaded)."""
    return {
        "ok": report.loaded and not report.refused,
        "status": "loaded" if report.loaded else "refused",
        "data_dir": str(report.data_dir),
        "warehouse": str(report.warehouse),
        "mapping": report.mapping,
        "seconds": round(report.seconds, 3),
        "tables": {name: {"files": list(t.files), "rows_read": t.rows_read,
                          "rows_loaded": t.rows_loaded if report.loaded else None}
                   for name, t in report.tables.items()},
        "not_connected": list(report.not_connected),
        "problems": [{**asdict(p), "fatal": p.fatal} for p in report.problems],
        "problems_file": None if report.problems_file is None else str(report.problems_file),
    }


def error_document(message: str) -> dict[str, Any]:
    """The JSON document of an ingest that could not start (no folder, a bad mapping)."""
    return {"ok": False, "status": "error", "error": message, "tables": {}, "not_connected": [],
            "problems": [], "problems_file": None}


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)
