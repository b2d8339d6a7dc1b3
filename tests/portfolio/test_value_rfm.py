"""Customer value (score, tier, health-segment class, each with its reason) and RFM (1-5 scores on
the portfolio's quintiles, named segments), on hand-made scored frames and a generated world."""

from __future__ import annotations

import numpy as np
import pytest

from healthscore.settings import load_settings
from scoring.portfolio.rfm import quintile_edges, quintile_scores, rfm_scores, segment_of
from scoring.portfolio.settings import PortfolioConfig, RfmConfig, ValueConfig
from scoring.portfolio.value import CLASSES, TIERS, value_scores
from tests.support.portfolio_frames import scored

CFG = PortfolioConfig()


def _portfolio(n: int = 50, **big):
    """n accounts of rising ARR; the last one takes `big`'s features."""
    rows = [{"arr": 1000.0 * (i + 1), "nps_last": 5, "events_pct_change_30d": 0.0}
            for i in range(n)]
    rows[-1].update(big)
    return rows


def test_the_largest_promoter_with_expansion_is_strategic_and_says_why():
    rows = _portfolio(nps_last=10)
    frame = scored(rows, {"expansion_90d": [0.1] * 49 + [0.9], "churn_90d": [0.05] * 50})
    got = value_scores(frame, CFG).set_index("account_id")
    top = got.loc["A00049"]
    assert top["tier"] == "Strategic"
    assert top["value_score"] == pytest.approx(100 * (0.5 * 1.0 + 0.3 * 0.9 + 0.2 * 1.0))
    assert "at least 80" in top["tier_reason"] and "promoter (NPS 10)" in top["tier_reason"]
    assert "expansion probability 90% within 90 days" in top["tier_reason"]
    assert top["segment"] == "Strategic"
    assert [c["class"] for c in top["classes"]] == ["Strategic", "Growing"]
    assert "expansion probability 90%" in top["classes"][1]["reason"]
    low = got.loc["A00000"]
    assert low["tier"] == "Standard" and "below 60" in low["tier_reason"]
    assert "a detractor (NPS 5)" in low["tier_reason"]
    assert set(got["tier"]) <= set(TIERS)


def test_tier_cuts_come_from_the_settings():
    frame = scored(_portfolio(nps_last=10), {"expansion_90d": [0.1] * 49 + [0.9]})
    strict = PortfolioConfig(value=ValueConfig(strategic_min=99, high_value_min=90))
    top = value_scores(frame, strict).iloc[-1]
    assert top["tier"] == "High Value" and "at least 90 and below 99" in top["tier_reason"]
    # The same cut read from the settings object the CLI and service build.
    settings = load_settings(portfolio={"value": {"strategic_min": 99, "high_value_min": 90}})
    assert value_scores(frame, settings.portfolio).iloc[-1]["tier"] == "High Value"


def test_without_models_growth_is_left_out_and_the_reason_says_so():
    frame = scored(_portfolio(nps_last=9))
    top = value_scores(frame, CFG).iloc[-1]
    # ARR top percentile and a promoter: weights 0.5 and 0.2 carry the score alone.
    assert top["value_score"] == pytest.approx(100.0)
    assert "no expansion probability (no model)" in top["tier_reason"]


def test_dormant_at_risk_and_growing_classes_with_their_reasons():
    rows = [{"days_since_last_activity": 45, "arr": 50000.0},
            {"status": "critical", "arr": 40000.0},
            {"events_pct_change_30d": 40.0, "arr": 1000.0},
            {"arr": 2000.0}]
    frame = scored(rows, {"churn_90d": [0.1, 0.7, 0.1, 0.1], "expansion_90d": [0.1] * 4})
    got = value_scores(frame, CFG).set_index("account_id")
    assert got.loc["A00000", "segment"] == "Dormant"
    assert "no product activity for 45 days (30 or more is dormant)" in \
        got.loc["A00000", "segment_reason"]
    assert got.loc["A00001", "segment"] == "At Risk"
    assert "health status critical" in got.loc["A00001", "segment_reason"]
    assert "churn probability 70% within 90 days is at least 50%" in \
        got.loc["A00001", "segment_reason"]
    assert got.loc["A00002", "segment"] == "Growing"
    assert "product events up 40%" in got.loc["A00002", "segment_reason"]
    plain = got.loc["A00003"]
    assert plain["classes"] == [] and plain["segment"] == "Standard"
    assert "none of Dormant, At Risk, Strategic, High Value or Growing" in \
        plain["segment_reason"]
    for _, row in got.iterrows():
        assert row["segment_reason"] and row["tier_reason"]


def test_rfm_scores_are_the_portfolios_quintiles():
    values = np.arange(100.0)
    scores = quintile_scores(values)
    assert [int((scores == s).sum()) for s in range(1, 6)] == [20] * 5
    assert scores[0] == 1 and scores[-1] == 5
    assert quintile_scores(values, higher_is_better=False)[0] == 5
    # Ties share one score, never straddle two quintiles.
    tied = quintile_scores(np.array([1.0] * 50 + list(range(2, 52))))
    assert len(set(tied[:50])) == 1
    assert quintile_edges(values) == pytest.approx([19.8, 39.6, 59.4, 79.2])


def test_rfm_segments_follow_the_standard_map_and_cover_every_score():
    cfg = RfmConfig()
    assert segment_of(5, 5, cfg) == "Champions"
    assert segment_of(4, 5, cfg) == "Loyal"
    assert segment_of(5, 1, cfg) == "New Customers"
    assert segment_of(1, 5, cfg) == "Can't Lose Them"
    assert segment_of(2, 3, cfg) == "At Risk"
    assert segment_of(1, 1, cfg) == "Hibernating"
    assert all(segment_of(r, fm, cfg) != "Others" for r in range(1, 6) for fm in range(1, 6))


def test_rfm_of_a_portfolio_scores_recency_frequency_and_arr():
    rows = [{"days_since_last_activity": float(i), "active_days_30d": float(30 - i % 30),
             "arr": 1000.0 * (50 - i)} for i in range(50)]
    got = rfm_scores(scored(rows), RfmConfig()).set_index("account_id")
    best, worst = got.loc["A00000"], got.loc["A00049"]
    assert (best["r"], best["f"], best["m"]) == (5, 5, 5) and best["segment"] == "Champions"
    assert best["rfm"] == "555" and "last active 0 days ago" in best["reason"]
    assert worst["r"] == 1 and worst["m"] == 1
    assert worst["segment"] in ("Hibernating", "At Risk")
    for col in ("r", "f", "m"):
        assert got[col].between(1, 5).all()
        assert got[col].value_counts().max() <= 20  # quintiles of 50: ~10 each


def test_value_rfm_and_stages_on_a_generated_world(world_root):
    """Every active account of a small generated world gets a tier, a class, an RFM segment and
    a lifecycle stage, each with a reason, from the one pipeline's frame."""
    from features.contract.warehouse import connect
    from scoring.health import load_rules
    from scoring.model_set import load_models
    from scoring.pipeline import Scorer, score_accounts
    from scoring.portfolio.lifecycle import STAGES, lifecycle_stages

    models, note = load_models(world_root / "models")
    con = connect(world_root / "warehouse.duckdb", read_only=True)
    frame = score_accounts(con, None, "2025-01-15", Scorer(rules=load_rules(), models=models,
                                                            models_note=note)).active()
    con.close()
    value = value_scores(frame, CFG)
    rfm = rfm_scores(frame, CFG.rfm)
    stages = lifecycle_stages(frame, CFG.lifecycle)
    assert len(value) == len(rfm) == len(stages) == len(frame) > 50
    assert value["value_score"].between(0, 100).all()
    assert set(value["segment"]) <= {*CLASSES, "Standard"}
    assert value["tier_reason"].str.len().min() > 20
    assert set(stages["stage"]) <= set(STAGES) and stages["cause"].str.len().min() > 10
    assert rfm["segment"].ne("Others").all()
    # Monetary quintiles: the top fifth of ARR gets M 5.
    top = rfm.sort_values("monetary", ascending=False).head(len(rfm) // 5)
    assert (top["m"] == 5).all()
