"""One real `bentoml serve` on a small world with three scored dates, one headless Chromium (the
system's, driven by Playwright), and a page per test that blocks and counts every request to a
host other than the service.

Without /usr/bin/chromium or Playwright the tests skip, except under CI=true, where they fail:
`.ci/run` installs Chromium with apt-get when it is missing. Screenshots go to
test-artifacts/browser/ (git-ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.service_fixtures import ADMIN_KEY, settings_for

CHROMIUM = Path(os.environ.get("HEALTHSCORE_TEST_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "browser"


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: the browser tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def playwright_api() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (dev extra)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_api: Any) -> Iterator[Any]:
    b = playwright_api.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    yield b
    b.close()


def score_dates(root: Path, store_url: str, days_back: tuple[int, ...] = (14, 7, 0)) -> None:
    """The daily job's path (score_accounts, then record_daily) for a few dates, so history
    and the average over time have points and the rules raise their alerts."""
    from features.contract.warehouse import connect, today
    from scoring.health import load_rules_for
    from scoring.model_set import load_models
    from scoring.pipeline import Scorer, score_accounts
    from serving.events import record_daily
    from serving.store import open_store

    settings = settings_for(root, store_url)
    models, note = load_models(root / "models")
    scorer = Scorer(rules=load_rules_for(settings.health), features=settings.features,
                    models=models, models_note=note)
    con = connect(root / "warehouse.duckdb", read_only=True)
    last = today(con)
    with open_store(store_url) as store:
        for back in days_back:
            frame = score_accounts(con, None, last - timedelta(days=back), scorer, history=store)
            record_daily(store.engine, frame.scores, scorer.rules, settings.serving,
                         churn=frame.longest("churn"))
    con.close()


@pytest.fixture(scope="module")
def served(world_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.service.test_service_serve import Served

    folder = tmp_path_factory.mktemp("browser")
    store_url = f"sqlite:///{folder / 'store.db'}"
    score_dates(world_root, store_url)
    server = Served(world_root, store_url, folder / "bentoml", folder / "serve.log")
    admin = {"X-API-Key": ADMIN_KEY}
    server.keys = {role: server.client.post("/v1/keys", json={"name": f"csm-{role}",  # type: ignore[attr-defined]
                                                               "role": role},
                                            headers=admin).json()["key"]
                   for role in ("reader", "writer")}
    yield server
    server.stop()


class Outside:
    """Requests to any host but the service: aborted, and counted."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def handle(self, route: Any) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", None) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.urls.append(route.request.url)
            route.abort()


@pytest.fixture
def page(browser: Any, served: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookie) at laptop width; asserts afterwards that it asked
    no outside host for anything."""
    context = browser.new_context(base_url=served.base, viewport={"width": 1366, "height": 900},
                                  accept_downloads=True)
    outside = Outside()
    context.route("**/*", outside.handle)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.outside = outside
    yield pg
    context.close()
    assert outside.urls == [], f"requests to outside hosts: {outside.urls}"
    assert errors == [], f"script errors: {errors}"


def shot(pg: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    # A dashboard page is drawn once its script marks it (plotly has drawn every chart).
    # (a function, not an expression: the pages' CSP forbids the eval an expression needs)
    pg.wait_for_function("() => document.documentElement.dataset.ready || "
                         "!document.querySelector('script[src=\"/static/dashboard.js\"]')")
    pg.screenshot(path=str(path), full_page=True)
    return path


def sign_in(pg: Any, key: str, path: str = "/") -> None:
    pg.goto(path)
    pg.wait_for_url(re.compile(r".*/signin.*"))
    pg.get_by_label("API key").fill(key)
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_load_state("load")
    pg.wait_for_selector("html[data-ready]")

