"""Test data of the service tests, built once per session: a small generated world (150 accounts
x 400 days) in a DuckDB warehouse, six tiny champion bundles (churn/expansion x 30/60/90) and
settings pointing at them. Each test gets its own store (SQLite file or a PostgreSQL schema).

The warehouse is loaded straight from `generate_world`'s tables (the contract columns): this
module does not depend on the ingest command.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd

from healthscore.settings import load_settings

WORLD_START = date(2024, 1, 1)
N_ACCOUNTS = 150
DAYS = 400


def build_warehouse(path: Path, seed: int = 11) -> dict[str, pd.DataFrame]:
    from features.contract.warehouse import load_frames
    from features.synth.generate import generate_world

    world = generate_world(N_ACCOUNTS, WORLD_START, DAYS, seed)
    con = duckdb.connect(str(path))
    load_frames(con, world.tables)
    con.close()
    return world.tables


def train_bundles(warehouse: Path, models_dir: Path) -> None:
    """Six small bundles fitted on the warehouse's features (labels from the rules score plus
    noise: the tests need real boosters, not good ones)."""
    from features.build import build_features
    from features.contract.warehouse import connect
    from features.registry import FEATURE_SET_VERSION, FEATURES
    from features.settings import FeatureConfig
    from scoring.bundle import Bundle, category_levels, encode_frame, save_bundle

    con = connect(warehouse, read_only=True)
    ids = [r[0] for r in con.execute("select account_id from accounts").fetchall()]
    dates = [pd.Timestamp("2024-09-01"), pd.Timestamp("2024-11-01")]
    ents = pd.DataFrame({"account_id": ids * len(dates),
                         "as_of": [d for d in dates for _ in ids]})
    feats = build_features(con, ents, FeatureConfig())
    con.close()
    names = tuple(f.name for f in FEATURES)
    cats = category_levels(feats, names)
    x = encode_frame(feats, names, cats)
    rng = np.random.default_rng(5)
    logins = np.nan_to_num(feats["logins_30d"].to_numpy(dtype=float))
    for target in ("churn", "expansion"):
        for h in (30, 60, 90):
            signal = -logins if target == "churn" else logins
            y = (signal + rng.normal(0, np.std(logins) + 1, len(logins))
                 > np.quantile(signal, 0.7)).astype(int)
            booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1,
                                 "min_data_in_leaf": 10, "num_threads": 1, "seed": 1},
                                lgb.Dataset(x, y, feature_name=list(names), free_raw_data=False),
                                num_boost_round=10 + h // 10)
            save_bundle(Bundle(booster=booster, label=f"{target}_{h}d", features=names,
                               categories=cats, feature_set_version=FEATURE_SET_VERSION),
                        models_dir / f"{target}_{h}d")


def settings_for(root: Path, store_url: str, **serving: Any) -> Any:
    return load_settings(
        paths={"warehouse": str(root / "warehouse.duckdb"), "store_url": store_url,
               "models_dir": str(root / "models")},
        serving={"admin_key": ADMIN_KEY, "warehouse_check_seconds": 0.0,
                 "key_cache_seconds": 0.0, "delivery_poll_seconds": 0.05,
                 "webhook_backoff_seconds": 0.05, "webhook_allow_hosts": LOCAL_RECEIVERS,
                 "daily_schedule": False, **serving},
    )


ADMIN_KEY = "hs_test_admin_key_0123456789abcdef"
LOCAL_RECEIVERS = ["127.0.0.1"]
"""Where the tests' webhook receivers listen: allow-listed, as loopback is refused otherwise."""


def clean_env() -> None:
    """No HEALTHSCORE_ variable of the shell, but the suite's own settings file
    (HEALTHSCORE_CONFIG, set by tests/conftest.py)."""
    for k in [k for k in os.environ if k.startswith("HEALTHSCORE_") and k != "HEALTHSCORE_CONFIG"]:
        del os.environ[k]


# --- the shared world and stores ---------------------------------------------------------------
import contextlib  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

_BUILT: dict[str, Path] = {}
_ASGI: dict[str, Any] = {}


def world_root_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's warehouse and models folder (built on first use, then shared)."""
    if "root" not in _BUILT:
        root = tmp_path_factory.mktemp("world")
        build_warehouse(root / "warehouse.duckdb")
        train_bundles(root / "warehouse.duckdb", root / "models")
        _BUILT["root"] = root
    return _BUILT["root"]


def postgres_schema() -> contextlib.AbstractContextManager[str]:
    """A fresh PostgreSQL schema (dropped afterwards); skip, or fail under CI=true."""
    from tests.conftest import postgres_schema as schema

    return schema("hs_svc")


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def store_for(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'store-{uuid.uuid4().hex[:8]}.db'}"
    else:
        with postgres_schema() as url:
            yield url


@contextlib.contextmanager
def service_client(root: Path, store_url: str, **serving: Any) -> Iterator[Any]:
    """A Starlette TestClient on `HealthScoreService.to_asgi()` (no server process), configured
    through the same HEALTHSCORE_* variables a deployment uses; admin key in the headers."""
    from starlette.testclient import TestClient

    from healthscore.service import HealthScoreService

    env = {"HEALTHSCORE_PATHS__WAREHOUSE": str(root / "warehouse.duckdb"),
           "HEALTHSCORE_PATHS__STORE_URL": store_url,
           "HEALTHSCORE_PATHS__MODELS_DIR": str(root / "models"),
           "HEALTHSCORE_SERVING__ADMIN_KEY": ADMIN_KEY,
           "HEALTHSCORE_SERVING__WAREHOUSE_CHECK_SECONDS": "0",
           "HEALTHSCORE_SERVING__KEY_CACHE_SECONDS": "0",
           "HEALTHSCORE_SERVING__DELIVERY_POLL_SECONDS": "0.05",
           "HEALTHSCORE_SERVING__WEBHOOK_BACKOFF_SECONDS": "0.05",
           "HEALTHSCORE_SERVING__WEBHOOK_ALLOW_HOSTS": json.dumps(LOCAL_RECEIVERS),
           # The tests' services score only when a test asks: no run at 04:00 UTC mid-suite.
           "HEALTHSCORE_SERVING__DAILY_SCHEDULE": "false",
           **{f"HEALTHSCORE_SERVING__{k.upper()}": str(v) for k, v in serving.items()}}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # One ASGI app per process: BentoML registers its Prometheus metrics when the app is
        # built; each client's lifespan still creates a fresh service instance (fresh env).
        if "asgi" not in _ASGI:
            _ASGI["asgi"] = HealthScoreService.to_asgi()
        with TestClient(_ASGI["asgi"], headers={"X-API-Key": ADMIN_KEY}) as c:
            yield c
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def state_of_client() -> Any:
    from serving.app import app

    return app.state.service


# --- a local webhook receiver ---------------------------------------------------------------------
import http.server  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records webhook calls; `fail_first` makes the first
    N calls of each event fail with 500 (`fail_always` every call)."""

    def __init__(self, fail_first: int = 0, fail_always: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.fail_always = fail_always
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event_id = self.headers.get("X-HealthScore-Event-Id", "")
                with receiver._lock:
                    n = receiver._seen.get(event_id, 0) + 1
                    receiver._seen[event_id] = n
                    ok = not receiver.fail_always and n > receiver.fail_first
                    if ok:
                        receiver.calls.append({"headers": dict(self.headers), "body": body,
                                               "path": self.path})
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def event_ids(self) -> list[str]:
        with self._lock:
            return [c["headers"]["X-HealthScore-Event-Id"] for c in self.calls]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
