"""Shared fixtures. Tests run offline and write only under pytest's tmp paths."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from tests.support.suite_settings import SUITE_SETTINGS

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Every test, and every command a test runs, reads the suite's own settings file (a small
# LightGBM search budget), never a config file of the shell the suite was started from.
os.environ["HEALTHSCORE_CONFIG"] = str(SUITE_SETTINGS)


# --- PostgreSQL (score store tests) -----------------------------------------------------------
# Each test gets its own schema on the local server (127.0.0.1:5432, user postgres, trust auth,
# database `test`), dropped afterwards. Unreachable server: the test skips, except under CI=true,
# where it fails, so CI can never pass without having run against PostgreSQL.
POSTGRES_DSN = os.environ.get(
    "HEALTHSCORE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def postgres_schema(prefix: str = "hs_test") -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty schema on the test PostgreSQL (dropped afterwards)."""
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL unreachable at {POSTGRES_DSN}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'create schema "{schema}"')
        base = POSTGRES_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
        sep = "&" if "?" in base else "?"
        try:
            yield f"{base}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'drop schema if exists "{schema}" cascade')


@pytest.fixture
def postgres_url():
    """A fresh schema per test; skips without a server, fails under CI=true."""
    with postgres_schema() as url:
        yield url


# --- the service tests' world -------------------------------------------------------------------
@pytest.fixture(scope="session")
def world_root(tmp_path_factory: pytest.TempPathFactory):
    """A small generated warehouse and six tiny champion bundles, built once per process."""
    from tests.support.service_fixtures import world_root_path

    return world_root_path(tmp_path_factory)
