"""Property-based fuzz of the OpenAPI document (schemathesis): no generated request, valid or
not, makes the API answer 5xx. Runs against the app the service mounts, with the service's
engine loaded (an admin key, so every endpoint is reached).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from serving.app import app as _app
from tests.support.service_fixtures import ADMIN_KEY, service_client, store_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def loaded_service(world_root, tmp_path_factory):
    """The service started (its lifespan sets the engine the mounted app uses)."""
    with store_for("sqlite", tmp_path_factory.mktemp("fuzz")) as url, \
            service_client(world_root, url):
        yield


# The document is read from the app itself (it needs no engine); requests go through ASGI.
# (schemathesis.pytest.from_fixture does not run on pytest 9, hence a module-level schema.)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail(case):
    if case.method == "DELETE" and case.path == "/keys/{key_id}":
        case.path_parameters = {"key_id": 2**31 - 1}  # keep the fuzzing key itself alive
    response = case.call(headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code < 500, (case.method, case.path, response.status_code,
                                        response.text[:500])
