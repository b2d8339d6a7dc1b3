"""Property-based fuzz of the whole OpenAPI document (schemathesis), authenticated as each role:
no generated request, valid or not, with any Unicode text and NUL bytes, makes the API answer
5xx, and every answer matches the document (status, content type, schema). Runs against the app
the service mounts, with the service's state loaded; the example budget is fixed.

schemathesis never sends an unpaired surrogate (it cannot be encoded for the wire as a string),
so `test_every_operation_refuses_an_unpaired_surrogate` sends one, JSON-escaped, to every
operation that takes a body.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from serving.app import app as _app
from tests.support.service_fixtures import ADMIN_KEY, service_client, store_for

pytestmark = pytest.mark.slow
ROLES = ("reader", "writer", "admin")
BUDGET = 6
"""Examples per operation, per generation mode, per role."""


@pytest.fixture(scope="module")
def keys(world_root, tmp_path_factory):
    """The service started (its lifespan sets the state the mounted app uses), and a key of
    each role."""
    with store_for("sqlite", tmp_path_factory.mktemp("fuzz")) as url, \
            service_client(world_root, url) as c:
        made = {role: c.post("/v1/keys", json={"name": f"fuzz-{role}", "role": role}).json()
                for role in ROLES if role != "admin"}
        yield {"admin": ADMIN_KEY, **{role: k["key"] for role, k in made.items()}}


# The document is read from the app itself (it needs no state); requests go through ASGI.
# (schemathesis.pytest.from_fixture does not run on pytest 9, hence a module-level schema.)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)
schema.config.generation.update(modes=["positive", "negative"], max_examples=BUDGET,
                                allow_x00=True, codec=None, deterministic=True)


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(max_examples=BUDGET, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail(case, role, keys):
    if case.method == "DELETE" and case.path == "/keys/{key_id}":
        case.path_parameters = {"key_id": 2**31 - 1}  # keep the fuzzing keys themselves alive
    # setWeights and setThresholds rescore the portfolio: slow on a loaded machine, not wrong.
    response = case.call(headers={"X-API-Key": keys[role]}, timeout=120)
    assert response.status_code < 500, (role, case.method, case.path, response.status_code,
                                        response.text[:500])
    case.validate_response(response, checks=[response_schema_conformance,
                                             content_type_conformance])


def body_operations():
    doc = _app.openapi()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if "requestBody" in op:
                yield method.upper(), path.replace("{key_id}", "1").replace(
                    "{webhook_id}", "1").replace("{account_id}", "A00001")


@pytest.mark.parametrize("method, path", sorted(set(body_operations())))
def test_every_operation_refuses_an_unpaired_surrogate(method, path, keys):
    from starlette.testclient import TestClient

    with TestClient(_app, headers={"X-API-Key": keys["admin"]}) as c:
        r = c.request(method, path, content=b'{"accountId": "\\udc80x", "url": "\\ud800"}',
                      headers={"content-type": "application/json"})
    assert r.status_code == 422, (method, path, r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"][0] == "body"
