"""The usage features equal an independent pandas computation of them on a generated world.

The usage definitions are written for speed on large tables (user-days rolled up before the join,
distinct counts as counts of keys aggregated per entity, per-type sums over the (entity, event)
rows, window starts computed once per entity): this checks every value against a plain groupby
of the raw rows and a careful numpy computation (`bench/pandas_baseline.py`, the scale bench's
two baselines), on both execution paths and at several as-of dates, so a faster formulation
cannot change a value unnoticed.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from bench.pandas_baseline import (
    compare,
    load_rows,
    load_usage,
    plain_usage_features,
    usage_features,
)
from features.build import build_features
from features.contract.warehouse import load_frames
from features.entities import build_entities
from features.event_types import event_types
from features.settings import FeatureConfig


@pytest.fixture(scope="module")
def world():
    import duckdb

    from features.synth.generate import generate_world

    w = generate_world(40, date(2024, 1, 1), 240, 11)
    con = duckdb.connect(":memory:")
    load_frames(con, w.tables)
    dates = pd.date_range("2024-05-01", periods=4, freq="MS")
    return con, build_entities(con, list(dates))


@pytest.mark.parametrize("cfg", [FeatureConfig(online_max_entities=0),
                                 FeatureConfig(online_max_entities=10_000)],
                         ids=["batch", "online"])
def test_usage_features_equal_a_plain_pandas_groupby(world, cfg):
    con, ents = world
    assert len(ents) > 40 and ents["as_of"].nunique() == 4
    product = build_features(con, ents, cfg)
    usage, ids = load_usage(con, ents)
    types = event_types(con, cfg)
    reference = usage_features(usage, ids, ents, types)
    assert any(c.startswith("event_") for c in reference.columns)
    assert compare(product, reference) == []
    plain = plain_usage_features(load_rows(con, ents), ents, types)
    assert sorted(plain.columns) == sorted(reference.columns)
    assert compare(product, plain) == []
    # The comparison is not vacuous: the windows hold activity.
    assert (reference["active_users_7d"] > 0).mean() > 0.3
    assert reference["events_pct_change_30d"].notna().mean() > 0.3
