"""The layers hold: healthscore (the composition root) > training | serving > scoring > features.

The contracts live in pyproject.toml ([tool.importlinter]); this runs them as CI does, so a change
that makes serving import fitting code, training import serving, or two modules import each other
fails the suite with import-linter's own report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout

