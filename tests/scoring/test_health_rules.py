"""Rules profiles: the packaged YAML loads, bad files are refused naming the YAML path, profiles
inherit from the default, the resolver is deterministic and config_version tracks content."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.registry import FEATURES_BY_NAME
from scoring.health import RulesError, load_rules, load_rules_for
from scoring.health.examples import HEALTHY, feature_frame
from scoring.health.profiles import DEFAULT_RULES_FILE, resolve_profiles
from scoring.settings import HealthConfig


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_RULES_FILE.read_text())


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_packaged_rules_load_with_a_default_and_segment_profiles():
    rules = load_rules()
    assert rules.default.name == "default"
    assert [p.name for p in rules.profiles] == ["enterprise", "smb"]
    assert len(rules.config_version) == 12


def test_every_scored_feature_is_registered_in_its_dimension():
    for profile in load_rules().all_profiles:
        for dim, feats in profile.normalisations.items():
            for name in feats:
                want = "commercial" if dim == "value" else dim
                assert FEATURES_BY_NAME[name].dimension == want


def test_default_weights_follow_the_brief():
    w = load_rules().default.weights
    assert w["engagement"] + w["usage"] + w["adoption"] == 35
    assert (w["support"], w["satisfaction"], w["value"], w["relationship"]) == (25, 20, 10, 10)


def test_a_profile_overrides_only_what_it_lists():
    rules = load_rules()
    smb, default = rules.profile("smb"), rules.default
    assert smb.weights["relationship"] == 5
    assert smb.weights["support"] == default.weights["support"]
    # `null` removes a feature; lists (points) replace; untouched features are inherited.
    assert "days_since_last_exec_touch" not in smb.normalisations["relationship"]
    assert smb.normalisations["satisfaction"] == default.normalisations["satisfaction"]
    assert smb.normalisations["engagement"]["active_user_ratio_30d"] == \
        default.normalisations["engagement"]["active_user_ratio_30d"]
    assert not smb.flags.no_exec_touch.enabled


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["default"]["normalisations"]["support"].update(
            {"loginz_30d": {"points": [[0, 0], [1, 100]]}}),
         r"default\.normalisations\.support\.loginz_30d: unknown feature 'loginz_30d'"),
        (lambda d: d["default"]["weights"].update({"happiness": 5}),
         r"default\.weights\.happiness"),
        (lambda d: d["default"]["normalisations"].update(
            {"value": {"logins_30d": {"points": [[0, 0], [1, 100]]}}}),
         r"registry puts 'logins_30d' in dimension 'engagement'"),
        (lambda d: d["default"].update(
            {"weights": {k: 0 for k in d["default"]["weights"]}}),
         r"default\.weights: weights sum to zero"),
        (lambda d: d["default"]["bands"].__setitem__(1, {"name": "Healthy", "min": 61,
                                                         "max": 85}),
         r"default\.bands: .*'Healthy' \(61-85\) and 'Champion' \(81-100\) overlap"),
        (lambda d: d["default"]["bands"].__setitem__(1, {"name": "Healthy", "min": 62,
                                                         "max": 80}),
         r"default\.bands: gap between 'Needs Attention' ending at 60 and 'Healthy' starting "
         r"at 62"),
        (lambda d: d["default"]["normalisations"]["support"]["tickets_90d"].update(
            {"points": [[0, 0], [10, 100]]}),
         r"support\.tickets_90d\.points: 'tickets_90d' is lower-is-healthier"),
        (lambda d: d["profiles"][0]["normalisations"]["support"]["tickets_90d"].update(
            {"points": [[5, 100], [0, 0]]}),
         r"profiles\[0\] \(enterprise\)\.normalisations\.support\.tickets_90d: x values must "
         r"increase"),
        (lambda d: d["profiles"][1].update({"match": {"favourite_colour": "blue"}}),
         r"profiles\[1\] \(smb\)\.match: .*cannot match on 'favourite_colour'"),
        (lambda d: d["default"]["flags"]["usage_drop"].pop("pct_change_below"),
         r"default\.flags\.usage_drop\.pct_change_below: Field required"),
    ],
    ids=["unknown-feature", "unknown-dimension", "wrong-dimension", "zero-weights",
         "overlapping-bands", "gapped-bands", "against-direction", "profile-points",
         "unknown-match-column", "missing-flag-threshold"],
)
def test_bad_rules_are_refused_naming_the_file_and_yaml_path(tmp_path, raw, edit, message):
    import copy

    data = copy.deepcopy(raw)
    edit(data)
    path = write(tmp_path, data)
    with pytest.raises(RulesError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "nope.yaml")


def test_thresholds_shorthand_follows_the_registry_direction(tmp_path, raw):
    import copy

    data = copy.deepcopy(raw)
    data["default"]["normalisations"]["support"] = {"tickets_90d": {"thresholds": [0, 5, 10]}}
    rules = load_rules(write(tmp_path, data))
    xs, ys = rules.default.normalisations["support"]["tickets_90d"].curve(False)
    assert list(xs) == [0, 5, 10] and list(ys) == [100, 50, 0]


def test_config_version_changes_with_content_not_with_formatting(tmp_path, raw):
    import copy

    base = load_rules(write(tmp_path, raw)).config_version
    (tmp_path / "rules.yaml").write_text("# a comment\n" + yaml.safe_dump(raw, indent=4))
    assert load_rules(tmp_path / "rules.yaml").config_version == base
    data = copy.deepcopy(raw)
    data["default"]["weights"]["support"] = 30
    assert load_rules(write(tmp_path, data)).config_version != base


def test_health_config_supplies_the_file_and_trend_settings(tmp_path, raw):
    cfg = HealthConfig(rules_file=write(tmp_path, raw), trend_days=14, trend_dead_band=5)
    rules = load_rules_for(cfg)
    assert (rules.trend_days, rules.trend_dead_band) == (14, 5.0)
    assert rules.source == cfg.rules_file
    assert rules.config_version != load_rules(cfg.rules_file).config_version


def test_first_matching_profile_wins_in_file_order(tmp_path, raw):
    import copy

    data = copy.deepcopy(raw)
    data["profiles"].insert(0, {"name": "emea-enterprise",
                                "match": {"segment": "enterprise", "region": ["emea", "apac"]}})
    rules = load_rules(write(tmp_path, data))
    frame = feature_frame([
        HEALTHY | {"segment": "enterprise", "region": "emea"},
        HEALTHY | {"segment": "enterprise", "region": "amer"},
        HEALTHY | {"segment": "smb", "region": "emea"},
        HEALTHY | {"segment": "mid-market"},
        HEALTHY | {"segment": None},
    ])
    names = [rules.all_profiles[i].name for i in resolve_profiles(frame, rules)]
    assert names == ["emea-enterprise", "enterprise", "smb", "default", "default"]


def test_profiles_can_match_custom_attributes(tmp_path, raw):
    import copy

    data = copy.deepcopy(raw)
    data["profiles"] = [{"name": "premium", "match": {"attr_csm_tier": "premium"}}]
    rules = load_rules(write(tmp_path, data))
    frame = feature_frame([HEALTHY, HEALTHY]).assign(attr_csm_tier=["premium", "basic"])
    assert list(resolve_profiles(frame, rules)) == [0, 1]
    with pytest.raises(RulesError, match="attr_csm_tier"):
        resolve_profiles(feature_frame([HEALTHY]), rules)
