"""Faults while writing the warehouse: a read-only warehouse or folder, a full disk. The ingest
stops with one line naming the warehouse and what happened, and the previous warehouse is
unchanged.

Real mechanisms where the machine allows them: a read-only file or folder by its mode, or, for
root (whom modes do not stop), by the immutable attribute (`chattr +i`); a full disk by the
file-size limit of a child process (RLIMIT_FSIZE, which also binds root: writes beyond it fail
with "File too large"). "No space left on device" itself is raised at the DuckDB boundary."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from features.contract import ingest as ingest_module
from features.contract.ingest import WarehouseWriteError, ingest_folder
from features.contract.settings import IngestConfig
from tests.support.ingest_frames import NOW, good_tables, table_contents, write_folder

CFG = IngestConfig()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A warehouse loaded from a good folder, and a second good folder to ingest over it."""
    wh = tmp_path / "wh" / "warehouse.duckdb"
    ingest_folder(write_folder(tmp_path / "first", good_tables()), wh, CFG, now=NOW)
    tables = good_tables()
    del tables["churn_events"]  # a successful second load would drop it
    return wh, write_folder(tmp_path / "second", tables), table_contents(wh)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (file or folder) read-only for this process, root included."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"root, and no immutable attribute here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _one_line(exc: BaseException, wh: Path) -> str:
    text = str(exc)
    assert "\n" not in text and str(wh) in text
    return text


def test_a_read_only_warehouse_file_stops_the_ingest_and_stays_as_it_was(loaded):
    wh, second, before = loaded
    with read_only(wh), pytest.raises(WarehouseWriteError) as info:
        ingest_folder(second, wh, CFG, now=NOW)
    assert "read-only" in _one_line(info.value, wh)
    assert table_contents(wh) == before


def test_a_read_only_warehouse_folder_stops_the_ingest_and_stays_as_it_was(loaded):
    wh, second, before = loaded
    with read_only(wh.parent), pytest.raises(WarehouseWriteError) as info:
        ingest_folder(second, wh, CFG, now=NOW)
    _one_line(info.value, wh)
    assert table_contents(wh) == before
    assert [p.name for p in wh.parent.iterdir() if p.name.startswith(".")] == []


def test_no_space_left_while_writing_is_one_line_and_leaves_the_warehouse(loaded, monkeypatch):
    wh, second, before = loaded

    def full(con, spec, staged):
        raise duckdb.IOException(f'Could not write file "{wh}": No space left on device')

    monkeypatch.setattr(ingest_module, "_write_table", full)
    with pytest.raises(WarehouseWriteError) as info:
        ingest_folder(second, wh, CFG, now=NOW)
    assert "No space left on device" in _one_line(info.value, wh)
    assert table_contents(wh) == before
    assert [p.name for p in wh.parent.iterdir() if p.name.startswith(".")] == []


_LIMITED_INGEST = """
import resource, signal, sys
from pathlib import Path
from features.contract.ingest import ingest_folder
from features.contract.settings import IngestConfig
from tests.support.ingest_frames import NOW
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails, not the process
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
ingest_folder(Path(sys.argv[1]), Path(sys.argv[2]), IngestConfig(), now=NOW)
"""


def test_a_full_disk_during_the_load_is_one_line_and_leaves_the_warehouse(tmp_path, loaded):
    wh, _, before = loaded
    generate = pytest.importorskip("features.synth.generate")
    world = generate.generate_world(60, NOW.date().replace(year=2024), 120, seed=5)
    bigger = tmp_path / "world"
    generate.write_world(world, bigger)
    limit = 64 * 1024  # far less than the new tables: no block of them can be written
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _LIMITED_INGEST, str(bigger), str(wh),
                           str(limit)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("features.contract.ingest.WarehouseWriteError: cannot write the "
                           f"warehouse {wh}: "), done.stderr[-2000:]
    assert "File too large" in last
    assert table_contents(wh) == before


def test_cli_ingest_into_a_read_only_warehouse_says_so_in_one_line(loaded):
    from typer.testing import CliRunner

    from healthscore.cli import app

    wh, second, before = loaded
    with read_only(wh):
        result = CliRunner().invoke(app, ["ingest", str(second), "--warehouse", str(wh)],
                                    env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert f"cannot write the warehouse {wh}: the file is read-only" in result.output
    assert table_contents(wh) == before
