"""Faults, for real: a `bentoml serve` killed with SIGKILL mid-delivery loses no webhook event,
the daily job killed mid-write leaves no half-written day, and a score store that stops under
a running service gets 503 with Retry-After until it is back, then the service recovers by
itself (a private PostgreSQL cluster, started and stopped by the test).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from glob import glob
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from serving.auth import hash_key
from serving.ops_store import Delivery, Event
from serving.store import HealthScoreRecord, open_store
from tests.service.test_service_serve import Served, alive, processes_of, wait_for
from tests.support.service_fixtures import ADMIN_KEY, free_port, service_client

ROOT = Path(__file__).resolve().parents[2]


# --- a bentoml serve killed mid-delivery ----------------------------------------------------------

class SlowReceiver:
    """Records every call (duplicates too) and answers 200 after `delay` seconds: slow enough
    that a kill lands while deliveries are in flight."""

    def __init__(self, delay: float) -> None:
        self.calls: list[tuple[str, str]] = []
        """(X-HealthScore-Event-Id header, the body's id) of each call answered."""
        self.started = 0
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    outer.started += 1
                time.sleep(delay)
                with lock:
                    outer.calls.append((self.headers["X-HealthScore-Event-Id"],
                                        json.loads(body)["id"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> set[str]:
        return {header for header, _ in self.calls}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def all_event_uids(store_url: str) -> set[str]:
    engine = create_engine(store_url)
    with Session(engine) as s:
        out = set(s.scalars(select(Event.uid)))
    engine.dispose()
    return out


def kill_tree(served: Served, home: Path) -> None:
    """SIGKILL the server, its workers and anything else started with its BENTOML_HOME."""
    procs = processes_of(home)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(served.proc.pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    served.proc.wait(10)
    assert wait_for(lambda: not any(alive(p) for p in procs), 10)
    served.client.close()
    served.log.close()


@pytest.mark.slow
def test_sigkill_of_the_server_mid_delivery_loses_no_event(world_root, tmp_path):
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    home = tmp_path / "bentoml"
    env = {"HEALTHSCORE_SERVING__WEBHOOK_LEASE_SECONDS": "2",
           "HEALTHSCORE_SERVING__WEBHOOK_BACKOFF_SECONDS": "0.2"}
    rec = SlowReceiver(delay=0.3)
    try:
        first = Served(world_root, store_url, home, tmp_path / "serve1.log", env=env)
        try:
            c = first.client
            assert c.post("/v1/webhooks", json={"url": rec.url}).status_code == 201
            for i in range(12):
                assert c.post("/v1/calculate", json={"accountId": f"A{i + 80:05d}"}
                              ).status_code == 200
                c.post("/v1/createAlert", json={"accountId": f"A{i + 80:05d}",
                                                "message": "kill test"})
            uids = all_event_uids(store_url)
            assert len(uids) >= 24
            # Some delivered, the rest waiting or in flight: then the kill.
            assert wait_for(lambda: len(rec.ids()) >= 3, 60)
        finally:
            kill_tree(first, home)
        got_before = rec.ids()
        assert got_before < uids, "every event was delivered before the kill"
        second = Served(world_root, store_url, home, tmp_path / "serve2.log", env=env)
        try:
            assert wait_for(lambda: uids <= rec.ids(), 120), \
                f"{len(uids - rec.ids())} events never delivered after the restart"
            with Session(create_engine(store_url)) as s:
                states = set(s.scalars(select(Delivery.status)))
            assert states == {"delivered"}
        finally:
            second.stop()
    finally:
        rec.close()
    # At least once, with one id per event: the header and the body agree, so a receiver can
    # dedupe on either. The one worker sends one at a time and marks each delivered as it
    # answers, so only the delivery in flight at the kill can come twice.
    assert all(header == body for header, body in rec.calls)
    ids = [header for header, _ in rec.calls]
    assert len(ids) - len(set(ids)) <= 1, "more than the in-flight delivery came twice"


# --- the daily job killed mid-write ---------------------------------------------------------------

def score_job(world_root: Path, store_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHSCORE_")}
    env.update({"HEALTHSCORE_PATHS__WAREHOUSE": str(world_root / "warehouse.duckdb"),
                "HEALTHSCORE_PATHS__STORE_URL": store_url,
                "HEALTHSCORE_PATHS__MODELS_DIR": str(world_root / "models"),
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH"))
                                              if p)})
    return subprocess.Popen([sys.executable, "-c", "from healthscore.cli import app; app()",
                             "score"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def day_counts(store_url: str) -> dict[str, int]:
    engine = create_engine(store_url)
    with Session(engine) as s:
        scores = s.scalar(select(func.count()).select_from(HealthScoreRecord)) or 0
        dup = s.execute(select(HealthScoreRecord.account_id, HealthScoreRecord.as_of)
                        .group_by(HealthScoreRecord.account_id, HealthScoreRecord.as_of)
                        .having(func.count() > 1)).all()
        calculated = s.execute(select(Event.account_id, func.count()).where(
            Event.type == "calculated").group_by(Event.account_id)).all()
        dates = set(s.scalars(select(HealthScoreRecord.as_of).distinct()))
    engine.dispose()
    return {"scores": scores, "duplicates": len(dup), "dates": len(dates),
            "accounts_with_events": len(calculated),
            "max_events_per_account": max((n for _, n in calculated), default=0)}


@pytest.mark.slow
def test_sigkill_of_the_daily_job_mid_write_leaves_no_half_day_and_a_rerun_completes_it(
        world_root, tmp_path):
    db = tmp_path / "store.db"
    store_url = f"sqlite:///{db}"
    open_store(store_url).close()  # migrated, so the job only reads and writes rows
    # A reader holds a shared lock: the job can write its whole transaction but not commit it,
    # so the kill lands inside the transaction, whenever it comes.
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("begin")
    reader.execute("select count(*) from health_scores").fetchone()
    job = score_job(world_root, store_url)
    try:
        journal = Path(f"{db}-journal")
        assert wait_for(lambda: journal.exists() or job.poll() is not None, 240)
        assert job.poll() is None, job.stdout.read().decode()[-2000:]
        time.sleep(0.5)  # well inside the transaction: rows and events written, not committed
        job.send_signal(signal.SIGKILL)
        job.wait(10)
    finally:
        if job.poll() is None:
            job.kill()
        reader.execute("rollback")
        reader.close()
    assert job.returncode == -signal.SIGKILL
    after_kill = day_counts(store_url)
    assert after_kill["scores"] == 0 and after_kill["accounts_with_events"] == 0, after_kill

    rerun = score_job(world_root, store_url)
    out = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, out[-2000:]
    done = day_counts(store_url)
    assert done["scores"] > 100 and done["dates"] == 1 and done["duplicates"] == 0, done
    assert done["max_events_per_account"] == 1, done


# --- the score store stopped under a running service ----------------------------------------------

PG_BIN = sorted(glob("/usr/lib/postgresql/*/bin"))


class PrivateCluster:
    """A throw-away PostgreSQL cluster on a free port, owned by the `postgres` OS user when the
    tests run as root (initdb refuses root). Never the machine's shared server."""

    def __init__(self) -> None:
        self.bin = Path(PG_BIN[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="hs-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "hs")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/hs"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                  "-t", "60", "-o", opts, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    if not PG_BIN or (os.geteuid() == 0 and shutil.which("runuser") is None):
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    cluster = PrivateCluster()
    try:
        yield cluster
    finally:
        cluster.remove()


def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = call()
    return r, time.monotonic() - started


@pytest.mark.postgres
@pytest.mark.slow
def test_a_stopped_score_store_is_503_with_retry_after_and_the_service_recovers(
        world_root, private_postgres, caplog):
    caplog.set_level(logging.DEBUG)
    with service_client(world_root, private_postgres.url) as c:
        assert c.post("/v1/calculate", json={"accountId": "A00090"}).status_code == 200
        assert c.get("/v1/scores").status_code == 200

        private_postgres.stop()
        for call in (lambda: c.get("/v1/scores"),
                     lambda: c.post("/v1/calculate", json={"accountId": "A00091"}),
                     lambda: c.get("/v1/alerts"),
                     lambda: c.get("/v1/webhooks")):
            r, took = timed(call)
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) > 0
            assert "store" in r.json()["detail"]
            assert took < 15, f"{took:.1f}s to answer with the store down"
        assert c.get("/v1/health").status_code == 200  # liveness needs no store

        private_postgres.start()  # back: the same service answers again, no restart
        assert wait_for(lambda: c.get("/v1/scores").status_code == 200, 30)
        r = c.post("/v1/calculate", json={"accountId": "A00091"})
        assert r.status_code == 200, r.text
        rows = c.get("/v1/accounts/A00090/history").json()
        assert rows, "a score stored before the outage is gone"
    assert "score store unreachable" in caplog.text
    assert ADMIN_KEY not in caplog.text and hash_key(ADMIN_KEY) not in caplog.text
