"""Load test of the HealthScore service: a real `bentoml serve` process on loopback, driven by a
separate client process, beside the in-process floor (the same `serving.scores` call without
HTTP) and beside `mlflow models serve` answering the same churn model.

For `predict`, `calculate` and `analyze` (and MLflow's `/invocations`): one client (latency)
and 50 concurrent clients for 60 s (throughput, p50/p99, errors), with the service's resident
memory sampled every second through each load. Each 50-client load follows a warm-up at the
same load that is not measured (30 s; allocator arenas and caches fill, and BentoML holds each
request's timer for the 10 s request timeout, `serving.request_timeout_seconds`: measured, the
service's memory levels off after 30-60 s), so "growth" is the change over the measured load
and MB/min the slope fitted to its samples.
Data: a generated world (150 accounts x 400 days) and six small LightGBM bundles in a temporary
folder; `calculate` after the first pass over the accounts is a stored-score read.

The client is `wrk` (Debian package `wrk`) when it is on the PATH: a C load generator costs the
2-core machine ~10x less CPU a request than Python clients, so the service, not the client, is
what is measured. Without it, `--client-procs` Python processes (httpx, async) share the
connections, and the table says so.

    .venv/bin/python bench/bench_service.py            # 60 s per load phase
    .venv/bin/python bench/bench_service.py --small    # 5 s per phase
    .venv/bin/python bench/bench_service.py --seconds 180 --endpoints predict --no-mlflow
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("predict", "calculate", "analyze")
MLFLOW = "mlflow /invocations"
KEY = "hs_bench_admin_key_0123456789abcdef"
WARMUP_S = 30.0
"""The unmeasured warm-up before each concurrent load (more than the service's request timeout,
for which BentoML keeps every request's timer)."""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the load: wrk ------------------------------------------------------------------------------

_WRK_LUA = """
local bodies = {}
for line in io.lines(%(bodies)s) do bodies[#bodies + 1] = line end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = %(key)s
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'HSJSON {"n": %%d, "errors": %%d, "us": %%d, "p50": %%d, "p99": %%d}\\n',
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk(url: str, bodies: Path, clients: int, seconds: float) -> dict[str, Any]:
    """One wrk process: `clients` keep-alive connections on one thread for `seconds`."""
    script = bodies.with_suffix(".lua")
    script.write_text(_WRK_LUA % {"bodies": json.dumps(str(bodies)), "key": json.dumps(KEY)})
    started, cpu0 = time.perf_counter(), _child_cpu()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - started
    line = next(x for x in out.splitlines() if x.startswith("HSJSON "))
    r = json.loads(line[len("HSJSON "):])
    secs = r["us"] / 1e6
    return {"n": r["n"], "errors": r["errors"], "seconds": secs, "samples": [],
            "p50_ms": r["p50"] / 1000, "p99_ms": r["p99"] / 1000, "rps": r["n"] / secs,
            "client_cpu": (_child_cpu() - cpu0) / elapsed, "client": "wrk"}


def _child_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


# --- the load: Python client processes (no wrk) ---------------------------------------------------

async def _load(url: str, clients: int, seconds: float, bodies: list[str]) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    samples: list[str] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"X-API-Key": KEY, "content-type": "application/json"}
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < stop:
                body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=body)
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
    return {"errors": errors, "seconds": elapsed, "samples": samples,
            "client_cpu": cpu / elapsed, "latencies": latencies}


def client_main(args: argparse.Namespace) -> None:
    bodies = Path(args.bodies).read_text().splitlines()
    out = asyncio.run(_load(args.url, args.clients, args.seconds, bodies))
    sys.stdout.write(json.dumps(out))


def _python_clients(url: str, bodies: Path, clients: int, seconds: float, procs: int
                    ) -> dict[str, Any]:
    """`procs` client processes sharing `clients` connections (one httpx pool of 50
    connections costs the client ~4x more CPU a request than five pools of 10)."""
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    running = [subprocess.Popen(
        [sys.executable, __file__, "--client", "--url", url, "--clients", str(n),
         "--seconds", str(seconds), "--bodies", str(bodies)],
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
            "rps": len(latencies) / elapsed, "client": f"httpx x{procs}"}


# --- the server side ------------------------------------------------------------------------------

def _prepare(folder: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.support.service_fixtures import build_warehouse, train_bundles  # the tests' world

    tables = build_warehouse(folder / "warehouse.duckdb")
    train_bundles(folder / "warehouse.duckdb", folder / "models")
    return sorted(tables["accounts"]["account_id"].astype(str))


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHSCORE_")}
    env.update({"BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "true",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "HEALTHSCORE_PATHS__WAREHOUSE": str(folder / "warehouse.duckdb"),
                "HEALTHSCORE_PATHS__STORE_URL": f"sqlite:///{folder / 'store.db'}",
                "HEALTHSCORE_PATHS__MODELS_DIR": str(folder / "models"),
                "HEALTHSCORE_SERVING__ADMIN_KEY": KEY})
    return env


def _procs(pid: int) -> list[Any]:
    import psutil

    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _rss(pid: int) -> float:
    return sum(p.memory_info().rss for p in _procs(pid) if p.is_running()) / 2**20


def _cpu(pid: int) -> float:
    """CPU seconds used so far by the server and its workers."""
    total = 0.0
    for p in _procs(pid):
        t = p.cpu_times()
        total += t.user + t.system
    return total


class _Memory:
    """The server's RSS every second while a load runs, in a thread of this process."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples = pid, [(0.0, _rss(pid))]
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.perf_counter() - self._t0, _rss(self.pid)))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self._t0, _rss(self.pid)))
        start, end = self.samples[0][1], self.samples[-1][1]
        return {"rss_before": start, "rss_after": end, "growth": end - start,
                "slope": _slope(self.samples) * 60.0}


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares MB per second (0 for fewer than three points)."""
    if len(points) < 3:
        return 0.0
    ts, ms = [p[0] for p in points], [p[1] for p in points]
    tm, mm = statistics.fmean(ts), statistics.fmean(ms)
    var = sum((t - tm) ** 2 for t in ts)
    return 0.0 if var == 0 else sum((t - tm) * (m - mm) for t, m in zip(ts, ms, strict=True)) / var


def _floor(folder: Path, accounts: list[str], n: int) -> tuple[dict[str, float], list[str]]:
    """p50 of each service call in this process (no HTTP, no auth), and the MLflow request
    body of every account: the churn model's input row, as `/invocations` takes it."""
    from healthscore.settings import load_settings
    from serving import schemas, scores
    from serving.state import ServiceState

    saved = dict(os.environ)
    os.environ.update(_env(folder))
    os.environ["HEALTHSCORE_PATHS__STORE_URL"] = f"sqlite:///{folder / 'floor.db'}"
    try:
        state = ServiceState(load_settings(), start_worker=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    calls = {"predict": lambda a: scores.predict(state, schemas.PredictRequest(accountId=a)),
             "calculate": lambda a: scores.calculate(state, schemas.CalculateRequest(accountId=a)),
             "analyze": lambda a: scores.analyze(state, schemas.AnalyzeRequest(accountId=a))}
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
    bundle = state.models.by_target("churn")[-1].bundle
    rows = [state.account(a).features for a in accounts]
    x = [bundle.matrix(r)[0] for r in rows]
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        bundle.booster.predict(x[i % len(x)].reshape(1, -1), num_threads=1)
        times.append(time.perf_counter() - t0)
    out[MLFLOW] = 1000 * statistics.median(times)
    state.close()
    bodies = [json.dumps({"inputs": [[None if math.isnan(v) else v for v in row.tolist()]]})
              for row in x]
    _save_mlflow_model(bundle, x[0].reshape(1, -1), folder / "mlflow-model")
    return out, bodies


def _save_mlflow_model(bundle: Any, example: Any, path: Path) -> None:
    """The churn booster in MLflow's LightGBM flavour, with the signature training logs."""
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    mlflow.lightgbm.save_model(
        bundle.booster, str(path), input_example=example,
        signature=infer_signature(example, bundle.booster.predict(example)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], env: dict[str, str], log_path: Path, ready_url: str
           ) -> subprocess.Popen[bytes]:
    import httpx

    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    end = time.monotonic() + 180
    while True:
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            _stop(proc)
            raise SystemExit(f"{cmd[2]} did not start:\n"
                             f"{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _phases(name: str, url: str, bodies: Path, server: subprocess.Popen[bytes],
            clients: int, seconds: float, warmup: float, load: Callable[..., dict[str, Any]],
            advance: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for n, secs in ((1, min(seconds, 10.0)), (clients, seconds)):
        if n > 1 and warmup > 0:
            advance(f"{name}: {n} clients, {warmup:.0f}s warm-up (not measured)")
            load(url, bodies, n, warmup)
        advance(f"{name}: {n} client(s), {secs:.0f}s")
        memory, cpu0 = _Memory(server.pid), _cpu(server.pid)
        res = load(url, bodies, n, secs)
        res.update(memory.stop(), endpoint=name, clients=n,
                   server_cpu=(_cpu(server.pid) - cpu0) / res["seconds"])
        rows.append(res)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5 s per load phase")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--client-procs", type=int, default=5,
                        help="Python client processes when wrk is not installed")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python clients")
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS),
                        help="comma-separated subset of the service's endpoints to load")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
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
    use_wrk = not args.no_wrk and shutil.which("wrk") is not None

    def load(url: str, bodies: Path, clients: int, secs: float) -> dict[str, Any]:
        if use_wrk:
            return _wrk(url, bodies, clients, secs)
        return _python_clients(url, bodies, clients, secs, args.client_procs)

    console = Console(width=max(170, Console().width))
    endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = sorted(set(endpoints) - set(ENDPOINTS))
    if unknown:
        parser.error(f"--endpoints: unknown {', '.join(unknown)} (known: {', '.join(ENDPOINTS)})")
    servers = len(endpoints) + (0 if args.no_mlflow else 1)
    warmup = min(WARMUP_S, seconds)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp, Progress() as bar:
        folder = Path(tmp)
        task = bar.add_task("preparing data and models", total=3 + 3 * servers)

        def advance(what: str) -> None:
            bar.update(task, advance=1, description=what)

        accounts = _prepare(folder)
        floor, mlflow_bodies = _floor(folder, accounts, 200 if args.small else 1000)
        (folder / "api.jsonl").write_text(
            "\n".join(json.dumps({"accountId": a}) for a in accounts) + "\n")
        (folder / "mlflow.jsonl").write_text("\n".join(mlflow_bodies) + "\n")
        advance("starting bentoml serve")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = _start(serve_command("127.0.0.1", port), _env(folder), folder / "serve.log",
                        f"{base}/v1/health")
        try:
            advance("bentoml serve is up")
            for endpoint in endpoints:
                rows += _phases(endpoint, f"{base}/v1/{endpoint}", folder / "api.jsonl",
                                server, args.clients, seconds, warmup, load, advance)
        finally:
            _stop(server)
        if not args.no_mlflow:
            advance("starting mlflow models serve")
            port = _free_port()
            cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve",
                   "-m", str(folder / "mlflow-model"), "--env-manager", "local",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            # MLflow execs `uvicorn` by name: the virtualenv's bin first on the PATH.
            env = _env(folder)
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            server = _start(cmd, env, folder / "mlflow.log",
                            f"http://127.0.0.1:{port}/ping")
            try:
                rows += _phases(MLFLOW, f"http://127.0.0.1:{port}/invocations",
                                folder / "mlflow.jsonl", server, args.clients, seconds, warmup,
                                load, advance)
            finally:
                _stop(server)

    client = rows[0]["client"] if rows else "-"
    table = Table(title=f"HealthScore service on loopback: {seconds:.0f}s per load, client "
                        f"{client} in a separate process; times in ms; RSS = server memory in "
                        f"MB at start -> end of each measured load (concurrent loads after a "
                        f"{warmup:.0f}s warm-up)")
    for col in ("endpoint", "clients", "requests", "errors", "req/s", "p50", "p99",
                "floor p50", "RSS", "growth MB", "MB/min", "CPU server/client"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for r in rows:
        table.add_row(r["endpoint"], str(r["clients"]), str(r["n"]), str(r["errors"]),
                      f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.1f}",
                      f"{floor[r['endpoint']]:.2f}",
                      f"{r['rss_before']:.0f}->{r['rss_after']:.0f}",
                      f"{r['growth']:+.1f}", f"{r['slope']:+.2f}",
                      f"{r['server_cpu']:.0%} / {r['client_cpu']:.0%}")
    console.print(table)
    for r in rows:
        for why in r["samples"]:
            console.print(f"error sample, {r['endpoint']} x{r['clients']}: {why}")
    console.print("floor p50: the same call in-process (serving.scores, no HTTP, no auth; for "
                  "MLflow the booster's predict of one row, one thread). HealthScore's predict "
                  "of a warehouse account reads the probabilities precomputed at start-up; "
                  "MLflow runs the booster per request. Load average now: "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
