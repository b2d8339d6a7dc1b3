"""`healthscore portfolio value|rfm|lifecycle` and `healthscore anomalies` through the real
command line, and the daily `healthscore score` job recording the journey and the anomalies."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def config(world_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("portfolio_cli")
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump({"paths": {
        "warehouse": str(world_root / "warehouse.duckdb"),
        "models_dir": str(world_root / "models"),
        "store_url": f"sqlite:///{out / 'scores.db'}"}}))
    return path


def run(config, *args: str) -> str:
    from healthscore.cli import app

    result = CliRunner().invoke(app, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_portfolio_views_as_json(config):
    value = json.loads(run(config, "portfolio", "value", "--json", "--as-of", "2025-01-15"))
    assert value["asOf"] == "2025-01-15" and value["total"] > 50
    assert {"tier", "tier_reason", "segment", "classes"} <= set(value["items"][0])
    rfm = json.loads(run(config, "portfolio", "rfm", "--json", "--as-of", "2025-01-15"))
    assert rfm["total"] == value["total"] and rfm["items"][0]["rfm"]
    table = run(config, "portfolio", "lifecycle", "--as-of", "2025-01-15")
    assert "Lifecycle stages" in table


def test_cli_daily_job_records_the_journey_and_anomalies(config):
    for day in ("2025-01-14", "2025-01-15"):
        out = " ".join(run(config, "score", "--as-of", day).split())
        assert "stage changes recorded" in out and "usage anomalies:" in out
    stages = json.loads(run(config, "portfolio", "lifecycle", "--json", "--as-of",
                            "2025-01-15"))
    account = stages["items"][0]["account_id"]
    one = json.loads(run(config, "portfolio", "lifecycle", "--account", account, "--json",
                         "--as-of", "2025-01-15"))
    assert one["journey"][0]["asOf"] == "2025-01-14" and one["journey"][0]["from"] is None
    assert one["current"]["stage"] == stages["items"][0]["stage"]
    found = json.loads(run(config, "anomalies", "--json", "--as-of", "2025-01-15"))
    stored = json.loads(run(config, "anomalies", "--stored", "--json", "--as-of",
                            "2025-01-15"))
    assert stored["total"] == found["total"]
    for row in found["items"]:
        assert row["direction"] in ("drop", "spike") and row["expected"] >= 0
