"""The ingest report where it is read: a log file (`healthscore ingest DIR > log 2>&1`), the
problems file beside the warehouse, `--json` for programs and a narrow terminal. Each names every
problem's file:row, column and value whole."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from features.contract.ingest import IngestRefused, ingest_folder
from features.contract.report import problem_lines, problems_table, report_document
from features.contract.settings import IngestConfig
from features.contract.validate import Example, Problem
from tests.support.ingest_frames import NOW, good_tables, write_folder

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN = "no-such-account-whose-id-is-longer-than-a-table-cell"
BAD = {  # (file:row, column) -> the value as written
    ("usage_events.csv:3", "ts"): "2024-02-30 10:00:00",
    ("usage_events.csv:4", "account_id"): UNKNOWN,
    ("usage_events.csv:5", "quantity"): "-2",
}


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    tables = good_tables()
    usage = tables["usage_events"]
    usage.loc[1, "ts"] = "2024-02-30 10:00:00"  # line 3 of the CSV
    usage.loc[2, "account_id"] = UNKNOWN        # line 4
    usage.loc[3, "quantity"] = -2               # line 5
    return write_folder(tmp_path / "bad", tables, parquet=())


@pytest.fixture
def wh(tmp_path: Path) -> Path:
    return tmp_path / "wh" / "warehouse.duckdb"


def _healthscore(*args: str, stdout, stderr) -> int:
    """The real command line, this checkout's code, output wherever the caller sends it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")
           and not k.startswith("HEALTHSCORE_")}
    env["PYTHONPATH"] = str(ROOT)
    code = "import sys; from healthscore.cli import app; sys.exit(app())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          stdout=stdout, stderr=stderr, timeout=120).returncode


def _problems_file_rows(path: Path) -> set[tuple[str, str, str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return {(r["file"] + ":" + r["row"], r["column"], r["value"], r["action"])
                for r in csv.DictReader(f)}


def test_a_log_file_names_every_problem_whole_and_the_problems_file(bad, wh, tmp_path):
    log = tmp_path / "log"
    with log.open("w") as out:
        code = _healthscore("ingest", str(bad), "--warehouse", str(wh),
                            stdout=out, stderr=subprocess.STDOUT)

    text = log.read_text()
    assert code == 1, text
    lines = text.splitlines()
    for (where, column), value in BAD.items():
        assert any(line.startswith(f"{where} column {column} value {value!r}: ")
                   for line in lines), text
    assert "refused" in text and "…" not in text
    problems = wh.with_name("warehouse.problems.csv")
    assert f"every problem: {problems}" in lines
    assert _problems_file_rows(problems) == {(w, c, v, "refused") for (w, c), v in BAD.items()}
    assert not wh.exists()


def test_json_is_one_document_on_stdout_with_every_problem(bad, wh, tmp_path):
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        code = _healthscore("ingest", str(bad), "--warehouse", str(wh), "--json",
                            stdout=stdout, stderr=stderr)

    assert code == 1, err.read_text()
    doc = json.loads(out.read_text())
    assert (doc["ok"], doc["status"]) == (False, "refused")
    assert doc["tables"]["usage_events"] == {"files": ["usage_events.csv"], "rows_read": 5,
                                             "rows_loaded": None}
    found = {(f"{e['file']}:{e['row']}", p["column"]): e["value"]
             for p in doc["problems"] for e in p["examples"]}
    assert found == BAD
    assert {p["action"] for p in doc["problems"]} == {"refused"}
    assert doc["problems_file"] == str(wh.with_name("warehouse.problems.csv"))
    assert Path(doc["problems_file"]).exists()


def test_a_clean_ingest_removes_the_problems_file_of_an_earlier_one(bad, wh, tmp_path):
    with pytest.raises(IngestRefused) as refused:
        ingest_folder(bad, wh, IngestConfig(), now=NOW)
    assert refused.value.report.problems_file.exists()

    good = write_folder(tmp_path / "good", good_tables(), parquet=())
    report = ingest_folder(good, wh, IngestConfig(), now=NOW)

    assert report.problems_file is None
    assert not wh.with_name("warehouse.problems.csv").exists()
    doc = report_document(report)
    assert (doc["ok"], doc["status"], doc["problems"], doc["problems_file"]) == \
        (True, "loaded", [], None)
    assert doc["tables"]["usage_events"]["rows_loaded"] == 5


def test_a_narrow_terminal_folds_cells_instead_of_cutting_them():
    problems = [Problem("usage_events", column, "a problem", "refused", 1,
                        [Example(where.split(":")[0], int(where.split(":")[1]), value)])
                for (where, column), value in BAD.items()]
    problems.append(Problem("tickets", "priority", "not one of low, normal, high, urgent",
                            "refused", 7, [Example("tickets.csv", 2, "[b]P1[/b]")]))

    screen = StringIO()
    Console(file=screen, width=60, force_terminal=True, color_system=None).print(
        problems_table(problems))

    rows = [line.split("│") for line in screen.getvalue().splitlines()]
    examples = [cells[-2].strip() for cells in rows if len(cells) > 2]
    for (where, _), value in BAD.items():
        assert where in examples
        assert repr(value) in "".join(examples)  # whole, if folded onto two lines
    assert {"'[b]P1[/b]'", "(+6 more)"} <= set(examples)
    assert "…" not in screen.getvalue()
    assert problem_lines(problems[-1]) == [
        "tickets.csv:2 column priority value '[b]P1[/b]': not one of low, normal, high, urgent "
        "(action: refused, table: tickets)",
        "... 6 more rows in column priority: not one of low, normal, high, urgent "
        "(action: refused, table: tickets)"]


def test_the_problems_file_lists_every_bad_row_not_only_the_shown_examples(tmp_path, wh):
    tables = good_tables()
    usage = tables["usage_events"]
    usage["quantity"] = -1  # every row of the file is refused
    folder = write_folder(tmp_path / "neg", tables, parquet=())
    cfg = IngestConfig(max_examples=2, problems_file_rows=4)
    with pytest.raises(IngestRefused) as refused:
        ingest_folder(folder, wh, cfg, now=NOW)
    [negative] = [p for p in refused.value.report.problems if p.column == "quantity"]
    assert negative.count == len(usage) and len(negative.examples) == 2
    with refused.value.report.problems_file.open(newline="", encoding="utf-8") as f:
        lines = [r for r in csv.DictReader(f) if r["column"] == "quantity"]
    assert [r["row"] for r in lines[:4]] == ["2", "3", "4", "5"]
    assert lines[-1]["value"] == f"... {len(usage) - 4} more rows not listed " \
                                 "(ingest.problems_file_rows)"
