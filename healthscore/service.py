"""The BentoML service: `bentoml serve healthscore.service:HealthScoreService`.

A thin adapter (the pattern of bentoml/BentoMLflow's service.py): `__init__` builds the settings
and, once per worker, the `serving.state.ServiceState` (rules, champion models, warehouse
snapshot, score store), hands it to the FastAPI app mounted at `/v1` (all the API routes,
typed with pydantic, with their OpenAPI document at `/v1/openapi.json`) and to the dashboard
mounted at `/` (serving.dashboard), and starts the webhook
delivery worker; `on_shutdown` stops it cleanly so pending deliveries resume at the next start.
Per-request access logs are off, and the objects loaded at start-up are frozen out of
the garbage collector's full passes. No scoring, no business rule and no HTTP logic lives here.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

import bentoml

from serving.app import app as api_app
from serving.dashboard.app import app as dashboard_app

logger = logging.getLogger(__name__)

# Read at import because BentoML fixes these when the class is decorated; they are the same
# variables load_settings() reads (serving.workers, .request_timeout_seconds, .tracing).
_WORKERS = int(os.environ.get("HEALTHSCORE_SERVING__WORKERS", "1") or 1)
_TIMEOUT = float(os.environ.get("HEALTHSCORE_SERVING__REQUEST_TIMEOUT_SECONDS", "10") or 10)
_TRACING = os.environ.get("HEALTHSCORE_SERVING__TRACING", "false").strip().lower() in (
    "1", "true", "yes", "on")


# The dashboard second: the API wins for `/v1`, the dashboard answers every other path
# (BentoML's own root page and static content included: they load outside hosts).
@bentoml.asgi_app(dashboard_app, path="/")
@bentoml.asgi_app(api_app, path="/v1")
@bentoml.service(
    name="healthscore",
    workers=_WORKERS,
    logging={"access": {"enabled": False}},
    traffic={"timeout": _TIMEOUT},
    # A regular expression searched in the request URL: every API route.
    tracing={} if _TRACING else {"excluded_urls": ["/v1/"]},
)
class HealthScoreService:
    def __init__(self) -> None:
        from healthscore.settings import load_settings
        from serving.state import ServiceState

        os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
        self.settings = load_settings()
        self.state = ServiceState(self.settings)
        api_app.state.service = self.state
        dashboard_app.state.service = self.state
        self.schedule = None
        if self.settings.serving.daily_schedule:
            from serving.operations import start_schedule

            self.schedule = start_schedule(self.state)
        # Everything loaded so far (libraries, models, the precomputed portfolio) lives as long
        # as the worker. A full collection walks all of it with the event loop stopped, a pause
        # that sets the p99 under load (bench/RESULTS.md). Frozen objects are never scanned.
        gc.collect()
        gc.freeze()
        logger.info("HealthScore service ready: rules %s, models %s, warehouse snapshot %d",
                    self.state.rules.config_version, self.state.labels or "none",
                    self.state.snapshot.generation)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        schedule: Any = getattr(self, "schedule", None)
        if schedule is not None:
            schedule.stop()
        state: Any = getattr(self, "state", None)
        if state is not None:
            state.close()
