"""Explanations on a trained model: exact TreeSHAP factors that add up, behave like the data
(less usage -> more churn; a usage cut shows as a usage factor), ignore who the account is
called, and an analysis that ties the rules score, the models, missing data, peers and the
agreement check together in the reviewed words."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.registry import FEATURES, feature
from scoring.health.profiles import RulesError
from scoring.health.wording import load_wording, parse_wording
from scoring.model_set import model_set
from serving.explain import AnalysisError, analyze, analyze_features
from serving.explain_markdown import analysis_markdown
from serving.peers import build_peer_table
from serving.schemas.explanation import HealthAnalysis
from tests.support.explain_fixtures import AS_OF

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("explain")]

USAGE_DIMENSIONS = ("engagement", "usage", "adoption")


def explain(population, account_id: str, *, world, **kw) -> HealthAnalysis:
    """One account of the population explained with the trained models and the peer table."""
    return analyze_features(population.row(account_id), population.connected, world.rules,
                            world.bundles, peers=population.peers, **kw)


def usage_down(frame: pd.DataFrame) -> pd.DataFrame:
    """Every engagement and usage input down: a fifth of the activity, -80% against the month
    before, nobody active for at least 30 days."""
    out = frame.copy()
    for spec in FEATURES:
        if spec.dimension not in ("engagement", "usage"):
            continue
        if spec.kind == "pct_change":
            out[spec.name] = -80.0
        elif spec.kind == "days_since":
            out[spec.name] = np.maximum(out[spec.name].fillna(30.0), 30.0)
        else:
            out[spec.name] = out[spec.name] * 0.2
    return out


# --- exact TreeSHAP ---------------------------------------------------------------------------
def test_base_value_plus_contributions_is_the_raw_output_for_every_row(explain_world):
    rows = explain_world.training
    for label, bundle in explain_world.bundles.items():
        contributions = bundle.contributions(rows)
        raw = bundle.predict_raw(rows)
        assert contributions.shape == (len(rows), len(bundle.features) + 1)
        np.testing.assert_allclose(contributions.sum(axis=1), raw, rtol=0, atol=1e-9,
                                   err_msg=label)


def test_each_model_explanation_adds_up_to_its_own_raw_output(explain_world, population):
    account = population.pick()
    analysis = explain(population, account, world=explain_world)
    values = population.row(account)
    assert len(analysis.models) == 6
    for m in analysis.models:
        raw = explain_world.bundles[m.label].predict_raw(values)[0]
        assert m.raw_log_odds == pytest.approx(raw, abs=1e-9)
        listed = m.positive + m.negative + m.missing + m.profile
        assert all(f.rank >= 1 for f in listed)
        # The dimensions' sums are the same contributions grouped: they add up too.
        total = m.base_log_odds + sum(d.contribution for d in m.dimensions)
        assert total == pytest.approx(m.raw_log_odds, abs=1e-9)


def test_one_account_is_encoded_exactly_as_the_bundle_encodes_a_frame(explain_world,
                                                                      population):
    models = model_set(explain_world.bundles)
    frame = population.features.head(60)
    by_frame = models.matrices(frame)
    for i in range(len(frame)):
        values = dict(frame.iloc[i].items())
        for a, b in zip(models.row_matrices(values), by_frame, strict=True):
            np.testing.assert_array_equal(a[0], b[i])


# --- behaviour --------------------------------------------------------------------------------
def test_lowering_logins_and_usage_raises_the_churn_probability(explain_world, population):
    models = model_set(explain_world.bundles)
    feats = population.features
    before = models.probabilities(models.matrices(feats))["churn_90d"]
    after = models.probabilities(models.matrices(usage_down(feats)))["churn_90d"]
    change = after - before
    assert (change > 0).mean() >= 0.8
    assert (change < -0.01).mean() <= 0.03
    assert change.mean() > 0.01
    # And account by account, through the whole analysis (rules score included).
    rises = 0
    for i in range(20):
        row = feats.iloc[[i]]
        base = analyze_features(row, population.connected, explain_world.rules,
                                explain_world.bundles)
        down = analyze_features(usage_down(row), population.connected, explain_world.rules,
                                explain_world.bundles)
        rises += down.probabilities["churn_90d"] > base.probabilities["churn_90d"]
        assert down.score <= base.score  # lower when usage was not already at the floor
    assert rises >= 14


def test_the_account_id_and_name_change_nothing(explain_world, population):
    account = population.pick()
    con = duckdb.connect(":memory:")
    con.execute(f"attach '{explain_world.warehouse}' as src (read_only)")
    con.execute("copy from database src to memory")
    con.execute("detach src")
    for table in ("accounts", "subscriptions", "usage_events", "tickets", "surveys",
                  "touchpoints", "invoices", "churn_events", "expansion_events"):
        con.execute(f"update {table} set account_id = 'ZZ-renamed' where account_id = ?",
                    [account])
    con.execute("update accounts set name = 'Another Name Ltd' where account_id = 'ZZ-renamed'")
    try:
        renamed = analyze("ZZ-renamed", AS_OF, con, explain_world.rules, explain_world.bundles,
                          peers=population.peers, feature_cfg=explain_world.feature_cfg)
    finally:
        con.close()
    original = analyze(account, AS_OF, population.con, explain_world.rules,
                       explain_world.bundles, peers=population.peers,
                       feature_cfg=explain_world.feature_cfg)
    assert (renamed.account_id, renamed.name) == ("ZZ-renamed", "Another Name Ltd")
    assert original.name != renamed.name
    ignore = {"account_id", "name"}
    assert renamed.model_dump(exclude=ignore) == original.model_dump(exclude=ignore)


def test_after_a_usage_cut_the_top_negative_factors_are_usage_factors(explain_world,
                                                                       population):
    """Accounts whose usage the generator cut 30 days before as_of, with no other shock in the
    120 days before and no renewal within 90 days (so the cut is the story), compared with
    themselves on the day of the cut."""
    from features.build import build_features
    from features.entities import build_entities

    def usage_share(m) -> float:
        return sum(d.contribution for d in m.dimensions if d.dimension in USAGE_DIMENSIONS)

    shocks = explain_world.shocks.assign(date=lambda f: pd.to_datetime(f["date"]))
    pairs = []
    for _, cut in shocks[shocks["kind"] == "usage_cut"].iterrows():
        account, when = cut["account_id"], cut["date"].normalize()
        as_of = when + pd.Timedelta(days=30)
        if when < pd.Timestamp("2024-05-01") or as_of > pd.Timestamp("2025-08-20"):
            continue
        mine = shocks[(shocks["account_id"] == account)
                      & (shocks["date"] > when - pd.Timedelta(days=120))
                      & (shocks["date"] < as_of)]
        if not (mine["kind"] != "usage_cut").any():
            pairs.append((account, when, as_of))
    active = build_entities(population.con, sorted({p[2] for p in pairs}),
                            account_ids=sorted({p[0] for p in pairs}))
    active = set(zip(active["account_id"], active["as_of"], strict=True))
    pairs = [p for p in pairs if (p[0], p[2]) in active]
    # Features of every account on the day of its cut and 30 days later, in one build.
    entities = pd.DataFrame({"account_id": [a for a, _, _ in pairs] * 2,
                             "as_of": [w for _, w, _ in pairs] + [t for _, _, t in pairs]})
    feats = build_features(population.con, entities, explain_world.feature_cfg)
    checked, first, top_three, rose = [], [], [], []
    for k, (account, _, _) in enumerate(pairs):
        after_row = feats.iloc[[len(pairs) + k]]
        if not after_row["days_to_renewal"].iloc[0] > 90:
            continue
        before, after = (analyze_features(r, population.connected, explain_world.rules,
                                          explain_world.bundles).model("churn_90d")
                         for r in (feats.iloc[[k]], after_row))
        checked.append(account)
        top = after.negative[0]
        assert top.direction == "raises" and top.contribution > 0
        first += [account] if top.dimension in USAGE_DIMENSIONS else []
        top_three += [account] if any(f.dimension in USAGE_DIMENSIONS
                                      for f in after.negative[:3]) else []
        rose += [account] if usage_share(after) > usage_share(before) else []
    assert len(checked) >= 8
    # The usage factors push churn up more after the cut than on the day of it ...
    assert len(rose) / len(checked) >= 0.9, (rose, checked)
    # ... lead the negative factors for most accounts, and are among the top three for nearly all.
    assert len(first) / len(checked) >= 0.6, (first, checked)
    assert len(top_three) / len(checked) >= 0.85, (top_three, checked)


# --- the factors ------------------------------------------------------------------------------
def test_factors_are_split_ranked_and_limited_to_top_k(explain_world, population):
    from serving.settings import ServingConfig

    analysis = explain(population, population.pick(), world=explain_world,
                       cfg=ServingConfig(top_k_factors=3))
    for m in analysis.models:
        good = -1 if m.target == "churn" else 1
        assert all(f.contribution * good > 0 and f.value is not None for f in m.positive)
        assert all(f.contribution * good < 0 and f.value is not None for f in m.negative)
        assert all(f.value is None for f in m.missing)
        assert all(feature(f.feature).dimension == "profile" for f in m.profile)
        for group in (m.positive, m.negative, m.missing, m.profile):
            assert len(group) <= 3
            ranks = [f.rank for f in group]
            assert ranks == sorted(ranks)
            sizes = [abs(f.contribution) for f in group]
            assert sizes == sorted(sizes, reverse=True)
        for f in m.positive + m.negative + m.missing:
            assert f.dimension not in ("profile",)
            assert f.direction == ("raises" if f.contribution > 0 else "lowers")


def test_a_factor_reads_its_value_against_the_segment_median(explain_world, population):
    analysis = explain(population, population.pick(), world=explain_world)
    assert analysis.segment == "enterprise" and analysis.peers.group == "enterprise"
    churn = analysis.model("churn_90d")
    worded = [f for f in churn.positive + churn.negative if f.peer_median is not None]
    assert worded
    for f in worded:
        assert "(peers in enterprise: " in f.text
        assert 0 <= f.peer_percentile <= 100
        group = population.peers.group("enterprise")
        assert f.peer_median == pytest.approx(group.median(f.feature))
    # The probability is the whole sum converted once; factors never carry probability points.
    assert f"{churn.probability:.0%}" in churn.text
    assert f"{churn.base_probability:.0%}" in churn.text


def test_dimensions_supply_points_that_sum_to_the_score(explain_world, population):
    analysis = explain(population, population.pick(), world=explain_world)
    assert sum(d.contribution for d in analysis.dimensions) == pytest.approx(analysis.score)
    assert sum(d.weight for d in analysis.dimensions) == pytest.approx(1.0)
    for d in analysis.dimensions:
        assert (d.score is None) == d.missing
        if d.score is not None:
            assert 0 <= d.peer_percentile <= 100
            assert f"{d.label}: {d.score:.0f}/100, percentile" in d.text


def test_flags_carry_their_action_hints(explain_world, population):
    wording = load_wording()
    flagged = [a for a in (explain(population, acc, world=explain_world)
                           for acc in population.features["account_id"].head(40)) if a.flags]
    assert flagged
    for a in flagged:
        for f in a.flags:
            assert f.hint == wording.flag(f.code)["hint"]
            assert f.text and f.title == wording.flag(f.code)["title"]


def test_a_source_that_is_not_connected_says_what_connecting_it_would_add(explain_world,
                                                                          population):
    row = population.row(population.pick())
    without_usage = population.connected - {"usage_events"}
    for spec in FEATURES:
        if spec.source == "usage_events":
            row[spec.name] = np.nan
    analysis = analyze_features(row, without_usage, explain_world.rules, explain_world.bundles)
    usage = [m for m in analysis.missing if m.source == "usage_events"]
    assert len(usage) == 1
    # Usage events feed engagement, usage and adoption (35 of 100 in the packaged default).
    profile = explain_world.rules.profile(analysis.profile)
    share = sum(profile.weight(d) for d in USAGE_DIMENSIONS) / sum(
        profile.weight(d) for d in profile.dimensions)
    assert usage[0].weight_share == pytest.approx(share)
    assert usage[0].text == (f"Usage not connected: connect product analytics to add up to "
                             f"{share:.0%} of the weight")
    assert set(usage[0].dimensions) == set(USAGE_DIMENSIONS)
    assert analysis.probabilities, "the models still score without usage data"


def test_a_connected_source_without_data_for_the_account_is_missing_data(explain_world,
                                                                         population):
    no_surveys = population.features[population.features["nps_last"].isna()
                                     & population.features["csat_avg_90d"].isna()
                                     & population.features["nps_avg_365d"].isna()]
    analysis = explain(population, no_surveys["account_id"].iloc[0], world=explain_world)
    surveys = [m for m in analysis.missing if m.source == "surveys"]
    assert surveys and surveys[0].connected
    assert surveys[0].text.startswith("Surveys: connected, but no data in the window")


# --- agreement --------------------------------------------------------------------------------
def test_agreement_flags_a_healthy_band_with_top_decile_churn(explain_world, population):
    from scoring.health import score_frame

    feats = population.features
    models = model_set(explain_world.bundles)
    p90 = models.probabilities(models.matrices(feats))["churn_90d"]
    status = score_frame(feats, population.connected, explain_world.rules)["status"].to_numpy()
    top, bottom = np.quantile(p90, 0.9), np.quantile(p90, 0.1)
    risky = np.flatnonzero((status == "healthy") & (p90 >= top))
    safe = np.flatnonzero((status == "critical") & (p90 <= bottom))
    agree = np.setdiff1d(np.arange(len(feats)), np.concatenate([risky, safe]))[:30]
    assert len(risky) >= 1
    for rows, expected in ((risky, "healthy_but_risky"), (safe, "at_risk_but_safe"),
                           (agree, "agree")):
        for i in rows:
            a = explain(population, feats["account_id"].iloc[i], world=explain_world)
            assert a.agreement.status == expected
            assert a.band in a.agreement.text
            if expected == "healthy_but_risky":
                assert "top decile" in a.agreement.text
                assert a.agreement.threshold == pytest.approx(top)


def test_agreement_is_unknown_without_models_or_peers(explain_world, population):
    row = population.row(population.pick())
    no_models = analyze_features(row, population.connected, explain_world.rules, None,
                                 peers=population.peers)
    assert no_models.agreement.status == "unknown"
    assert no_models.probabilities == {} and no_models.models == [] and no_models.what_if == []
    assert no_models.score is not None
    assert "No trained models" in analysis_markdown(no_models)
    no_peers = analyze_features(row, population.connected, explain_world.rules,
                                explain_world.bundles)
    assert no_peers.agreement.status == "unknown" and no_peers.peers is None


# --- peers ------------------------------------------------------------------------------------
def test_peer_groups_are_segments_and_small_segments_fall_back_to_everyone():
    feats = pd.DataFrame({
        "account_id": [f"a{i}" for i in range(13)],
        "segment": pd.Categorical(["smb"] * 10 + ["enterprise"] * 3),
        "logins_30d": [float(i) for i in range(10)] + [100.0, 200.0, np.nan],
    })
    table = build_peer_table(feats, min_size=5)
    smb = table.group("smb")
    assert smb.name == "smb" and smb.size == 10
    assert smb.median("logins_30d") == pytest.approx(4.5)
    assert smb.percentile("logins_30d", 4.5) == pytest.approx(50.0)
    assert smb.percentile("logins_30d", 0.0) == pytest.approx(5.0)  # ties count half
    assert smb.percentile("logins_30d", np.nan) is None
    assert table.group("enterprise").size == 13  # 3 < min_size: everyone
    assert table.group(None).size == 13
    assert table.population.median("logins_30d") == pytest.approx(5.5)


# --- words ------------------------------------------------------------------------------------
def test_sentences_come_from_the_wording_file(explain_world, population, tmp_path):
    data = load_wording().data
    edited = {**data, "explain": {**data["explain"], "factor": {
        **data["explain"]["factor"], "line": "{description} = {value}; typical {peer}",
        "features": {}}}}
    wording = parse_wording(edited, tmp_path / "wording.yaml")
    analysis = explain(population, population.pick(), world=explain_world, wording=wording)
    texts = [f.text for f in analysis.model("churn_90d").negative if f.peer_median is not None]
    assert texts and all("; typical " in t for t in texts)


def test_a_wording_file_without_the_explain_sentences_is_refused(explain_world, population,
                                                                  tmp_path):
    data = load_wording().data
    explain_words = {**data["explain"], "agreement": {"agree": "ok"}}
    wording = parse_wording({**data, "explain": explain_words}, tmp_path / "wording.yaml")
    with pytest.raises(RulesError, match=r"wording.yaml: explain.agreement.healthy_but_risky"):
        explain(population, population.pick(), world=explain_world, wording=wording)


def test_analyze_refuses_an_unknown_account_or_several_rows(explain_world, population):
    with pytest.raises(AnalysisError, match="no account 'nope'"):
        analyze("nope", AS_OF, population.con, explain_world.rules, explain_world.bundles,
                load_peers=False)
    with pytest.raises(AnalysisError, match="one account's features row, got 2 rows"):
        analyze_features(population.features.head(2), population.connected,
                         explain_world.rules, explain_world.bundles)


def test_a_churned_account_gets_no_suggestions_and_no_agreement_check(explain_world,
                                                                     population):
    churned = population.con.execute(
        "select account_id from churn_events where churned_at < ? order by churned_at limit 1",
        [AS_OF - pd.Timedelta(days=60)]).fetchone()[0]
    a = analyze(churned, AS_OF, population.con, explain_world.rules, explain_world.bundles,
                peers=population.peers, feature_cfg=explain_world.feature_cfg)
    assert a.status == "churned"
    assert a.what_if == [] and a.agreement.status == "unknown"
    assert a.agreement.text == load_wording()["interpretation"]["churned"]


def test_an_account_that_is_not_a_customer_yet_is_refused(explain_world, population):
    account, created = population.con.execute(
        "select account_id, created_at from accounts order by created_at desc limit 1"
    ).fetchone()
    with pytest.raises(AnalysisError, match=f"'{account}' was created on {created:%Y-%m-%d}"):
        # the day before its signup day (from that day on it is a customer)
        analyze(account, pd.Timestamp(created).normalize() - pd.Timedelta(days=1), population.con,
                explain_world.rules, explain_world.bundles, load_peers=False,
                feature_cfg=explain_world.feature_cfg)


