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
    event_slug,
    event_type_features,
    event_type_slugs,
    feature,
)
from features.settings import FeatureConfig
from tests.support.feature_frames import T, entities, hand_tables, warehouse

KINDS = set(typing.get_args(Kind))


@pytest.fixture(scope="module")
def frame():
    return build_features(warehouse(hand_tables()), entities(("a", T), ("b", T)),
                          FeatureConfig())


def test_the_frame_has_exactly_the_registered_columns_in_order_then_event_types_then_attributes(
        frame):
    attrs = [c for c in frame.columns if c.startswith("attr_")]
    # the hand-made usage has x (103 events), z (10), w (2), y (1): most frequent first
    events = [f.name for slug in ("x", "z", "w", "y") for f in event_type_features(slug)]
    assert list(frame.columns) == [*ENTITY_COLUMNS, *FEATURE_NAMES, *events, *attrs]
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


def test_event_type_features_are_neutral_usage_features_named_from_the_type():
    for spec in event_type_features(event_slug("Billing.Downgrade-Viewed")):
        assert spec.name.startswith("event_billing_downgrade_viewed_")
        assert (spec.dimension, spec.source, spec.higher_is_healthier) == (
            "usage", "usage_events", None)
        assert "'billing downgrade viewed'" in spec.description
        assert spec.name.endswith(f"_{spec.window}d")
        assert spec.kind in KINDS
        # the name alone gives the spec back (explanations look features up by name)
        assert feature(spec.name) == spec


def test_a_models_feature_list_names_its_event_types():
    names = [f.name for s in ("report_export", "x_share") for f in event_type_features(s)]
    assert event_type_slugs(["events_30d", *names, "attr_tier"]) == ("report_export", "x_share")
    # a feature list with only some measures of a type still names it
    assert event_type_slugs(["event_report_export_share_30d"]) == ("report_export",)


def test_a_date_attribute_is_a_days_since_profile_feature():
    spec = feature("attr_days_since_birth_date")
    assert (spec.dimension, spec.kind, spec.unit) == ("profile", "days_since", "days")
    assert "birth_date" in spec.description
