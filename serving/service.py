"""The BentoML service: `bentoml serve serving.service:HealthScoreService`.

A thin adapter (the pattern of bentoml/BentoMLflow's service.py): `__init__` loads the settings,
the rules, the champion models, the warehouse snapshot and the store once per worker through
`HealthScoreEngine`, hands the engine to the FastAPI app mounted at `/v1` (all the API routes,
typed with pydantic, with their OpenAPI document at `/v1/openapi.json`), and starts the webhook
delivery worker; `on_shutdown` stops it cleanly so pending deliveries resume at the next start.
Per-request access logs are off. No scoring, no business rule and no HTTP logic lives here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import bentoml

from serving.app import app as api_app

logger = logging.getLogger(__name__)

# Read at import because BentoML fixes the worker count when the class is decorated; it is the
# same variable load_settings() reads (serving.workers).
_WORKERS = int(os.environ.get("HEALTHSCORE_SERVING__WORKERS", "1") or 1)


@bentoml.asgi_app(api_app, path="/v1")
@bentoml.service(
    name="healthscore",
    workers=_WORKERS,
    logging={"access": {"enabled": False}},
    traffic={"timeout": 120},
)
class HealthScoreService:
    def __init__(self) -> None:
        from features.config import load_settings
        from serving.engine import HealthScoreEngine

        os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
        self.settings = load_settings()
        self.engine = HealthScoreEngine(self.settings)
        api_app.state.engine = self.engine
        logger.info("HealthScore service ready: rules %s, models %s, warehouse snapshot %d",
                    self.engine.rules.config_version, sorted(self.engine._labels()) or "none",
                    self.engine.snapshot.generation)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        engine: Any = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
