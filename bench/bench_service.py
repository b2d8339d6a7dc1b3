"""Load test of the HealthScore service: a real `bentoml serve` process on loopback, driven by a
separate client process (httpx async), beside the in-process floor (the same engine call without
HTTP).

For `predict`, `calculate` and `analyze`: one client (latency) and 50 concurrent clients for 60 s
(throughput, p50/p99, errors), and the service's resident memory before and after each load
(growth). Data: a generated world (150 accounts x 400 days) and six small LightGBM bundles in a
temporary folder; `calculate` after the first pass over the accounts is a stored-score read.

    .venv/bin/python bench/bench_service.py            # 60 s per load phase
    .venv/bin/python bench/bench_service.py --small    # 5 s per phase
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("predict", "calculate", "analyze")
KEY = "hs_bench_admin_key_0123456789abcdef"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the client process -------------------------------------------------------------------------

async def _load(base: str, endpoint: str, clients: int, seconds: float, accounts: list[str]
                ) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    samples: list[str] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, limits=limits,
                                 timeout=30) as client:
        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < stop:
                body = {"accountId": accounts[i % len(accounts)]}
                i += clients
                t0 = time.perf_counter()
                try:
                    r = await client.post(f"/v1/{endpoint}", json=body)
                    ok = r.status_code == 200
                    why = f"HTTP {r.status_code}: {r.text[:200]}"
                except Exception as exc:  # a transport error counts as an error, the run goes on
                    ok, why = False, f"{type(exc).__name__}: {exc}"
                latencies.append(time.perf_counter() - t0)
                errors += not ok
                if not ok and len(samples) < 3:
                    samples.append(why)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"n": len(latencies), "errors": errors, "seconds": elapsed, "samples": samples,
            "client_cpu": cpu / elapsed, "latencies": latencies,
            "p50_ms": 1000 * _pct(latencies, 0.5), "p99_ms": 1000 * _pct(latencies, 0.99),
            "rps": len(latencies) / elapsed}


def client_main(args: argparse.Namespace) -> None:
    accounts = json.loads(Path(args.accounts).read_text())
    out = asyncio.run(_load(args.base, args.endpoint, args.clients, args.seconds, accounts))
    sys.stdout.write(json.dumps(out))


# --- the orchestrating process -------------------------------------------------------------------

def _prepare(folder: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from service_fixtures import build_warehouse, train_bundles  # the tests' world builder

    tables = build_warehouse(folder / "warehouse.duckdb")
    train_bundles(folder / "warehouse.duckdb", folder / "models")
    return sorted(tables["accounts"]["account_id"].astype(str))


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHSCORE_")}
    env.update({"BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "true",
                "HEALTHSCORE_PATHS__WAREHOUSE": str(folder / "warehouse.duckdb"),
                "HEALTHSCORE_PATHS__STORE_URL": f"sqlite:///{folder / 'store.db'}",
                "HEALTHSCORE_PATHS__MODELS_DIR": str(folder / "models"),
                "HEALTHSCORE_SERVING__ADMIN_KEY": KEY})
    return env


def _rss(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def _clients(base: str, endpoint: str, clients: int, seconds: float, folder: Path,
             procs: int) -> dict[str, Any]:
    """Run the load from `procs` client processes sharing `clients` connections (one httpx
    pool of 50 connections costs the client ~4x more CPU a request than five pools of 10)."""
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    running = [subprocess.Popen(
        [sys.executable, __file__, "--client", "--base", base, "--endpoint", endpoint,
         "--clients", str(n), "--seconds", str(seconds),
         "--accounts", str(folder / "accounts.json")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT) for n in shares]
    parts = []
    for proc in running:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a client process failed ({proc.returncode})")
        parts.append(json.loads(out))
    latencies = [x for part in parts for x in part["latencies"]]
    elapsed = max(part["seconds"] for part in parts)
    return {"n": len(latencies), "errors": sum(p["errors"] for p in parts),
            "seconds": elapsed, "samples": [s for p in parts for s in p["samples"]][:3],
            "client_cpu": sum(p["client_cpu"] * p["seconds"] for p in parts) / elapsed,
            "p50_ms": 1000 * _pct(latencies, 0.5), "p99_ms": 1000 * _pct(latencies, 0.99),
            "rps": len(latencies) / elapsed}


def _cpu(pid: int) -> float:
    """CPU seconds used so far by the service and its workers."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def _floor(folder: Path, accounts: list[str], n: int) -> dict[str, float]:
    """p50 of the engine call itself, in this process (no HTTP, no auth)."""
    from features.config import load_settings
    from serving import api
    from serving.engine import HealthScoreEngine

    saved = dict(os.environ)
    os.environ.update(_env(folder))
    os.environ["HEALTHSCORE_PATHS__STORE_URL"] = f"sqlite:///{folder / 'floor.db'}"
    try:
        engine = HealthScoreEngine(load_settings(), start_worker=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    calls = {"predict": lambda a: engine.predict(api.PredictRequest(accountId=a)),
             "calculate": lambda a: engine.calculate(api.CalculateRequest(accountId=a)),
             "analyze": lambda a: engine.analyze(api.AnalyzeRequest(accountId=a))}
    out = {}
    for name, call in calls.items():
        for a in accounts:  # warm: the first calculate of an account stores it
            call(a)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            call(accounts[i % len(accounts)])
            times.append(time.perf_counter() - t0)
        out[name] = 1000 * statistics.median(times)
    engine.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5 s per load phase")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--client-procs", type=int, default=5,
                        help="client processes sharing the concurrent connections")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--accounts", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client_main(args)
        return

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    sys.path.insert(0, str(ROOT))
    from serving.serve_cli import serve_command

    seconds = args.seconds or (5.0 if args.small else 60.0)
    console = Console(width=max(110, Console().width))
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp, Progress() as bar:
        folder = Path(tmp)
        task = bar.add_task("preparing data and models", total=2 + 2 * len(ENDPOINTS))
        accounts = _prepare(folder)
        (folder / "accounts.json").write_text(json.dumps(accounts))
        floor = _floor(folder, accounts, 200 if args.small else 1000)
        bar.update(task, advance=1, description="starting bentoml serve")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        log = open(folder / "serve.log", "wb")  # noqa: SIM115
        server = subprocess.Popen(serve_command("127.0.0.1", port), cwd=ROOT, env=_env(folder),
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        rows = []
        try:
            import httpx

            end = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > end:
                    log.flush()
                    tail = (folder / "serve.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(f"the service did not start:\n{tail}")
                time.sleep(0.3)
            bar.update(task, advance=1)
            for endpoint in ENDPOINTS:
                for clients, secs in ((1, min(seconds, 10.0)), (args.clients, seconds)):
                    bar.update(task, description=f"{endpoint}: {clients} client(s), {secs:.0f}s")
                    before, cpu0 = _rss(server.pid), _cpu(server.pid)
                    res = _clients(base, endpoint, clients, secs, folder, args.client_procs)
                    res.update(endpoint=endpoint, clients=clients, rss_before=before,
                               rss_after=_rss(server.pid),
                               server_cpu=(_cpu(server.pid) - cpu0) / res["seconds"])
                    rows.append(res)
                    bar.update(task, advance=1)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)
            log.close()

    table = Table(title=f"HealthScore service on loopback: {seconds:.0f}s per load, separate "
                        "client process; times in ms, memory = service RSS in MB, "
                        "CPU = share of one core")
    for col in ("endpoint", "clients", "requests", "errors", "req/s", "p50", "p99",
                "floor p50", "RSS", "CPU server/client"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for r in rows:
        table.add_row(r["endpoint"], str(r["clients"]), str(r["n"]), str(r["errors"]),
                      f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                      f"{floor[r['endpoint']]:.2f}",
                      f"{r['rss_before']:.0f}->{r['rss_after']:.0f}",
                      f"{r['server_cpu']:.0%} / {r['client_cpu']:.0%}")
    console.print(table)
    for r in rows:
        for why in r["samples"]:
            console.print(f"error sample, {r['endpoint']} x{r['clients']}: {why}")
    console.print("floor p50: the same engine call in-process (no HTTP, no auth). "
                  f"Load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
