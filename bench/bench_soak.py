"""Soak test of the HealthScore service: 50 clients on a mix of predict, analyze, calculate and
the Markdown summary for N minutes against a real `bentoml serve` on a generated world, with
errors counted, latency percentiles per minute and the server's resident memory (server plus
workers) sampled every 5 s and its slope reported in MB/min: what a leak would show as.

The slope is fitted twice: over the whole run and after the first two minutes (BentoML keeps
every request's timer for the request timeout and allocator arenas fill first, so memory rises
for the first 30-60 s under load, bench/RESULTS.md); a flat second figure is the one that says
nothing leaks. Set-up (world, bundles, environment, server start and stop) is bench_service's.
The client is `wrk` (Debian package `wrk`) when it is on the PATH, one 60-second run per minute
(its latency percentiles are the minute's; a C client leaves the 2 cores to the service); else
`--client-procs` Python processes (httpx, async) sharing the connections.

    .venv/bin/python bench/bench_soak.py                 # 10 minutes
    .venv/bin/python bench/bench_soak.py --minutes 1     # a short check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_service import (  # noqa: E402  (the same world, server and memory sampling)
    KEY,
    ROOT,
    _env,
    _free_port,
    _pct,
    _prepare,
    _rss,
    _slope,
    _start,
    _stop,
)

MIX = (("predict", 3), ("calculate", 3), ("analyze", 2), ("summary", 2))
"""Endpoint and weight: of every 10 requests, 3 predict, 3 calculate, 2 analyze, 2 summary."""


def _plan() -> list[str]:
    return [name for name, weight in MIX for _ in range(weight)]


async def _soak(base: str, clients: int, seconds: float, t0: float, accounts: list[str],
                offset: int) -> dict[str, Any]:
    import httpx

    plan = _plan()
    minutes: dict[int, dict[str, Any]] = {}
    samples: list[str] = []
    stop = t0 + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, limits=limits,
                                 timeout=30) as client:
        async def worker(k: int) -> None:
            i = offset + k
            while time.time() < stop:
                kind, account = plan[i % len(plan)], accounts[(i * 7) % len(accounts)]
                i += clients
                started = time.perf_counter()
                try:
                    if kind == "summary":
                        r = await client.get(f"/v1/accounts/{account}/summary")
                    else:
                        r = await client.post(f"/v1/{kind}", json={"accountId": account})
                    ok, why = r.status_code == 200, f"{kind}: HTTP {r.status_code} {r.text[:160]}"
                except Exception as exc:  # a transport error is counted; the soak goes on
                    ok, why = False, f"{kind}: {type(exc).__name__}: {exc}"
                latency = time.perf_counter() - started
                m = minutes.setdefault(int((time.time() - t0) // 60),
                                       {"latencies": [], "errors": 0, "kinds": {}})
                m["latencies"].append(latency)
                m["kinds"][kind] = m["kinds"].get(kind, 0) + 1
                if not ok:
                    m["errors"] += 1
                    if len(samples) < 5:
                        samples.append(why)

        await asyncio.gather(*(worker(k) for k in range(clients)))
    return {"minutes": minutes, "samples": samples}


_WRK_LUA = """
local requests = {%(requests)s}
local n = %(offset)d
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = %(key)s
request = function()
  n = n + 1
  local r = requests[(n %% #requests) + 1]
  return wrk.format(r[1], r[2], nil, r[3])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'HSJSON {"n": %%d, "errors": %%d, "us": %%d, "p50": %%d, "p99": %%d}\\n',
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk_script(folder: Path, accounts: list[str]) -> Path:
    plan, reqs = _plan(), []
    for i in range(len(plan) * len(accounts)):
        kind, account = plan[i % len(plan)], accounts[(i * 7) % len(accounts)]
        if kind == "summary":
            reqs.append(("GET", f"/v1/accounts/{account}/summary", ""))
        else:
            reqs.append(("POST", f"/v1/{kind}", json.dumps({"accountId": account})))
    table = ",".join("{" + ",".join(json.dumps(x) for x in r) + "}" for r in reqs)
    path = folder / "soak.lua"
    path.write_text(_WRK_LUA % {"requests": table, "offset": 0, "key": json.dumps(KEY)})
    return path


def _wrk_soak(base: str, clients: int, seconds: float, script: Path) -> list[dict[str, Any]]:
    """One wrk run per minute, back to back: each minute's count, errors, p50 and p99."""
    rows, left, k = [], seconds, 0
    while left > 0.5:
        span = min(60.0, left)
        out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(span))}s",
                              "--timeout", "30s", "-s", str(script), base],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(next(x for x in out.splitlines() if x.startswith("HSJSON "))[7:])
        rows.append({"minute": k, "n": r["n"], "rps": r["n"] / (r["us"] / 1e6),
                     "errors": r["errors"], "p50_ms": r["p50"] / 1000,
                     "p99_ms": r["p99"] / 1000, "end": time.time()})
        left -= span
        k += 1
    return rows


def client_main(args: argparse.Namespace) -> None:
    accounts = Path(args.accounts).read_text().split()
    out = asyncio.run(_soak(args.base, args.clients, args.seconds, args.t0, accounts,
                            args.offset))
    sys.stdout.write(json.dumps(out))


class _Sampler:
    """The server's RSS (server and workers) every `every` seconds, in a thread."""

    def __init__(self, pid: int, t0: float, every: float = 5.0) -> None:
        self.pid, self.t0, self.every = pid, t0, every
        self.samples: list[tuple[float, float]] = [(time.time() - t0, _rss(pid))]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.time() - self.t0, _rss(self.pid)))

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time() - self.t0, _rss(self.pid)))
        return self.samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--client-procs", type=int, default=5,
                        help="Python client processes when wrk is not installed")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python clients")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log to this file")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--accounts", help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client_main(args)
        return

    from rich.console import Console

    from serving.serve_cli import serve_command

    console = Console(width=max(120, Console().width))
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        folder = Path(tmp)
        console.print("preparing the world and models")
        accounts = _prepare(folder)
        (folder / "accounts.txt").write_text("\n".join(accounts))
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        console.print("starting bentoml serve")
        server = _start(serve_command("127.0.0.1", port), _env(folder), folder / "serve.log",
                        f"{base}/v1/health")
        try:
            if not args.no_wrk and shutil.which("wrk"):
                script = _wrk_script(folder, accounts)
                t0 = time.time()
                console.print(f"{args.clients} connections (wrk) for {args.minutes:g} min")
                sampler = _Sampler(server.pid, t0)
                rows = _wrk_soak(base, args.clients, seconds, script)
                memory = sampler.stop()
                client = "wrk"
                parts: list[dict[str, Any]] = []
                for r in rows:
                    ends = [m for t, m in memory if t <= r["end"] - t0]
                    r["rss_mb"] = ends[-1] if ends else float("nan")
            else:
                client = f"httpx x{args.client_procs}"
                rows, memory, parts = _python_soak(args, base, folder, seconds, server.pid)
        finally:
            _stop(server)
        if args.keep_log:
            shutil.copy(folder / "serve.log", args.keep_log)
        log = (folder / "serve.log").read_text(errors="replace").splitlines()
        server_errors = [x for x in log if "Traceback" in x or "Error" in x][-10:]
    _report(console, args, rows, memory, parts, client, server_errors)


def _python_soak(args: argparse.Namespace, base: str, folder: Path, seconds: float, pid: int
                 ) -> tuple[list[dict[str, Any]], list[tuple[float, float]],
                            list[dict[str, Any]]]:
    procs = max(1, min(args.client_procs, args.clients))
    shares = [args.clients // procs + (i < args.clients % procs) for i in range(procs)]
    t0 = time.time() + 2.0
    running = [subprocess.Popen(
        [sys.executable, __file__, "--client", "--base", base, "--clients", str(n),
         "--seconds", str(seconds), "--t0", str(t0), "--offset", str(sum(shares[:i])),
         "--accounts", str(folder / "accounts.txt")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT) for i, n in enumerate(shares)]
    print(f"{args.clients} clients in {procs} processes for {args.minutes:g} min")
    sampler = _Sampler(pid, t0)
    parts = []
    for proc in running:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a client process failed ({proc.returncode})")
        parts.append(json.loads(out))
    memory = sampler.stop()
    return _per_minute(parts, memory, seconds), memory, parts


def _report(console: Any, args: argparse.Namespace, rows: list[dict[str, Any]],
            memory: list[tuple[float, float]], parts: list[dict[str, Any]], client: str,
            server_errors: list[str]) -> None:
    from rich.table import Table

    late = [(t, m) for t, m in memory if t >= 120]
    summary = {
        "minutes": args.minutes, "clients": args.clients,
        "client": client,
        "requests": sum(r["n"] for r in rows), "errors": sum(r["errors"] for r in rows),
        "p99_ms": 1000 * _pct([x for p in parts for m in p["minutes"].values()
                               for x in m["latencies"]], 0.99) if parts
        else max(r["p99_ms"] for r in rows),
        "rss_start_mb": memory[0][1], "rss_end_mb": memory[-1][1],
        "slope_mb_min": _slope(memory) * 60,
        "slope_after_2min_mb_min": _slope(late) * 60 if len(late) >= 3 else float("nan"),
        "error_samples": [s for p in parts for s in p["samples"]][:5],
        "server_log_errors": server_errors, "per_minute": rows,
    }
    table = Table(title=f"Soak: {args.clients} clients ({client}), mix {dict(MIX)}, "
                        f"{args.minutes:g} min")
    for col in ("minute", "requests", "req/s", "errors", "p50 ms", "p99 ms", "RSS MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["minute"] + 1), str(r["n"]), f"{r['rps']:.0f}", str(r["errors"]),
                      f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['rss_mb']:.0f}")
    console.print(table)
    console.print(
        f"requests {summary['requests']}, errors {summary['errors']}, p99 "
        f"{'(worst minute) ' if not parts else ''}"
        f"{summary['p99_ms']:.0f} ms; RSS {summary['rss_start_mb']:.0f} -> "
        f"{summary['rss_end_mb']:.0f} MB, slope {summary['slope_mb_min']:+.2f} MB/min "
        f"(after minute 2: {summary['slope_after_2min_mb_min']:+.2f} MB/min)")
    for s in summary["error_samples"]:
        console.print(f"  error: {s}")
    for s in server_errors:
        console.print(f"  server log: {s}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


def _per_minute(parts: list[dict[str, Any]], memory: list[tuple[float, float]],
                seconds: float) -> list[dict[str, Any]]:
    rows = []
    # Requests that end after the last second (started before it) count in its minute.
    last = max(0, int((seconds - 1e-9) // 60))
    for p in parts:
        late = p["minutes"].pop(str(last + 1), None)
        if late:
            into = p["minutes"].setdefault(str(last), {"latencies": [], "errors": 0})
            into["latencies"] += late["latencies"]
            into["errors"] += late["errors"]
    keys = sorted({int(k) for p in parts for k in p["minutes"]})
    for k in keys:
        lat = [x for p in parts for x in p["minutes"].get(str(k), {}).get("latencies", [])]
        errors = sum(p["minutes"].get(str(k), {}).get("errors", 0) for p in parts)
        in_minute = [m for t, m in memory if k * 60 <= t < (k + 1) * 60]
        span = min(60.0, seconds - k * 60)
        rows.append({"minute": k, "n": len(lat), "rps": len(lat) / span, "errors": errors,
                     "p50_ms": 1000 * _pct(lat, 0.5), "p99_ms": 1000 * _pct(lat, 0.99),
                     "rss_mb": in_minute[-1] if in_minute else float("nan")})
    return rows


if __name__ == "__main__":
    main()
