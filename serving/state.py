"""The service's state: what a worker loads once and every route reads.

Owns the settings, the score store, the API keys, the active rules version (adopting a newer one
another worker stored), the champion models, the warehouse snapshot and the portfolio scored as
of the warehouse's today. Every account the routes read is scored by the one pipeline
(`scoring.pipeline.score_accounts`): a lookup in the portfolio when the request asks for today,
else a call for that account (kept in an LRU cache per snapshot, rules version and date), or a
call on the request's own activity loaded into an in-memory warehouse (`serving.payload`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from sqlalchemy import select
from sqlalchemy.orm import Session

from features.build import EntityError, warm_online
from features.contract.warehouse import today
from scoring.health import load_rules_for
from scoring.health.profiles import Rules, parse_rules
from scoring.model_set import load_models
from scoring.pipeline import ScoredAccount, ScoredFrame, Scorer, UnknownAccount, score_accounts
from serving.alerts import AlertRules
from serving.auth import KeyChecker, ensure_admin_key
from serving.delivery import DeliveryPolicy, DeliveryWorker
from serving.errors import NotFound, PayloadError, Unavailable
from serving.events import EventRules
from serving.guards import RateLimiter
from serving.ops_store import ConfigVersion, active_config, add_config
from serving.payload import load_payload
from serving.snapshot import WarehouseSnapshot, WarehouseUnavailable
from serving.store import HealthScoreRecord, open_store
from serving.store_outage import engine_options
from serving.webhook_targets import AllowList

logger = logging.getLogger(__name__)


class ServiceState:
    """Loaded once per worker; thread-safe for concurrent requests."""

    def __init__(self, settings: Any, *, start_worker: bool = True,
                 snapshot_dir: Path | None = None) -> None:
        self.settings = settings
        cfg = settings.serving
        url = settings.paths.store_url
        self.store = open_store(url, **engine_options(url))
        self.db = self.store.engine
        self.keys = KeyChecker(self.db, ttl=cfg.key_cache_seconds)
        self.rate = RateLimiter(cfg.rate_limit)
        self.event_rules = EventRules(change_points=cfg.score_change_points,
                                      risk_points=cfg.risk_increase_points)
        self.alert_rules = AlertRules(drop_points=cfg.alert_drop_points,
                                      churn_probability=cfg.alert_churn_probability,
                                      cooldown=timedelta(hours=cfg.alert_cooldown_hours))
        self.lock = threading.RLock()
        self.portfolio: ScoredFrame | None = None
        self._positions: dict[str, int] = {}
        self._names: dict[str, str | None] = {}
        self._as_of: date | None = None
        self._accounts: LRUCache[tuple[Any, ...], ScoredAccount] = LRUCache(
            maxsize=max(1, cfg.feature_cache_size))
        self.derived: LRUCache[tuple[Any, ...], Any] = LRUCache(
            maxsize=max(1, cfg.feature_cache_size))
        """What routes derive from an account's score (its metrics table), per snapshot, rules
        version, account and date."""
        self._file_rules = load_rules_for(settings.health)
        self._config_id = 0
        self._last_sync = 0.0
        self.rules: Rules = self._file_rules
        with Session(self.db, expire_on_commit=False) as session, session.begin():
            if cfg.admin_key is not None:
                ensure_admin_key(session, cfg.admin_key.get_secret_value())
            self._sync_rules(session, bootstrap=True)
        self.models, self.models_note = load_models(settings.paths.models_dir)
        if self.models_note:
            logger.warning(self.models_note)
        self._tmp = tempfile.TemporaryDirectory(prefix="healthscore-wh-")
        self.snapshot = WarehouseSnapshot(Path(settings.paths.warehouse),
                                          Path(snapshot_dir or self._tmp.name),
                                          check_every=cfg.warehouse_check_seconds)
        self._refresh(force=True)
        self.webhook_allow = AllowList.parse(cfg.webhook_allow_hosts)
        self.worker = DeliveryWorker(self.db, DeliveryPolicy(
            max_attempts=cfg.webhook_max_attempts, backoff=cfg.webhook_backoff_seconds,
            timeout=cfg.webhook_timeout_seconds, lease=cfg.webhook_lease_seconds),
            poll=cfg.delivery_poll_seconds, allow=self.webhook_allow)
        if start_worker:
            self.worker.start()

    def close(self) -> None:
        self.worker.stop()
        self.snapshot.close()
        self.store.close()
        self._tmp.cleanup()

    @property
    def scorer(self) -> Scorer:
        return Scorer(rules=self.rules, features=self.settings.features, models=self.models,
                      models_note=self.models_note)

    @property
    def labels(self) -> list[str]:
        return list(self.models.labels) if self.models is not None else []

    @property
    def default_as_of(self) -> date:
        """The warehouse's today (`features.contract.warehouse.today`), what a request without
        `asOf` is answered as of."""
        return self._as_of or date.today()

    # --- rules versions and snapshots ---------------------------------------------------------
    def _sync_rules(self, session: Session, bootstrap: bool = False) -> bool:
        """Adopt the newest stored rules version (another worker may have set it)."""
        row = active_config(session)
        if bootstrap:
            known = session.scalar(select(ConfigVersion.id).where(
                ConfigVersion.version == self._file_rules.config_version).limit(1))
            if row is None or known is None:
                # A rules file never seen before (first start, or a new deployment) wins.
                row = add_config(session, self._file_rules.config_version,
                                 self._file_rules.content, "initial", "system",
                                 f"rules file {self._file_rules.source}")
        if row is None or row.id == self._config_id:
            return False
        rules = parse_rules(json.loads(row.content), Path(f"config_versions/{row.id}"))
        self.adopt(rules.with_trend(self._file_rules.trend_days,
                                    self._file_rules.trend_dead_band), row.id)
        logger.info("rules version %s (config %d) active", rules.config_version, row.id)
        return True

    def adopt(self, rules: Rules, config_id: int) -> None:
        """Make `rules` the active version (stored as config `config_id`) and rescore."""
        with self.lock:
            self.rules, self._config_id = rules, config_id
            self._accounts.clear()
            self.derived.clear()
        self._score_portfolio()

    def _refresh(self, force: bool = False) -> None:
        changed = self.snapshot.refresh(force=force)
        rules_changed = False
        if force or changed or self.snapshot.check_every <= 0 or self._due():
            with Session(self.db, expire_on_commit=False) as session:
                rules_changed = self._sync_rules(session)
        if changed or (force and self.snapshot.available):
            if not rules_changed:
                self._score_portfolio()
            self._warm_online()

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last_sync >= self.snapshot.check_every:
            self._last_sync = now
            return True
        return False

    def tick(self) -> None:
        """Cheap per-request check for a new warehouse snapshot or rules version."""
        self._refresh()

    def _score_portfolio(self) -> None:
        """Every active account scored as of the warehouse's today: what makes `calculate` and
        `predict` of a warehouse account a lookup."""
        snapshot = getattr(self, "snapshot", None)  # rules are adopted before it is opened
        if snapshot is None or not snapshot.available:
            return
        con = snapshot.cursor()
        as_of = today(con)
        names = dict(con.execute("select account_id, name from accounts").fetchall())
        portfolio = score_accounts(con, None, as_of, self.scorer) \
            if self.settings.serving.precompute else None
        with self.lock:
            self._as_of, self._names = as_of, {str(k): v for k, v in names.items()}
            self.portfolio = portfolio
            self._positions = {a: i for i, a in enumerate(portfolio.account_ids)} \
                if portfolio is not None else {}
            self._accounts.clear()
            self.derived.clear()
        logger.info("scored %d accounts as of %s (snapshot %d, rules %s)",
                    len(portfolio) if portfolio is not None else 0, as_of,
                    self.snapshot.generation, self.rules.config_version)

    def _warm_online(self) -> None:
        """The one-account SQL compiled and the snapshot's rows held in memory before the first
        request for a date that is not precomputed (features.build.warm_online)."""
        if self.snapshot.available:
            warm_online(self.snapshot.connection(), self.settings.features)

    def derive(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """`make()`, kept in the LRU of derived answers under `key` (which must name the
        snapshot, the rules version and every input the answer depends on)."""
        with self.lock:
            hit = self.derived.get(key)
        if hit is None:
            hit = make()
            with self.lock:
                self.derived[key] = hit
        return hit

    def scored_at(self, when: date, *, trend: bool = False) -> ScoredFrame:
        """Every account scored by the one pipeline as of `when`: the precomputed portfolio
        when it is of that date and rules version, else scored once per snapshot, rules
        version and date (kept with the derived answers), so the reports that read a whole
        portfolio (monitoring's drift, the playbook effect's start dates, the portfolio views) do
        not score it again on every call. `trend`: with each score's trend (the precomputed
        portfolio always has it)."""
        self.tick()
        portfolio = self.portfolio
        if portfolio is not None and len(portfolio) and portfolio.as_of == when \
                and portfolio.scores["config_version"].iat[0] == self.rules.config_version:
            return portfolio
        if not self.snapshot.available:
            raise Unavailable("the warehouse is not available: run `healthscore ingest` first")

        def make() -> ScoredFrame:
            try:
                con = self.snapshot.connection()
            except WarehouseUnavailable as exc:
                raise Unavailable(str(exc)) from None
            return score_accounts(con, None, when, self.scorer, trend=trend)

        key = (self.snapshot.generation, self.rules.config_version, "scored-frame", when, trend)
        return self.derive(key, make)  # type: ignore[no-any-return]

    # --- accounts -----------------------------------------------------------------------------
    def precomputed(self, account_id: str, as_of: date | None,
                    activity: Mapping[str, Any] | None) -> bool:
        """Whether `account` answers from memory (no feature build, no warehouse read)."""
        portfolio = self.portfolio
        return (activity is None and portfolio is not None and account_id in self._positions
                and (as_of is None or as_of == portfolio.as_of)
                and portfolio.scores["config_version"].iat[0] == self.rules.config_version)

    def account(self, account_id: str, as_of: date | None = None,
                activity: Mapping[Any, list[dict[str, Any]]] | None = None, *,
                fresh: bool = False) -> ScoredAccount:
        """One account scored by the pipeline as of `as_of` (None: the warehouse's today, or
        for a payload the day after its latest activity), with its status."""
        self.tick()
        if activity is not None:
            return self._from_payload(account_id, as_of, activity)
        if not self.snapshot.available:
            raise Unavailable("the warehouse is not available: run `healthscore ingest` first, "
                              "or send the account's activity in the payload")
        when = as_of or self.default_as_of
        key = (self.snapshot.generation, self.rules.config_version, account_id, when)
        if not fresh:
            with self.lock:
                hit = self._accounts.get(key)
            if hit is not None:
                return hit
            if self.precomputed(account_id, when, None):
                # Cut out of the portfolio once, then a cache hit: slicing a row of ~60 mixed
                # columns costs more than the rest of a `predict`.
                out = self.portfolio.at(self._positions[account_id])  # type: ignore[union-attr]
                with self.lock:
                    self._accounts[key] = out
                return out
        if account_id not in self._names:
            raise NotFound(f"account {account_id!r} is not in the warehouse; send its raw "
                           "activity in `activity` to score it")
        try:
            # The connection: build_features takes (and closes) a cursor of its own per call.
            con = self.snapshot.connection()
        except WarehouseUnavailable as exc:
            raise Unavailable(str(exc)) from None
        try:
            out = score_accounts(con, [account_id], when, self.scorer).at(0)
        except (EntityError, UnknownAccount) as exc:
            raise NotFound(str(exc)) from None
        with self.lock:
            self._accounts[key] = out
        return out

    def _from_payload(self, account_id: str, as_of: date | None,
                      activity: Mapping[Any, list[dict[str, Any]]]) -> ScoredAccount:
        con, _latest = load_payload(account_id, activity)
        try:
            account = score_accounts(con, [account_id], as_of, self.scorer).at(0)
            return dataclasses.replace(account, source="payload")
        except (EntityError, UnknownAccount) as exc:
            raise PayloadError(["body", "activity", "accounts"], str(exc)) from None
        finally:
            con.close()

    def known(self, account_id: str) -> None:
        """NotFound unless the account is in the warehouse or has a stored score."""
        if account_id in self._names:
            return
        with self.db.connect() as conn:
            if conn.execute(select(HealthScoreRecord.account_id).where(
                    HealthScoreRecord.account_id == account_id).limit(1)).first() is None:
                raise NotFound(f"account {account_id!r} is neither in the warehouse nor scored")
