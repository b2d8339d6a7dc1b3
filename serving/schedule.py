"""The daily schedule inside the service: at `serving.daily_at` (UTC) one worker of all of them
scores the portfolio (`serving.daily.score_day`), then fires the tasks that fell due and checks
the monitoring, all logged in the run log (`GET /v1/runs`).

The clock is injected: `DailySchedule.tick()` asks it for the time, so tests move a fake clock
instead of sleeping. The background thread only calls `tick()` every `daily_poll_seconds`.
A deployment that prefers cron turns the schedule off (`serving.daily_schedule: false`) and runs
`healthscore score` (docs/operations.md), which takes the same lock and writes the same log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from serving.daily import Clock, RunSummary, run_once

logger = logging.getLogger(__name__)


def utc_clock() -> datetime:
    return datetime.now(UTC)


def due_date(now: datetime, at: time) -> date | None:
    """The UTC day whose run is due at `now` (the day itself once its `at` has passed)."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    return now.date() if now.time() >= at else None


class DailySchedule:
    """Runs `work` once per UTC day at `at`, under the store lock; `tick()` is one look."""

    def __init__(self, engine: Any, work: Callable[[], RunSummary], *, at: time,
                 clock: Clock = utc_clock, lease: timedelta = timedelta(hours=2),
                 poll_seconds: float = 30.0, every_tick: Callable[[datetime], Any] | None = None,
                 runner: str | None = None) -> None:
        self.engine = engine
        self.work = work
        self.at = at
        self.clock = clock
        self.lease = lease
        self.poll = poll_seconds
        self.every_tick = every_tick
        self.runner = runner
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int | None:
        """Run the day's job if it is due and nobody ran it; the run id when this call ran it."""
        now = self.clock()
        if self.every_tick is not None:
            try:
                self.every_tick(now)
            except Exception:
                logger.exception("the schedule's periodic step failed")
        day = due_date(now, self.at)
        if day is None:
            return None
        try:
            return run_once(self.engine, day, self.work, clock=self.clock, trigger="schedule",
                            runner=self.runner, lease=self.lease)
        except Exception:
            logger.exception("the daily run of %s failed: the previous scores stand", day)
            return None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="daily-schedule",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.poll)
