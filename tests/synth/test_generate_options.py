"""`healthscore generate` declares worlds of other shapes: customer event types (the example
preset or a YAML file), billing terms, and events-only sources; bad declarations are refused
naming the file, entry and field."""

from __future__ import annotations

import re
from datetime import date

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract.tables import TABLES
from features.synth.generate import VOICE_TABLES, generate_world
from features.synth.params import EXAMPLE_EVENT_TYPES, MONTH

ARGS = ["generate", "--accounts", "60", "--start", "2024-01-01", "--days", "90", "--seed", "4",
        "--format", "csv"]


def _run(*extra: str):
    from healthscore.cli import app

    result = CliRunner().invoke(app, [*ARGS, *extra], env={"COLUMNS": "400"})
    # An error box: its text on one line.
    result.text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    return result


def test_the_example_event_types_billed_monthly_with_events_only(tmp_path):
    out = tmp_path / "raw"
    result = _run("--out", str(out), "--event-types", "example", "--billing", "monthly",
                  "--events-only")
    assert result.exit_code == 0, result.output
    assert {p.stem for p in out.glob("*.csv")} == (
        {t.name for t in TABLES} - set(VOICE_TABLES)) | {"truth_events"}
    events = set(pd.read_csv(out / "usage_events.csv", usecols=["event"])["event"])
    assert {t.name for t in EXAMPLE_EVENT_TYPES} <= events
    truth = pd.read_parquet(out / "truth.parquet", columns=["term"])
    assert (truth["term"] == MONTH).all()
    assert "billing.downgrade_viewed (churn effect +1.5)" in result.output


def test_event_types_from_a_yaml_file(tmp_path):
    spec = tmp_path / "types.yaml"
    spec.write_text("event_types:\n"
                    "  - {name: export_data, churn_effect: 1.2, rate: 2}\n"
                    "  - {name: cancel_page_view, churn_effect: 0.8}\n"
                    "  - {name: sso_enabled, churn_effect: -1.0, timescale: 0}\n")
    out = tmp_path / "raw"
    result = _run("--out", str(out), "--event-types", str(spec))
    assert result.exit_code == 0, result.output
    events = set(pd.read_csv(out / "usage_events.csv", usecols=["event"])["event"])
    assert {"export_data", "cancel_page_view", "sso_enabled"} <= events
    assert {"tickets.csv", "surveys.csv", "touchpoints.csv"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize(("text", "message"), [
    ("- {name: x, churn_effect: high}\n", "event type 1, field 'churn_effect'"),
    ("- {name: x, churn_effect: 1, colour: red}\n", "unknown field(s) colour"),
    ("- {churn_effect: 1}\n", "field 'name' is missing"),
    ("- {name: app.login, churn_effect: 1}\n", "event type 1"),
    ("- {name: x}\n- {name: x}\n", "declared twice: x"),
    ("name: x\n", "expected a list"),
])
def test_bad_event_type_files_are_refused_naming_the_entry_and_field(tmp_path, text, message):
    spec = tmp_path / "types.yaml"
    spec.write_text(text)
    result = _run("--out", str(tmp_path / "raw"), "--event-types", str(spec))
    assert result.exit_code != 0
    assert message in result.text and "types.yaml" in result.text
    assert not (tmp_path / "raw").exists(), "nothing is written"


def test_unknown_presets_and_billing_are_refused(tmp_path):
    assert "neither a preset" in _run("--out", str(tmp_path), "--event-types", "nope").text
    result = _run("--out", str(tmp_path), "--billing", "weekly")
    assert result.exit_code != 0 and "weekly" in result.text


def test_annual_billing_has_no_monthly_plan_and_mixed_is_the_default():
    start = date(2024, 1, 1)
    annual = generate_world(200, start, 60, seed=5, billing="annual")
    mixed = generate_world(200, start, 60, seed=5)
    assert (annual.truth["term"] >= 365).all()
    assert (mixed.truth["term"] == MONTH).any()
    # The same accounts either way, but for their terms.
    pd.testing.assert_frame_equal(annual.tables["accounts"][["account_id", "segment", "region"]],
                                  mixed.tables["accounts"][["account_id", "segment", "region"]])
