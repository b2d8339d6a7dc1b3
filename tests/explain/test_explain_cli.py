"""`healthscore explain ACCOUNT_ID`: the health summary extended with the models' view in
Markdown, or the HealthAnalysis as JSON, through the real command line."""

from __future__ import annotations

import re

import pytest
import yaml
from typer.testing import CliRunner

from serving.schemas.explanation import HealthAnalysis
from tests.support.explain_fixtures import AS_OF, population_of

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("explain")]


@pytest.fixture(scope="module")
def account(explain_world) -> str:
    return population_of(explain_world).pick()


@pytest.fixture(scope="module")
def config(explain_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain_cli")
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump({"paths": {
        "warehouse": str(explain_world.warehouse),
        "models_dir": str(explain_world.models_dir),
        "store_url": f"sqlite:///{out / 'scores.db'}",
    }}))
    return path


def run(config, *args: str, code: int = 0) -> str:
    from healthscore.cli import app
    from serving.explain_cli import register

    if "explain" not in {c.name for c in app.registered_commands}:
        register(app)  # until the lead adds the one line to healthscore/cli.py
    result = CliRunner().invoke(app, ["--config", str(config), "explain", *args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def test_markdown_is_the_health_summary_then_the_model_sections(config, account):
    text = run(config, account, "--as-of", str(AS_OF.date()))
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        headings[0], "### Risk Flags", "### Factors", "### Inputs Used", "### Model Outlook",
        "### Model Factors", "### Peer Benchmark", "### What Would Help", "### Rules and Model",
    ] + headings[9:]
    assert headings[0].startswith("## Health: ")
    for horizon in (30, 60, 90):
        assert re.search(rf"^- Churn within {horizon} days: \d+%", text, re.M)
        assert re.search(rf"^- Expansion within {horizon} days: \d+%", text, re.M)
    factors = text.split("### Model Factors")[1].split("### Peer Benchmark")[0]
    assert "**Churn within 90 days**" in factors and "**Expansion within 90 days**" in factors
    assert re.search(r"^- #\d+ .+ — (raises|lowers) churn$", factors, re.M)
    assert "percentile" in text.split("### Peer Benchmark")[1]


def test_json_is_the_health_analysis(config, account):
    out = run(config, account, "--as-of", str(AS_OF.date()), "--format", "json")
    analysis = HealthAnalysis.model_validate_json(out)
    assert analysis.account_id == account and analysis.as_of == AS_OF.date()
    assert set(analysis.probabilities) == {f"{t}_{h}d" for t in ("churn", "expansion")
                                           for h in (30, 60, 90)}
    assert analysis.peers is not None and analysis.peers.group == "enterprise"
    assert analysis.name


def test_an_unknown_account_is_a_clear_error(config):
    out = run(config, "nope", "--as-of", str(AS_OF.date()), code=2)
    assert "no account 'nope'" in out


def test_without_trained_models_the_rules_still_explain(config, account, tmp_path):
    other = tmp_path / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["paths"]["models_dir"] = str(tmp_path / "no_models")
    other.write_text(yaml.safe_dump(data))
    text = run(other, account, "--as-of", str(AS_OF.date()))
    assert "### Model Outlook\nNo trained models" in text
    assert "### Model Factors" not in text
