"""The dashboard on a 10,000-account world: the portfolio (`/`) rendered in under 2 s and an
account's page (`/accounts/{id}`) in under 1 s, server time and browser load together.

A real `bentoml serve` (1 worker) on a generated world (10,000 accounts x 400 days, six small
LightGBM bundles, the store holding the daily job's scores of the last three weeks), driven by
headless Chromium (the system's `/usr/bin/chromium`, through Playwright). For each page:

- server time: the GET of the page's HTML over loopback (httpx, signed-in cookie), median of the
  repeats; for the account page, each repeat is an account never opened before (its
  explanation is computed then: the cold case, the one a CSM meets), then the same accounts
  again (warm);
- browser load: from navigation start to every chart drawn (the page's script marks
  `html[data-ready]` after plotly has drawn), server time included; plotly.js comes from the
  browser's cache after the first page, as it would for a CSM.

    .venv/bin/python bench/bench_dashboard.py                      # 10,000 accounts
    .venv/bin/python bench/bench_dashboard.py --accounts 1000 --repeat 3
    .venv/bin/python bench/bench_dashboard.py --folder /tmp/dash10k  # keep the world for a rerun
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "hs_bench_admin_key_0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
TARGETS = {"portfolio": 2.0, "account": 1.0}
"""Seconds, server time plus browser load."""


def _world(folder: Path, accounts: int, days: int, progress: Any) -> None:
    """Warehouse, bundles and three weeks of daily scores (skipped when `folder` has them)."""
    import duckdb

    from features.contract.warehouse import connect, load_frames, today
    from features.synth.generate import generate_world
    from healthscore.settings import load_settings
    from scoring.health import load_rules_for
    from scoring.model_set import load_models
    from scoring.pipeline import Scorer, score_accounts
    from serving.events import record_daily
    from serving.store import open_store
    from tests.support.service_fixtures import train_bundles  # the tests' tiny bundles

    wh = folder / "warehouse.duckdb"
    if not wh.exists():
        progress(f"generating {accounts:,} accounts x {days} days")
        world = generate_world(accounts, date(2024, 1, 1), days, seed=7)
        con = duckdb.connect(str(wh))
        load_frames(con, world.tables)
        con.close()
    if not (folder / "models").exists():
        progress("training six small bundles")
        train_bundles(wh, folder / "models")
    store_url = f"sqlite:///{folder / 'store.db'}"
    if not (folder / "store.db").exists():
        settings = load_settings(paths={"warehouse": str(wh), "store_url": store_url,
                                        "models_dir": str(folder / "models")})
        models, note = load_models(folder / "models")
        scorer = Scorer(rules=load_rules_for(settings.health), features=settings.features,
                        models=models, models_note=note)
        con = connect(wh, read_only=True)
        last = today(con)
        with open_store(store_url) as store:
            for back in (21, 14, 7):
                progress(f"daily scores of {last - timedelta(days=back)}")
                frame = score_accounts(con, None, last - timedelta(days=back), scorer,
                                       history=store)
                record_daily(store.engine, frame.scores, scorer.rules, settings.serving,
                             churn=frame.longest("churn"))
        con.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(folder: Path, port: int) -> subprocess.Popen[bytes]:
    import httpx

    from serving.serve_cli import serve_command

    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHSCORE_")}
    env.update({"BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "true",
                "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(ROOT),
                "HEALTHSCORE_PATHS__WAREHOUSE": str(folder / "warehouse.duckdb"),
                "HEALTHSCORE_PATHS__STORE_URL": f"sqlite:///{folder / 'store.db'}",
                "HEALTHSCORE_PATHS__MODELS_DIR": str(folder / "models"),
                "HEALTHSCORE_SERVING__ADMIN_KEY": KEY})
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(serve_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + 900
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            _stop(proc)
            raise SystemExit("bentoml serve did not start:\n"
                             + (folder / "serve.log").read_text(errors="replace")[-3000:])
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _signed_in(base: str, key: str) -> Any:
    import httpx

    client = httpx.Client(base_url=base, timeout=60)
    token = re.search(r'name="token" value="([^"]+)"', client.get("/signin").text).group(1)
    client.post("/signin", data={"key": key, "token": token})
    return client


def _server_time(client: Any, path: str) -> float:
    t0 = time.perf_counter()
    r = client.get(path)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"GET {path}: {r.status_code} {r.text[:300]}")
    return elapsed


def _browser_load(page: Any, path: str) -> float:
    t0 = time.perf_counter()
    page.goto(path)
    page.wait_for_selector("html[data-ready]")
    page.wait_for_function("() => [...document.querySelectorAll('[data-chart]')]"
                           ".every(el => el.querySelector('.main-svg'))")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=None,
                        help="Keep the world here (reused when it is already there).")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import httpx
    from playwright.sync_api import sync_playwright
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    tmp = None
    if args.folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-dashboard-")
        folder = Path(tmp.name)
    else:
        folder = args.folder
        folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, list[float], float | None]] = []
    with Progress(console=console) as bar:
        task = bar.add_task("preparing", total=None)

        def progress(what: str) -> None:
            bar.update(task, description=what)

        _world(folder, args.accounts, args.days, progress)
        progress("starting bentoml serve (it scores the portfolio)")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        server = _serve(folder, port)
        startup = time.perf_counter() - t0
        try:
            reader = httpx.post(f"{base}/v1/keys", json={"name": "bench", "role": "reader"},
                                headers={"X-API-Key": KEY}).json()["key"]
            client = _signed_in(base, reader)
            listed = client.get("/export.csv").text.splitlines()[1:]
            ids = [line.split(",", 1)[0] for line in listed]
            accounts = ids[:: max(1, len(ids) // (4 * args.repeat))]
            progress("server time: portfolio")
            first = _server_time(client, "/")  # builds the table of this snapshot
            portfolio = [_server_time(client, "/?sort=churn&order=desc&page=2")
                         for _ in range(args.repeat)]
            rows.append(("portfolio", "server (first, builds the table)", [first], None))
            rows.append(("portfolio", "server", portfolio, None))
            cold_ids = accounts[: args.repeat]
            progress("server time: account pages")
            cold = [_server_time(client, f"/accounts/{a}") for a in cold_ids]
            warm = [_server_time(client, f"/accounts/{a}") for a in cold_ids]
            rows.append(("account", "server, first visit", cold, None))
            rows.append(("account", "server, again", warm, None))
            progress("browser load")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                context = browser.new_context(base_url=base,
                                              viewport={"width": 1366, "height": 900})
                page = context.new_page()
                page.goto("/signin")
                page.get_by_label("API key").fill(reader)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_selector("html[data-ready]")
                loads = [_browser_load(page, f"/?band=&page={i % 3 + 1}")
                         for i in range(args.repeat)]
                rows.append(("portfolio", "browser load (server included)", loads,
                             TARGETS["portfolio"]))
                fresh = accounts[args.repeat: 2 * args.repeat]
                acc = [_browser_load(page, f"/accounts/{a}") for a in fresh]
                rows.append(("account", "browser load, first visit (server included)", acc,
                             TARGETS["account"]))
                browser.close()
        finally:
            _stop(server)
    load = os.getloadavg()
    table = Table(title=f"Dashboard, {args.accounts:,} accounts x {args.days} days "
                        f"(service start-up {startup:.0f} s; load average "
                        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    for col in ("page", "what", "n", "median s", "max s", "target s", "met"):
        table.add_column(col, justify="left" if col in ("page", "what") else "right")
    for page_name, what, values, target in rows:
        med = statistics.median(values)
        table.add_row(page_name, what, str(len(values)), f"{med:.3f}", f"{max(values):.3f}",
                      f"{target:.1f}" if target else "", ("yes" if med < target else "NO")
                      if target else "")
    console.print(table)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
