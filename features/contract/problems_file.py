"""The problems of an ingest as a CSV file beside the warehouse, for people and scripts.

A terminal table has to fit the screen and a log has to stay readable; neither is where one
looks up every bad row or feeds another program. `<warehouse stem>.problems.csv` (for
`data/warehouse.duckdb`: `data/warehouse.problems.csv`) holds one line per bad row of every
problem, with the columns of `FIELDS` (the fields of `features.contract.validate.Problem` and of
its rows): `count` is how many rows the problem has in all; `row` and `value` are empty for
problems about a whole file or table. Every row is listed up to `ingest.problems_file_rows` per
problem (a last line says how many more there are); a problem without rows still gets one
line. The printed report shows only the first `ingest.max_examples` of them.

Every ingest that ends in a report (loaded or refused) rewrites the file; one that stops with
an error instead (a missing folder, a mapping that cannot run) leaves it as it was. An ingest
without any problem removes the file rather than write an empty one, so a file beside the
warehouse always means problems of the latest report. It is written to a temporary file and
renamed, so a reader never sees half of it.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from features.contract.validate import Problem

log = logging.getLogger(__name__)

FIELDS = ("table", "column", "problem", "action", "count", "file", "row", "value")


def problems_path(warehouse: Path) -> Path:
    """Where the problems of an ingest into `warehouse` go: beside it, named after it."""
    return warehouse.with_name(f"{warehouse.stem}.problems.csv")


def problem_records(problems: Iterable[Problem]) -> list[dict[str, str | int | None]]:
    """One flat record per example (per problem when it has none), in the order given."""
    records: list[dict[str, str | int | None]] = []
    for p in problems:
        head = {"table": p.table, "column": p.column, "problem": p.problem,
                "action": p.action, "count": p.count}
        listed = p.rows or p.examples
        if not listed:
            records.append({**head, "file": None, "row": None, "value": None})
        for e in listed:
            records.append({**head, "file": e.file, "row": e.row, "value": e.value})
        if p.rows and p.count > len(p.rows) and p.rows[0].row is not None:
            records.append({**head, "file": None, "row": None,
                            "value": f"... {p.count - len(p.rows)} more rows not listed "
                                     "(ingest.problems_file_rows)"})
    return records


def write_problems(warehouse: Path, problems: list[Problem]) -> Path | None:
    """Write the problems file of `warehouse` (or remove it when there are no problems).

    Returns the file written, or None when there was nothing to write or it could not be
    written: a report must still reach the reader when the warehouse folder is read-only.
    """
    path = problems_path(warehouse)
    try:
        if not problems:
            path.unlink(missing_ok=True)
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows(problem_records(problems))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("problems file %s not written: %s", path, exc)
        return None
    return path
