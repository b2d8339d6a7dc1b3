"""A customer with ten months of history trains with no config file: the horizons that fit are
trained, the others skipped with a note, the backtest shrinks to fit, and the registered models
are refit on every labelled month. Too little history fails with the settings to change and the
history that would do."""

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.contract.ingest import ingest_folder
from features.synth.generate import generate_world, write_world
from healthscore.cli import app
from healthscore.settings import load_settings
from scoring.bundle import load_bundle

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train-short-history")]


def _customer(root: Path, days: int) -> None:
    """A generated customer's export under `root/data/raw`, ingested into the default
    warehouse path (the folder a `healthscore` command runs in)."""
    world = generate_world(200, date(2024, 1, 1), days, seed=3)
    write_world(world, root / "data" / "raw")
    settings = load_settings(paths={"warehouse": str(root / "data" / "warehouse.duckdb")})
    ingest_folder(root / "data" / "raw", settings.paths.warehouse, settings.ingest)


@pytest.fixture(scope="module")
def ten_months(tmp_path_factory):
    root = tmp_path_factory.mktemp("ten-months")
    _customer(root, 305)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = CliRunner().invoke(app, ["train", "--no-register", "--json"])
    return root, result


def test_ten_months_of_monthly_history_train_with_the_defaults(ten_months):
    _, result = ten_months
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {r["model"] for r in payload["metrics"]} == {"churn_30d", "expansion_30d"}
    notes = payload["notes"]
    assert any("churn: 90-day horizon skipped" in n and "--horizons" in n for n in notes)
    assert any("churn: 60-day horizon skipped" in n for n in notes)
    assert any("churn: backtest shrunk" in n for n in notes)
    assert payload["run"]["backtest"]["churn"]["horizons"] == [30]
    assert payload["run"]["backtest"]["churn"]["n_folds"] >= 2


def test_the_registered_model_saw_the_last_labelled_month(ten_months):
    root, _ = ten_months
    bundle = load_bundle(root / "models" / "churn_30d")
    seen = bundle.metadata["trained_on"]
    # data ends 2024-11-01: the last month whose 30-day label is observed is October
    assert seen["last_as_of"] == "2024-10-01"
    assert seen["first_as_of"] == "2024-04-01" and seen["as_of_dates"] == 7
    assert bundle.metadata["calibration"]["fitted_on"] == "out-of-fold"
    if bundle.kind == "lightgbm":
        assert bundle.n_trees == bundle.metadata["selection"]["refit"]["trees"]
    else:  # a baseline beat the trees: it is what was refit and registered
        assert bundle.metadata["trees"] == 0


def test_too_little_history_names_the_settings_and_the_history_needed(tmp_path, monkeypatch):
    _customer(tmp_path, 200)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "--no-register"])
    assert result.exit_code == 1
    msg = " ".join(result.output.split())
    assert "--horizons" in msg and "--as-of-frequency" in msg
    assert "months) of history" in msg
