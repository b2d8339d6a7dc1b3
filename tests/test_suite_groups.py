"""The suite's own scheduling holds: `make test` runs `pytest -n 2 --dist loadgroup`, and each
module with an expensive fixture is one `xdist_group`, so the fixture is built on one worker
only. If the pytest and pytest-xdist versions stop agreeing on how a group is attached to a
test, every group is split over both workers without a word and the suite doubles its work."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.xdist_group("suite-groups")


def test_a_grouped_test_carries_its_group_under_loadgroup(request: pytest.FixtureRequest) -> None:
    if not (os.environ.get("PYTEST_XDIST_WORKER")
            and request.config.getoption("loadgroup", default=False)):
        pytest.skip("only meaningful on an xdist worker of `--dist loadgroup`")
    assert request.node.nodeid.endswith("@suite-groups")
