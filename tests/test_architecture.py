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



def test_no_serving_module_is_longer_than_one_sitting() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "serving").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these by what they serve: {long}"
