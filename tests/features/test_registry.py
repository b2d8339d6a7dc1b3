"""The feature registry and the built frame agree: same columns, same order, same dtypes, and
every registered feature is documented with a valid dimension, kind and source."""

from __future__ import annotations

import typing

import pandas as pd
import pytest

from features.build import build_features
from features.contract.tables import TABLES_BY_NAME
from features.registry import (
    DIMENSION_SOURCES,
    DIMENSIONS,
    ENTITY_COLUMNS,
    FEATURE_NAMES,
    FEATURES,
    Dimension,
    Kind,
    by_dimension,
    feature,
)
from features.settings import FeatureConfig
from tests.support.feature_frames import T, entities, hand_tables, warehouse

KINDS = set(typing.get_args(Kind))


@pytest.fixture(scope="module")
def frame():
    return build_features(warehouse(hand_tables()), entities(("a", T), ("b", T)),
                          FeatureConfig())


def test_the_frame_has_exactly_the_registered_columns_in_order_then_attributes(frame):
    attrs = [c for c in frame.columns if c.startswith("attr_")]
    assert list(frame.columns) == [*ENTITY_COLUMNS, *FEATURE_NAMES, *attrs]
    # the extra columns of accounts, in their order there
    assert attrs == ["attr_csm_tier", "attr_health_index", "attr_is_partner"]


def test_each_column_has_its_registered_dtype(frame):
    for spec in FEATURES:
        if spec.dtype == "category":
            assert isinstance(frame[spec.name].dtype, pd.CategoricalDtype), spec.name
        else:
            assert frame[spec.name].dtype == "float64", spec.name


def test_custom_attributes_are_neutral_profile_features(frame):
    for name in (c for c in frame.columns if c.startswith("attr_")):
        spec = feature(name)
        assert (spec.dimension, spec.kind, spec.source) == ("profile", "attribute", "accounts")
        assert spec.description


@pytest.mark.parametrize("spec", FEATURES, ids=lambda s: s.name)
def test_every_feature_is_documented_with_a_valid_dimension_kind_and_source(spec):
    assert spec.description.strip(), "empty description"
    assert spec.dimension in DIMENSIONS
    assert spec.kind in KINDS
    assert spec.source in TABLES_BY_NAME, f"{spec.source} is not a contract table"
    assert spec.source in DIMENSION_SOURCES[spec.dimension]
    assert spec.dtype in ("float", "category")
    if spec.window is not None:
        assert spec.window > 0
        assert spec.name.endswith(f"_{spec.window}d"), "a windowed name ends with its window"


def test_every_dimension_but_profile_has_features():
    assert set(DIMENSIONS) == set(typing.get_args(Dimension))
    for dim in DIMENSIONS:
        if dim != "profile":
            assert by_dimension(dim), dim


def test_feature_names_are_unique():
    assert len(FEATURE_NAMES) == len(FEATURES)


def test_not_connecting_a_dimension_source_makes_exactly_its_features_missing():
    base = hand_tables()
    for dim, sources in DIMENSION_SOURCES.items():
        if dim == "profile":
            continue
        tables = {k: v for k, v in base.items() if k not in sources}
        out = build_features(warehouse(tables), entities(("a", T)), FeatureConfig())
        for spec in FEATURES:
            missing = bool(out[spec.name].isna().all())
            assert missing == (spec.source in sources), (dim, spec.name)
