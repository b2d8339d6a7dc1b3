"""The rules score on the project's synthetic world, end to end: generate, ingest, features,
score, store, summarise, validate.

One world (1,200 accounts x 730 days) is built once for the module. The default composite must
rank 90-day churners with ROC AUC >= 0.70; `score`, `summary` and `validate-score` run through
the CLI; removing `surveys` makes satisfaction missing everywhere it shows.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from healthscore.settings import load_settings
from scoring.health import load_rules

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("health-world")]

N_ACCOUNTS, DAYS, SEED = 1200, 730, 7
SCORE_DATE = "2025-06-01"


def make_warehouse(out: Path, n_accounts: int, days: int, seed: int) -> Path:
    """Generate a world, write it in the contract format and ingest it into a warehouse."""
    from features.contract.ingest import ingest_folder
    from features.synth.generate import generate_world, write_world

    world = generate_world(n_accounts, date(2024, 1, 1), days, seed)
    write_world(world, out / "raw")
    warehouse = out / "warehouse.duckdb"
    ingest_folder(out / "raw", warehouse, load_settings().ingest)
    return warehouse


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_warehouse(tmp_path_factory.mktemp("world"), N_ACCOUNTS, DAYS, SEED)


@pytest.fixture(scope="module")
def validation(world):
    from training.score_validation import validate_score, validation_dates

    con = duckdb.connect(str(world), read_only=True)
    try:
        dates = validation_dates(con)
        return validate_score(con, load_rules(), load_settings().features, dates=dates)
    finally:
        con.close()


def run(*args: str) -> str:
    from healthscore.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_the_default_composite_ranks_90_day_churners(validation):
    assert validation.rows > 10_000
    assert validation.auc["composite"][90] >= 0.70
    # Every dimension carries some signal in the right direction.
    for dim in ("engagement", "adoption", "usage", "support", "satisfaction", "value"):
        assert validation.auc[dim][90] > 0.55, dim


def test_lower_bands_churn_more(validation):
    rates = {b["band"]: b["churn_90d"] for b in validation.bands}
    assert rates["Needs Attention"] > rates["Healthy"] > rates["Champion"]
    assert validation.lift[90] > 1.5


def test_suggested_weights_are_non_negative_and_sum_to_100(validation):
    s = validation.suggested
    assert s is not None
    assert all(w >= 0 for w in s.weights.values())
    assert sum(s.weights.values()) == pytest.approx(100, abs=0.5)
    # The fitting window ends a horizon before the later window it is judged on.
    assert pd.Timestamp(s.fit_dates[-1]) + pd.Timedelta(days=90) <= pd.Timestamp(s.eval_dates[0])


@pytest.fixture(scope="module")
def store_url(world, tmp_path_factory) -> str:
    """A store holding the scores of a week before SCORE_DATE and of SCORE_DATE, written by the
    CLI (the second run reads its previous scores from the first)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'scores.db'}"
    for when in ("2025-05-25", SCORE_DATE):
        out = run("score", "--as-of", when, "--warehouse", str(world), "--store-url", url)
        assert f"Health scores as of {when}" in out and "Champion" in out
    return url


def test_score_writes_every_active_account(world, store_url):
    from features.entities import build_entities
    from serving.store import open_store

    con = duckdb.connect(str(world), read_only=True)
    active = set(build_entities(con, [SCORE_DATE])["account_id"])
    con.close()
    with open_store(store_url) as s:
        stored = s.load_scores(SCORE_DATE)
    assert set(stored["account_id"]) == active
    assert stored["score"].between(0, 100).all()
    assert set(stored["trend"].dropna()) <= {"improving", "stable", "declining"}


def test_rerunning_score_for_a_date_replaces_it(world, store_url):
    from serving.store import open_store

    with open_store(store_url) as s:
        first = s.load_scores(SCORE_DATE)
    run("score", "--as-of", SCORE_DATE, "--warehouse", str(world), "--store-url", store_url)
    with open_store(store_url) as s:
        again = s.load_scores(SCORE_DATE)
        assert s.count() == len(again) + len(s.load_scores("2025-05-25"))
    pd.testing.assert_frame_equal(first.drop(columns="scored_at"),
                                  again.drop(columns="scored_at"))


def test_stored_and_recomputed_previous_scores_agree(world, store_url):
    """The trend reads the store when it holds T-7; recomputing T-7 gives the same answer."""
    from scoring.pipeline import Scorer, score_accounts
    from serving.store import open_store

    with open_store(store_url) as s:
        from_store = s.load_scores(SCORE_DATE).set_index("account_id").sort_index()
        week_before = s.load_scores("2025-05-25").set_index("account_id")
    con = duckdb.connect(str(world), read_only=True)
    scorer = Scorer(rules=load_rules(), features=load_settings().features)
    recomputed = score_accounts(con, None, SCORE_DATE, scorer).scores
    con.close()
    recomputed = recomputed.set_index("account_id").sort_index()
    assert from_store["previous_score"].to_numpy() == pytest.approx(
        recomputed["previous_score"].to_numpy(), nan_ok=True)
    assert list(from_store["trend"]) == list(recomputed["trend"])
    had = from_store.index.intersection(week_before.index)
    assert from_store.loc[had, "previous_score"].to_numpy() == pytest.approx(
        week_before.loc[had, "score"].to_numpy())


def test_summary_prints_the_markdown_shape(world, tmp_path):
    from features.entities import build_entities

    con = duckdb.connect(str(world), read_only=True)
    account = build_entities(con, [SCORE_DATE])["account_id"].iloc[0]
    name = con.execute("select name from accounts where account_id = ?", [account]).fetchone()[0]
    con.close()
    out = run("summary", account, "--as-of", SCORE_DATE, "--warehouse", str(world),
              "--store-url", f"sqlite:///{tmp_path / 's.db'}")
    assert out.startswith(f"## Health: {name}\n")
    for heading in ("**Score:**", "### Risk Flags", "### Factors", "**Positive:**",
                    "**Negative:**", "**Missing data:**", "### Inputs Used"):
        assert heading in out


def test_a_churned_account_is_summarised_as_churned(world, tmp_path):
    con = duckdb.connect(str(world), read_only=True)
    account, churned_at = con.execute(
        "select account_id, churned_at from churn_events where churned_at < ? "
        "order by churned_at limit 1", [pd.Timestamp(SCORE_DATE)]).fetchone()
    con.close()
    out = run("summary", account, "--as-of", SCORE_DATE, "--warehouse", str(world),
              "--store-url", f"sqlite:///{tmp_path / 's.db'}")
    assert "The account has churned." in out.splitlines()[2]


def test_without_surveys_satisfaction_is_missing_and_not_connected(world, tmp_path):
    from features.build import build_features
    from features.contract.warehouse import connected_tables
    from features.entities import build_entities
    from scoring.health import score_frame

    copy = tmp_path / "no_surveys.duckdb"
    shutil.copy(world, copy)
    con = duckdb.connect(str(copy))
    con.execute("drop table surveys")
    con.close()
    con = duckdb.connect(str(copy), read_only=True)
    connected = connected_tables(con)
    assert "surveys" not in connected
    features = build_features(con, build_entities(con, [SCORE_DATE]), load_settings().features)
    con.close()
    scored = score_frame(features, connected, load_rules())
    account = scored["account_id"].iloc[0]
    assert scored["dim_satisfaction"].isna().all()
    assert all("satisfaction" in m for m in scored["missing"])
    weights = load_rules().default.weights
    full = sum(weights.values())
    default_rows = scored[(scored["profile"] == "default") & (scored["missing"].map(len) == 1)]
    assert len(default_rows) > 0
    assert default_rows["coverage"].to_numpy() == pytest.approx(
        1 - weights["satisfaction"] / full)

    out = run("summary", account, "--as-of", SCORE_DATE, "--warehouse", str(copy),
              "--store-url", f"sqlite:///{tmp_path / 's.db'}")
    assert "- Satisfaction: surveys not connected" in out.split("**Missing data:**")[1]
    assert "- **surveys**: Not connected" in out.split("### Inputs Used")[1]


def test_validate_score_prints_its_table_and_json(world):
    args = ("validate-score", "--warehouse", str(world), "--start", "2024-12-01",
            "--end", "2025-06-01")
    out = run(*args)
    assert "AUC 90d" in out and "composite" in out and "Churn rate per band" in out
    assert "churned within 90 days" in out and "Suggested weights" in out
    data = json.loads(run(*args, "--json"))
    assert set(data["auc"]["composite"]) == {"30", "60", "90"}
    assert data["suggested"]["weights"].keys() == data["suggested"]["current"].keys()
