"""The settings file the whole suite runs with (tests/settings.yaml: a small LightGBM search).
tests/conftest.py points HEALTHSCORE_CONFIG at it; a test that passes its own `--config` file
writes it with `write_config`, so that its command trains as the rest of the suite does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SUITE_SETTINGS = Path(__file__).resolve().parents[1] / "settings.yaml"


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    """A `--config` file at `path`: the suite's settings, each section updated by `sections`."""
    data = yaml.safe_load(SUITE_SETTINGS.read_text()) or {}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path.write_text(yaml.safe_dump(data))
    return path
