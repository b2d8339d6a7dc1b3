"""A real `bentoml serve` process on a free port (BENTOML_HOME in tmp): endpoints and their
errors over HTTP, webhooks delivered to a local receiver across a service restart, each event
exactly once, and `healthscore serve` stopped by one SIGTERM with nothing left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from serving.ops_store import Event
from serving.serve_cli import serve_command, service_env
from tests.support.service_fixtures import ADMIN_KEY, LOCAL_RECEIVERS, Receiver, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def served_env(root: Path, store_url: str, home: Path) -> dict[str, str]:
    """The service's environment on the test world, with its own BENTOML_HOME (which also tells
    the processes of one server apart from every other process on the machine)."""
    env = service_env(None, {k: v for k, v in os.environ.items()
                             if not k.startswith("HEALTHSCORE_")})
    env.update({"BENTOML_HOME": str(home),
                "HEALTHSCORE_PATHS__WAREHOUSE": str(root / "warehouse.duckdb"),
                "HEALTHSCORE_PATHS__STORE_URL": store_url,
                "HEALTHSCORE_PATHS__MODELS_DIR": str(root / "models"),
                "HEALTHSCORE_SERVING__ADMIN_KEY": ADMIN_KEY,
                "HEALTHSCORE_SERVING__DELIVERY_POLL_SECONDS": "0.1",
                "HEALTHSCORE_SERVING__WEBHOOK_BACKOFF_SECONDS": "0.2",
                "HEALTHSCORE_SERVING__WEBHOOK_MAX_ATTEMPTS": "1000",
                "HEALTHSCORE_SERVING__WEBHOOK_ALLOW_HOSTS": json.dumps(LOCAL_RECEIVERS)})
    return env


class Served:
    def __init__(self, root: Path, store_url: str, home: Path, log: Path,
                 cmd: list[str] | None = None, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**served_env(root, store_url, home), **(env or {})}
        # The checkout's packages, not whichever copy is installed, in every process.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        self.log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd or serve_command("127.0.0.1", self.port), cwd=ROOT,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.client = httpx.Client(base_url=self.base, headers={"X-API-Key": ADMIN_KEY},
                                   timeout=60)
        end = time.monotonic() + 120
        while True:
            try:
                if self.client.get("/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"bentoml serve did not start; see {log}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.client.close()
        self.log.close()


def wait_for(predicate, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def event_uids(store_url: str, account_id: str) -> set[str]:
    engine = create_engine(store_url)
    with Session(engine) as s:
        out = set(s.scalars(select(Event.uid).where(Event.account_id == account_id)))
    engine.dispose()
    return out


def assert_hostile_input_is_refused(served: Served) -> None:
    """Over real HTTP: a 50 MB body is refused from its headers alone (413, with the body never
    sent), a lone surrogate is a 422 problem, and both leave the server answering."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/calculate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 52428800\r\n"
                     b"X-API-Key: " + ADMIN_KEY.encode() + b"\r\n\r\n{")
        head = sock.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 413") and "application/problem+json" in head, head
    lone = served.client.post("/v1/calculate", content=b'{"accountId": "\\ud800"}',
                              headers={"content-type": "application/json"})
    assert lone.status_code == 422 and lone.json()["errors"][0]["loc"] == ["body", "accountId"]
    assert served.client.get("/v1/health").status_code == 200


def test_a_served_api_answers_and_delivers_webhooks_across_a_restart(world_root, tmp_path):
    store_url = f"sqlite:///{tmp_path / 'served.db'}"
    with Receiver() as rec:
        first = Served(world_root, store_url, tmp_path / "bentoml", tmp_path / "serve1.log")
        try:
            c = first.client
            hs = c.post("/v1/calculate", json={"accountId": "A00070"})
            assert hs.status_code == 200 and 0 <= hs.json()["score"] <= 100
            assert c.post("/v1/predict", json={"accountId": "A00070"}).json()["available"]
            assert c.post("/v1/analyze", json={"accountId": "A00070"}).status_code == 200
            assert c.get("/v1/accounts/A00070/summary").text.startswith("## Health")
            assert c.post("/v1/calculate", json={"accountId": "ZZZ"}).status_code == 404
            bad = c.post("/v1/calculate", json={"accountId": 5})
            assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == [
                "body", "accountId"]
            assert c.get("/v1/scores", headers={"X-API-Key": ""}).status_code == 401
            reader = c.post("/v1/keys", json={"name": "r", "role": "reader"}).json()["key"]
            assert c.post("/v1/setWeights", json={"weights": {"support": 30}},
                          headers={"X-API-Key": reader}).status_code == 403
            assert c.get("/v1/openapi.json").status_code == 200
            assert_hostile_input_is_refused(first)

            hook = c.post("/v1/webhooks", json={"url": rec.url}).json()
            c.post("/v1/calculate", json={"accountId": "A00071"})
            before = event_uids(store_url, "A00071")
            assert before and wait_for(lambda: before <= set(rec.event_ids()))
            # The receiver goes down; new events wait in the outbox while the service stops.
            rec.fail_always = True
            c.post("/v1/createAlert", json={"accountId": "A00072", "message": "over restart"})
            c.post("/v1/calculate", json={"accountId": "A00072"})
            pending = event_uids(store_url, "A00072")
            assert pending and not pending & set(rec.event_ids())
        finally:
            first.stop()
        rec.fail_always = False
        second = Served(world_root, store_url, tmp_path / "bentoml", tmp_path / "serve2.log")
        try:
            assert wait_for(lambda: pending <= set(rec.event_ids()), 60)

            def statuses() -> set[str]:
                got = second.client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
                return {d["status"] for d in got}

            # The receiver has the events once it answers; the worker records the delivery
            # just after, so the store may say `pending` for a moment longer.
            assert wait_for(lambda: statuses() == {"delivered"}, 30), statuses()
        finally:
            second.stop()
    got = rec.event_ids()
    assert len(got) == len(set(got)), "an event was delivered twice"
    assert before | pending <= set(got)


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_of(home: Path) -> list[psutil.Process]:
    """Every live process started with this BENTOML_HOME (the server, its workers, theirs)."""
    out = []
    for p in psutil.process_iter(["environ"]):
        if (p.info["environ"] or {}).get("BENTOML_HOME") == str(home) and alive(p):
            out.append(p)
    return out


def port_free(port: int) -> bool:
    """Whether a new server could listen on the port (SO_REUSEADDR, as uvicorn binds: closed
    connections in TIME_WAIT do not count, a listener still holding it does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_one_sigterm_to_healthscore_serve_stops_the_server_and_frees_the_port(
        world_root, tmp_path):
    port, home = free_port(), tmp_path / "bentoml"
    # What the `healthscore` console script runs, from this checkout's healthscore.cli.
    cmd = [sys.executable, "-c", "from healthscore.cli import app; app()",
           "serve", "--host", "127.0.0.1", "--port", str(port)]
    served = Served(world_root, f"sqlite:///{tmp_path / 'served.db'}", home,
                    tmp_path / "serve.log", cmd=cmd, port=port)
    tree: list[psutil.Process] = []
    try:
        server = psutil.Process(served.proc.pid)
        tree = [server, *server.children(recursive=True)]
        assert "bentoml" in server.cmdline(), "the PID of `healthscore serve` is not the server"
        assert len(tree) > 1 and set(tree) <= set(processes_of(home))
        started = time.monotonic()
        os.kill(served.proc.pid, signal.SIGTERM)  # what systemd, Docker and CI send
        assert served.proc.wait(10) == 0
        stopped = wait_for(lambda: not any(alive(p) for p in tree) and not processes_of(home)
                           and port_free(port), 10 - (time.monotonic() - started))
        left = {p.pid for p in [*tree, *processes_of(home)] if alive(p)}
        assert stopped, f"10 s after SIGTERM: still running {left}, port free {port_free(port)}"
    finally:
        for p in [*tree, *processes_of(home)]:
            if alive(p):
                p.kill()
        served.stop()
    log = (tmp_path / "serve.log").read_text()
    assert log.startswith(f"HealthScore API on http://127.0.0.1:{port}/v1 ")  # flushed before exec
    assert "Completed cleanup hook: shutdown" in log  # BentoML ran the service's on_shutdown
