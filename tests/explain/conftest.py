"""The explanation tests' world: one small trained world per session, every active account."""

from __future__ import annotations

import pytest

from tests.support.explain_fixtures import population_of, world_for


@pytest.fixture(scope="module")
def explain_world(tmp_path_factory):
    return world_for(tmp_path_factory)


@pytest.fixture(scope="module")
def population(explain_world):
    return population_of(explain_world)
