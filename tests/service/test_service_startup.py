"""What the service loads at start-up and how it lives next to the daily job: no models still
serves the rules score (and says why there are no probabilities); the warehouse is read from a
snapshot, so a writer (ingest, the daily job) is never locked out and a new snapshot is picked up.
"""

from __future__ import annotations

import shutil

import duckdb
import pytest

from serving import schemas, scores
from serving.errors import NotFound
from serving.state import ServiceState
from tests.support.service_fixtures import settings_for


@pytest.fixture
def own_world(world_root, tmp_path):
    """A private copy of the session warehouse (this test writes to it) and its models."""
    shutil.copyfile(world_root / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    shutil.copytree(world_root / "models", tmp_path / "models")
    return tmp_path


def test_without_models_the_rules_score_is_served_and_probabilities_are_explained(
        world_root, tmp_path):
    settings = settings_for(world_root, f"sqlite:///{tmp_path / 's.db'}", precompute=False)
    settings = settings.model_copy(update={"paths": settings.paths.model_copy(
        update={"models_dir": tmp_path / "no-models"})})
    state = ServiceState(settings, start_worker=False)
    try:
        hs = scores.calculate(state, schemas.CalculateRequest(accountId="A00080"))
        assert hs.score is not None and hs.probabilities == {}
        assert hs.churnRisk is None and "probabilities unavailable" in hs.probabilitiesNote
        p = scores.predict(state, schemas.PredictRequest(accountId="A00080"))
        assert not p.available and p.trajectory["30d"] is not None
    finally:
        state.close()


def test_a_writer_is_never_locked_out_and_its_changes_are_picked_up(own_world):
    settings = settings_for(own_world, f"sqlite:///{own_world / 's.db'}")
    state = ServiceState(settings, start_worker=False)
    try:
        generation = state.snapshot.generation
        with pytest.raises(NotFound):
            scores.calculate(state, schemas.CalculateRequest(accountId="LATECOMER"))
        # The daily ingest opens the warehouse read-write while the service is up.
        con = duckdb.connect(str(own_world / "warehouse.duckdb"))
        con.execute("insert into accounts (account_id, name, segment, created_at) "
                    "select 'LATECOMER', 'Late Ltd', 'smb', timestamp '2024-06-01'")
        # ... and the service keeps answering from its snapshot meanwhile.
        still = scores.calculate(state, schemas.CalculateRequest(accountId="A00081"))
        assert still.score is not None
        con.close()
        state.tick()
        assert state.snapshot.generation == generation + 1
        hs = scores.calculate(state, schemas.CalculateRequest(accountId="LATECOMER"))
        assert hs.customer == "Late Ltd"
    finally:
        state.close()


def test_api_requests_are_not_traced_unless_tracing_is_switched_on(monkeypatch):
    """With no exporter, BentoML's tracing middleware built unsampled spans for every request:
    a third of a predict's CPU. Off by default (HEALTHSCORE_SERVING__TRACING switches it on)."""
    import importlib
    import re

    import healthscore.service as service

    excluded = service.HealthScoreService.config["tracing"]["excluded_urls"]
    for route in ("predict", "analyze", "calculate", "accounts/A00001/summary"):
        assert any(re.search(p, f"http://127.0.0.1:3000/v1/{route}") for p in excluded)
    monkeypatch.setenv("HEALTHSCORE_SERVING__TRACING", "true")
    try:
        assert "excluded_urls" not in importlib.reload(service).HealthScoreService.config.get(
            "tracing", {})
    finally:
        monkeypatch.delenv("HEALTHSCORE_SERVING__TRACING")
        importlib.reload(service)
