"""A read-only snapshot of the DuckDB warehouse for the service's workers.

DuckDB locks its file per process: a reader holding the warehouse open would block the daily
ingest from writing it, and a writer would stop readers from opening it. So the service never
opens the warehouse itself: it copies the file (a plain read, which takes no DuckDB lock) into a
private folder when its modification time changes, checks the copy opens, and swaps it in.
Requests take a cursor of the current snapshot (cursors are thread-safe). A copy caught half
written fails the check and the previous snapshot stays in service. Opening a warehouse
read-only and taking a cursor are cheap; the copy costs one file read per change.

Owns only that; it computes no features.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import duckdb

logger = logging.getLogger(__name__)


class WarehouseUnavailable(RuntimeError):
    pass


class WarehouseSnapshot:
    def __init__(self, source: Path, folder: Path, check_every: float = 1.0) -> None:
        self.source = Path(source)
        self.folder = Path(folder)
        self.check_every = check_every
        self.generation = 0
        self._con: duckdb.DuckDBPyConnection | None = None
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def available(self) -> bool:
        return self._con is not None

    def _stat(self) -> tuple[float, int] | None:
        try:
            st = os.stat(self.source)
        except FileNotFoundError:
            return None
        return (st.st_mtime, st.st_size)

    def refresh(self, force: bool = False) -> bool:
        """Take a new snapshot when the warehouse changed; True when one was swapped in."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_every:
            return False
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp is None or (stamp == self._stamp and not force):
                return False
            target = self.folder / f"warehouse-{self.generation + 1}.duckdb"
            try:
                shutil.copyfile(self.source, target)
                con = duckdb.connect(str(target), read_only=True)
                con.execute("select count(*) from information_schema.tables").fetchone()
            except (OSError, duckdb.Error) as exc:
                logger.warning("warehouse snapshot of %s failed (%s); keeping generation %d",
                               self.source, exc, self.generation)
                target.unlink(missing_ok=True)
                return False
            if self._stamp is not None and self._stat() != stamp:
                # Changed while copying: try again at the next check.
                con.close()
                target.unlink(missing_ok=True)
                return False
            self._con, self._stamp = con, stamp
            self.generation += 1
            for old in self.folder.glob("warehouse-*.duckdb"):
                gen = int(old.stem.split("-")[1]) if old.stem.split("-")[1].isdigit() else 0
                if gen < self.generation - 1:
                    old.unlink(missing_ok=True)
            logger.info("warehouse snapshot %d taken from %s", self.generation, self.source)
            return True

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The current snapshot's connection, for callers that take cursors of it themselves
        (`features.build` takes one per call)."""
        con = self._con
        if con is None:
            raise WarehouseUnavailable(
                f"the warehouse {self.source} is not available: run `healthscore ingest` first")
        return con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.connection().cursor()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
