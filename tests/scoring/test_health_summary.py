"""The health summary: the fixed Markdown shape, risk flags before factors, missing data and
sources that are not connected named as such, words from wording.yaml."""

from __future__ import annotations

import re

import numpy as np

from features.contract.tables import TABLES
from scoring.health import health_summary, load_rules, score_frame
from scoring.health.examples import AT_RISK, HEALTHY, feature_frame
from scoring.health.wording import load_wording

ALL = frozenset(t.name for t in TABLES)
RULES = load_rules()


def summarise(row: dict, connected: frozenset[str] = ALL, **kw) -> str:
    frame = feature_frame([row])
    scored = score_frame(frame, connected, RULES, **kw)
    return health_summary(scored.iloc[0], frame.iloc[0], connected, RULES, name="Acme Corp")


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.startswith("#") or re.fullmatch(r"\*\*[A-Za-z ]+:\*\*", line)]


def test_the_summary_has_exactly_the_specified_shape():
    text = summarise(AT_RISK)
    assert headings(text) == [
        "## Health: Acme Corp", "### Risk Flags", "### Factors", "**Positive:**",
        "**Negative:**", "**Missing data:**", "### Inputs Used",
    ]
    score_line = text.splitlines()[2]
    assert re.fullmatch(r"\*\*Score:\*\* \d{1,3} \(At Risk, F\) — .+", score_line)
    assert load_wording()["interpretation"]["At Risk"] in score_line


def test_risk_flags_come_first_with_evidence_and_an_action():
    text = summarise(AT_RISK)
    flags = text.split("### Risk Flags")[1].split("### Factors")[0]
    assert "**Usage drop** (high): Logins -60%" in flags
    assert flags.count("_Action:_") == 7
    assert text.index("### Risk Flags") < text.index("### Factors")


def test_a_healthy_account_says_no_risk_flags():
    text = summarise(HEALTHY)
    assert "### Risk Flags\nNo risk flags.\n" in text
    negative = text.split("**Negative:**")[1].split("**Missing data:**")[0]
    assert "None." in negative


def test_factors_name_features_in_words_with_their_values():
    text = summarise(AT_RISK)
    negative = text.split("**Negative:**")[1].split("**Missing data:**")[0]
    assert "Most recent NPS response: 3 (Satisfaction 20/100)" in negative
    positive = text.split("**Positive:**")[1].split("**Negative:**")[0]
    assert "Active users" not in positive


def test_without_surveys_satisfaction_is_missing_and_surveys_not_connected():
    text = summarise(HEALTHY, ALL - {"surveys"})
    missing = text.split("**Missing data:**")[1].split("### Inputs Used")[0]
    assert "- Satisfaction: surveys not connected" in missing
    assert "- **surveys**: Not connected" in text.split("### Inputs Used")[1]
    assert "- **usage_events**: active_user_ratio_30d" in text


def test_a_connected_source_without_data_says_so():
    row = HEALTHY | {"nps_last": np.nan, "nps_avg_365d": np.nan, "csat_avg_90d": np.nan}
    text = summarise(row)
    assert "- Satisfaction: no data in the window" in text
    assert f"- **surveys**: {load_wording()['inputs']['no_data']}" in text


def test_the_trend_is_part_of_the_interpretation():
    import pandas as pd

    now = score_frame(feature_frame([HEALTHY]), ALL, RULES)["score"].iloc[0]
    text = summarise(HEALTHY, previous=pd.DataFrame({"account_id": ["acc-0"],
                                                     "score": [now - 20]}))
    assert "Improving (+20 since 7 days ago)." in text.splitlines()[2]


def test_a_stored_row_with_json_flags_gives_the_same_summary():
    import json

    frame = feature_frame([AT_RISK])
    scored = score_frame(frame, ALL, RULES).iloc[0].copy()
    stored = scored.copy()
    stored["flags"] = json.dumps(scored["flags"])
    stored["missing"] = json.dumps(scored["missing"])
    assert (health_summary(stored, frame.iloc[0], ALL, RULES, name="x")
            == health_summary(scored, frame.iloc[0], ALL, RULES, name="x"))


def test_an_account_with_no_data_has_no_score():
    text = summarise({}, frozenset({"accounts"}))
    assert "**Score:** n/a (no data)" in text
