"""The score store: migrations on open, idempotent transactional writes, reads back what it wrote.

Every test runs against SQLite and PostgreSQL (a fresh schema per test; skipped when the server is
unreachable, failed under CI=true: see the `postgres_url` fixture in conftest.py).
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from features.contract.tables import TABLES
from scoring.health import load_rules, score_frame
from scoring.health.examples import AT_RISK, HEALTHY, feature_frame, random_features
from serving.store import MIGRATIONS_DIR, SCORE_FIELDS, open_store, previous_from_store

ALL = frozenset(t.name for t in TABLES)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'scores.db'}"
    return request.getfixturevalue("postgres_url")


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


@pytest.fixture(scope="module")
def scores():
    return score_frame(random_features(60, seed=3), ALL, load_rules())


def test_opening_applies_the_migrations(store_url):
    with open_store(store_url) as store:
        tables = set(inspect(store.engine).get_table_names())
        assert {"health_scores", "alembic_version"} <= tables
        with store.engine.connect() as conn:
            version = conn.execute(text("select version_num from alembic_version")).scalar()
    assert version == _head()
    # Opening again is a no-op, not an error.
    with open_store(store_url) as store:
        assert store.count() == 0


def test_scores_round_trip_with_flags_and_missing(store_url, scores):
    with open_store(store_url) as store:
        assert store.replace_scores(scores) == len(scores)
        back = store.load_scores("2025-06-01")
    assert list(back.columns[: len(SCORE_FIELDS)]) == list(SCORE_FIELDS)
    back = back.set_index("account_id").loc[scores["account_id"]]
    assert back["score"].to_numpy() == pytest.approx(scores["score"].to_numpy())
    assert list(back["band"]) == list(scores["band"])
    assert list(back["flags"]) == list(scores["flags"])
    assert list(back["missing"]) == list(scores["missing"])
    assert set(back["config_version"]) == {load_rules().config_version}


def test_rerunning_a_date_replaces_it(store_url, scores):
    with open_store(store_url) as store:
        store.replace_scores(scores)
        store.replace_scores(scores.head(10))
        assert store.count("2025-06-01") == 10
        store.replace_scores(scores)
        assert store.count("2025-06-01") == len(scores)


def test_other_dates_are_left_alone(store_url, scores):
    later = scores.assign(as_of=pd.Timestamp("2025-06-08"))
    with open_store(store_url) as store:
        store.replace_scores(scores)
        store.replace_scores(later.head(5))
        store.replace_scores(later.head(3))
        assert store.count("2025-06-01") == len(scores)
        assert store.count("2025-06-08") == 3
        assert [str(d) for d in store.dates()] == ["2025-06-01", "2025-06-08"]


def test_a_failed_write_leaves_the_store_as_it_was(store_url, scores):
    broken = scores.copy()
    broken.loc[broken.index[15], "profile"] = None  # NOT NULL: fails after the delete ran
    with open_store(store_url) as store:
        store.replace_scores(scores)
        with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError varies
            store.replace_scores(broken.head(20))
        assert store.count("2025-06-01") == len(scores)
        kept = store.load_scores("2025-06-01")
        assert kept["score"].sum() == pytest.approx(scores["score"].sum())


def test_replacing_only_some_accounts(store_url, scores):
    with open_store(store_url) as store:
        store.replace_scores(scores)
        one = scores.head(1).assign(score=1.0)
        store.replace_scores(one, whole_dates=False)
        assert store.count("2025-06-01") == len(scores)
        back = store.load_scores("2025-06-01", [one["account_id"].iloc[0]])
        assert back["score"].tolist() == [1.0]


def test_previous_scores_come_from_the_date_n_days_earlier(store_url):
    rules = load_rules()
    week_ago = score_frame(feature_frame([HEALTHY | {"account_id": "a"}], "2025-06-01"),
                           ALL, rules)
    with open_store(store_url) as store:
        store.replace_scores(week_ago)
        previous = previous_from_store(store, "2025-06-08", 7)
        assert store.latest_date("a").isoformat() == "2025-06-01"
    now = score_frame(feature_frame([AT_RISK | {"account_id": "a"}], "2025-06-08"), ALL, rules,
                      previous)
    assert now["previous_score"].iloc[0] == pytest.approx(week_ago["score"].iloc[0])
    assert now["trend"].iloc[0] == "declining"


def test_a_frame_without_the_score_columns_is_refused(store_url):
    with open_store(store_url) as store, pytest.raises(ValueError, match="lacks columns"):
        store.replace_scores(pd.DataFrame({"account_id": ["a"]}))
