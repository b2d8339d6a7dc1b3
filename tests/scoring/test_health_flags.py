"""Risk flags: each raised by its own condition with numbers as evidence and an action hint, even
when the composite looks fine; thresholds come from the profile, words from wording.yaml."""

from __future__ import annotations

import numpy as np
import pytest

from features.contract.tables import TABLES
from scoring.health import load_rules, score_frame
from scoring.health.examples import AT_RISK, HEALTHY, feature_frame
from scoring.health.wording import load_wording

ALL = frozenset(t.name for t in TABLES)
RULES = load_rules()


def flags_of(row: dict, connected: frozenset[str] = ALL) -> dict[str, dict]:
    out = score_frame(feature_frame([row]), connected, RULES)
    return {f["code"]: f for f in out["flags"].iloc[0]}


def test_a_healthy_account_raises_no_flags():
    assert flags_of(HEALTHY) == {}


@pytest.mark.parametrize(
    ("change", "code", "evidence"),
    [
        ({"logins_pct_change_30d": -45}, "usage_drop", {"logins_pct_change_30d": -45}),
        ({"events_pct_change_30d": -31}, "usage_drop", {"events_pct_change_30d": -31}),
        ({"tickets_30d": 4, "tickets_pct_change_30d": 150}, "support_spike", {"tickets_30d": 4}),
        ({"tickets_30d": 3, "tickets_pct_change_30d": np.nan}, "support_spike",
         {"tickets_30d": 3}),
        ({"nps_last": 6}, "nps_detractor", {"nps_last": 6}),
        ({"failed_payments_90d": 1}, "payment_issue", {"failed_payments_90d": 1}),
        ({"overdue_invoices": 2}, "payment_issue", {"overdue_invoices": 2}),
        ({"days_to_renewal": 60}, "renewal_soon", {"days_to_renewal": 60}),
        ({"days_since_last_exec_touch": 95}, "no_exec_touch",
         {"days_since_last_exec_touch": 95}),
        ({"escalations_90d": 1}, "escalation", {"escalations_90d": 1}),
    ],
)
def test_each_flag_is_raised_by_its_condition_with_evidence(change, code, evidence):
    flags = flags_of(HEALTHY | change)
    assert set(flags) == {code}
    flag = flags[code]
    for name, value in evidence.items():
        assert flag["evidence"][name] == pytest.approx(value)
    words = load_wording().flag(code)
    assert flag["title"] == words["title"] and flag["hint"] == words["hint"]
    assert flag["text"] and "{" not in flag["text"]


@pytest.mark.parametrize(
    "change",
    [
        {"logins_pct_change_30d": -29, "events_pct_change_30d": -20},
        {"tickets_30d": 2, "tickets_pct_change_30d": 300},
        {"tickets_30d": 5, "tickets_pct_change_30d": 50},
        {"nps_last": 7},
        {"days_to_renewal": 91},
        {"days_since_last_exec_touch": 89},
    ],
)
def test_just_inside_the_thresholds_raises_nothing(change):
    assert flags_of(HEALTHY | change) == {}


@pytest.mark.parametrize(("contract", "raised"), [
    ({"contract_term_days": 365, "auto_renew": 1}, True),     # an annual contract
    ({"contract_term_days": 182, "auto_renew": 1}, True),     # six months
    ({"contract_term_days": 31, "auto_renew": 1}, False),     # a monthly plan renewing itself
    ({"contract_term_days": 120, "auto_renew": 1}, False),    # four months
    ({"contract_term_days": 31, "auto_renew": 0}, True),      # someone must renew it
    ({"contract_term_days": 31, "auto_renew": np.nan}, False),  # unknown is not "does not"
])
def test_a_renewal_is_one_of_a_long_contract_or_of_one_that_does_not_renew_by_itself(
        contract, raised):
    assert ("renewal_soon" in flags_of(HEALTHY | {"days_to_renewal": 20} | contract)) is raised


def test_the_minimum_term_of_a_renewal_is_set_per_profile(tmp_path):
    from scoring.health.profiles import DEFAULT_RULES_FILE

    text = DEFAULT_RULES_FILE.read_text().replace(
        "    flags:\n      support_spike:\n        tickets_30d_at_least: 6",
        "    flags:\n      renewal_soon:\n        min_term_months: 1\n"
        "      support_spike:\n        tickets_30d_at_least: 6", 1)
    (tmp_path / "rules.yaml").write_text(text)
    rules = load_rules(tmp_path / "rules.yaml")
    monthly = HEALTHY | {"days_to_renewal": 20, "contract_term_days": 30}
    out = score_frame(feature_frame([monthly | {"segment": "enterprise"}, monthly]), ALL, rules)
    assert ["renewal_soon" in {f["code"] for f in fl} for fl in out["flags"]] == [True, False]


def test_flags_are_raised_even_when_the_composite_looks_fine():
    out = score_frame(feature_frame([HEALTHY | {"nps_last": 2, "days_to_renewal": 30}]), ALL,
                      RULES)
    assert out["band"].iloc[0] == "Champion"
    assert {f["code"] for f in out["flags"].iloc[0]} == {"nps_detractor", "renewal_soon"}


def test_most_severe_flags_come_first():
    severities = [f["severity"] for f in score_frame(feature_frame([AT_RISK]), ALL,
                                                     RULES)["flags"].iloc[0]]
    order = {"high": 0, "medium": 1, "low": 2}
    assert severities == sorted(severities, key=order.__getitem__)
    assert len(severities) == 7


def test_a_source_that_is_not_connected_raises_nothing():
    assert flags_of(HEALTHY | {"nps_last": 1}, ALL - {"surveys"}) == {}


def test_never_meeting_an_executive_is_flagged_only_when_touchpoints_are_connected():
    never = HEALTHY | {"days_since_last_exec_touch": np.nan, "exec_touches_90d": 0}
    flag = flags_of(never)["no_exec_touch"]
    assert flag["evidence"]["days_since_last_exec_touch"] is None
    assert flag["text"] == load_wording().flag("no_exec_touch")["evidence_never"]
    assert flags_of(never, ALL - {"touchpoints"}) == {}
    # A new account has not had the time yet.
    assert flags_of(never | {"tenure_days": 30}) == {}


def test_profiles_set_their_own_flag_thresholds():
    row = HEALTHY | {"tickets_30d": 4, "tickets_pct_change_30d": 200,
                     "days_since_last_exec_touch": 120}
    assert set(flags_of(row | {"segment": "mid-market"})) == {"support_spike", "no_exec_touch"}
    assert set(flags_of(row | {"segment": "enterprise"})) == {"no_exec_touch"}  # spike from 6
    assert set(flags_of(row | {"segment": "smb"})) == {"support_spike"}  # exec touch disabled


def test_flags_are_json_ready():
    import json

    flags = score_frame(feature_frame([AT_RISK]), ALL, RULES)["flags"].iloc[0]
    assert json.loads(json.dumps(flags)) == flags


def test_monthly_plans_raise_no_renewal_flag_in_a_generated_world_and_annual_contracts_do():
    from datetime import date

    from features.synth.generate import generate_world
    from scoring.pipeline import Scorer, score_accounts
    from tests.support.feature_frames import warehouse

    con = warehouse(generate_world(150, date(2024, 1, 1), 400, seed=3).tables)
    scored = score_accounts(con, None, "2024-12-01", Scorer(rules=RULES), trend=False)
    feats = scored.features
    flagged = [any(f["code"] == "renewal_soon" for f in fl) for fl in scored.scores["flags"]]
    flagged = np.asarray(flagged)
    monthly = (feats["contract_term_days"] <= 31).to_numpy()
    annual = (feats["contract_term_days"] >= 365).to_numpy()
    ending = (feats["days_to_renewal"] <= 90).to_numpy()
    assert monthly.sum() >= 10 and (annual & ending).sum() >= 3  # the world has both
    assert not flagged[monthly].any()
    assert flagged[annual & ending].all()
