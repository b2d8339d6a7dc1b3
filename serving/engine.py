"""The HealthScore engine: everything the service does, without HTTP.

Owns the state the service loads once (settings, the active rules version, the champion model
bundles, the warehouse snapshot, the score store) and the operations behind each endpoint:
resolve an account's features (cached per warehouse snapshot, or built from a payload of raw
rows through the same `build_features` on an in-memory DuckDB: `serving.payload`), score them
with `score_frame`,
add probabilities from the bundles, persist through `serving.events.record_scores` (scores,
events, alerts in one transaction), overrides, versioned rules changes, segment comparisons,
period reports, history, listing and export. Business rules live in `scoring.health`,
`serving.alerts` and `serving.events`; HTTP concerns (status codes, auth headers, streaming)
live in `serving.app`. Errors are typed (`NotFound`, `PayloadError`, `Conflict`, `Unavailable`)
so the app maps them to 404/422/409/503.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from serving import api
from serving.alerts import AlertRules, create_alert, resolve_alert
from serving.auth import KeyChecker, ensure_admin_key
from serving.events import (
    DeliveryPolicy,
    DeliveryWorker,
    EventRules,
    record_scores,
)
from serving.ops_store import (
    Alert,
    ConfigVersion,
    Override,
    active_config,
    active_override,
    active_overrides,
    add_config,
    add_event,
    audit,
    aware,
    open_alerts,
    utcnow,
)
from serving.payload import PayloadError, load_payload
from serving.reports import parquet_chunks, segment_stats
from serving.snapshot import WarehouseSnapshot, WarehouseUnavailable
from serving.store import DIMENSIONS, SCORE_FIELDS, HealthScoreRecord, open_store

logger = logging.getLogger(__name__)

LABEL = re.compile(r"^(churn|expansion)_(\d+)d$")


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


class Unavailable(RuntimeError):
    pass


@dataclass
class Resolved:
    """One account's features and rules score as of a date.

    `frame` is the one-row feature frame, or a function that cuts it from the precomputed batch
    on first use: `predict` needs only the stored probabilities, and cutting a row of ~60 mixed
    columns out of a DataFrame costs more than the rest of a `predict` (profiled under load)."""

    row: dict[str, Any]
    frame: pd.DataFrame | Callable[[], pd.DataFrame]
    probabilities: dict[str, float]
    connected: frozenset[str]
    source: str
    customer: str | None

    @property
    def features(self) -> pd.DataFrame:
        # Not functools.cached_property: on Python 3.11 it takes one lock for every instance,
        # which serialised concurrent requests (seen in a profile under load).
        if not isinstance(self.frame, pd.DataFrame):
            self.frame = self.frame()
        return self.frame


def _f(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _day(value: Any) -> date:
    return pd.Timestamp(value).date()


class HealthScoreEngine:
    """Loaded once per worker; thread-safe for concurrent requests."""

    def __init__(self, settings: Any, *, start_worker: bool = True,
                 snapshot_dir: Path | None = None) -> None:
        from scoring.health import load_rules_for

        self.settings = settings
        cfg = settings.serving
        self.store = open_store(settings.paths.store_url, **_engine_kw(settings.paths.store_url))
        self.db = self.store.engine
        self.keys = KeyChecker(self.db, ttl=cfg.key_cache_seconds)
        self.event_rules = EventRules(change_points=cfg.score_change_points,
                                      risk_points=cfg.risk_increase_points)
        self.alert_rules = AlertRules(drop_points=cfg.alert_drop_points,
                                      churn_probability=cfg.alert_churn_probability,
                                      cooldown=timedelta(hours=cfg.alert_cooldown_hours))
        self._lock = threading.RLock()
        self._batch: dict[str, Any] | None = None
        self._cache: OrderedDict[tuple[Any, ...], Resolved] = OrderedDict()
        self._metric_cache: OrderedDict[tuple[Any, ...], list[api.Metric]] = OrderedDict()
        self._file_rules = load_rules_for(settings.health)
        self._config_id = 0
        self.rules = self._file_rules
        with Session(self.db, expire_on_commit=False) as session, session.begin():
            if cfg.admin_key is not None:
                ensure_admin_key(session, cfg.admin_key.get_secret_value())
            self._sync_rules(session, bootstrap=True)
        self.bundles, self.models_note = _load_models(settings.paths.models_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="healthscore-wh-")
        self.snapshot = WarehouseSnapshot(Path(settings.paths.warehouse),
                                          Path(snapshot_dir or self._tmp.name),
                                          check_every=cfg.warehouse_check_seconds)
        self._refresh(force=True)
        self.worker = DeliveryWorker(self.db, DeliveryPolicy(
            max_attempts=cfg.webhook_max_attempts, backoff=cfg.webhook_backoff_seconds,
            timeout=cfg.webhook_timeout_seconds), poll=cfg.delivery_poll_seconds)
        if start_worker:
            self.worker.start()

    def close(self) -> None:
        self.worker.stop()
        self.snapshot.close()
        self.store.close()
        self._tmp.cleanup()

    # --- state ------------------------------------------------------------------------------
    def _sync_rules(self, session: Session, bootstrap: bool = False) -> bool:
        """Adopt the newest stored rules version (another worker may have set it)."""
        from scoring.health.profiles import parse_rules

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
        rules = rules.with_trend(self._file_rules.trend_days, self._file_rules.trend_dead_band)
        with self._lock:
            self.rules, self._config_id = rules, row.id
            self._cache.clear()
        logger.info("rules version %s (config %d) active", rules.config_version, row.id)
        return True

    def _refresh(self, force: bool = False) -> None:
        changed = self.snapshot.refresh(force=force)
        rules_changed = False
        if force or changed or self.snapshot.check_every <= 0 or self._due():
            with Session(self.db, expire_on_commit=False) as session:
                rules_changed = self._sync_rules(session)
        if changed or (force and self.snapshot.available):
            self._build_batch()
            self._warm_online()
        elif rules_changed:
            self._rescore_batch()

    _last_sync = 0.0

    def _due(self) -> bool:
        import time

        now = time.monotonic()
        if now - self._last_sync >= self.snapshot.check_every:
            self._last_sync = now
            return True
        return False

    def tick(self) -> None:
        """Cheap per-request check for a new warehouse snapshot or rules version."""
        self._refresh()

    @property
    def default_as_of(self) -> date:
        batch = self._batch
        return batch["as_of"] if batch else datetime.now(UTC).date()

    def _build_batch(self) -> None:
        """Features, scores and probabilities of every account as of the data date: what makes
        `calculate` and `predict` of a warehouse account a lookup."""
        if not self.snapshot.available:
            return
        from features.build import build_features
        from features.contract.warehouse import connected_tables
        from scoring.batch import churn_dates
        from scoring.health import score_frame

        con = self.snapshot.cursor()
        connected = connected_tables(con)
        as_of = _data_date(con, connected)
        accounts = con.execute("select account_id, name, created_at from accounts").fetchdf()
        names = dict(zip(accounts["account_id"].astype(str), accounts["name"], strict=True))
        if not self.settings.serving.precompute:
            self._batch = {"as_of": as_of, "names": names, "connected": connected,
                           "generation": self.snapshot.generation, "scored": {},
                           "features": None, "previous": None, "probs": {}}
            return
        when = pd.Timestamp(as_of)
        prev_when = when - pd.Timedelta(days=self.rules.trend_days)
        created = pd.to_datetime(accounts["created_at"])
        ids = accounts.loc[created < when, "account_id"].astype(str).tolist()
        prev_ids = accounts.loc[created < prev_when, "account_id"].astype(str).tolist()
        ents = pd.DataFrame({"account_id": ids + prev_ids,
                             "as_of": [when] * len(ids) + [prev_when] * len(prev_ids)})
        feats = build_features(con, ents, self.settings.features)
        cur = feats.iloc[:len(ids)].reset_index(drop=True)
        old = feats.iloc[len(ids):].reset_index(drop=True)
        cur["churned_at"] = churn_dates(con, cur["account_id"].astype(str)).to_numpy()
        with self._lock:
            rules = self.rules
        previous = score_frame(old, connected, rules)[["account_id", "as_of", "score"]]
        scored = score_frame(cur, connected, rules, previous)
        probs = self._probabilities(cur)
        batch = {
            "as_of": as_of, "names": names, "connected": connected,
            "generation": self.snapshot.generation, "config": rules.config_version,
            "features": cur.set_index(cur["account_id"].astype(str), drop=False),
            # Row positions: iloc of one row is ~10x cheaper than a label look-up.
            "positions": {a: i for i, a in enumerate(cur["account_id"].astype(str))},
            "previous": previous, "old_features": old,
            "scored": {r["account_id"]: r for r in scored.to_dict("records")},
            "probs": {a: {k: float(v) for k, v in p.items()} for a, p in
                      zip(cur["account_id"].astype(str), probs.to_dict("records"), strict=True)}
            if probs is not None else {},
        }
        with self._lock:
            self._batch = batch
            self._cache.clear()
        logger.info("precomputed %d accounts as of %s (snapshot %d, rules %s)", len(ids), as_of,
                    self.snapshot.generation, rules.config_version)

    def _warm_online(self) -> None:
        """The cold path's SQL compiled and the snapshot's rows held in memory before the
        first request for a date that is not precomputed (features.build.warm_online)."""
        if not self.snapshot.available:
            return
        from features.build import warm_online

        warm_online(self.snapshot.connection(), self.settings.features)

    def _rescore_batch(self) -> None:
        """Score the cached features with the active rules (a rules change needs no rebuild)."""
        from scoring.health import score_frame

        with self._lock:
            batch, rules = self._batch, self.rules
        if batch is None or batch.get("features") is None:
            return
        cur = batch["features"].reset_index(drop=True)
        previous = score_frame(batch["old_features"], batch["connected"], rules)
        scored = score_frame(cur, batch["connected"], rules,
                             previous[["account_id", "as_of", "score"]])
        new = {**batch, "config": rules.config_version,
               "scored": {r["account_id"]: r for r in scored.to_dict("records")}}
        with self._lock:
            self._batch = new
            self._cache.clear()

    def _probabilities(self, feats: pd.DataFrame) -> pd.DataFrame | None:
        if not self.bundles or feats.empty:
            return None
        from scoring.bundle import predict_horizons

        parts = [predict_horizons(by_h, feats) for by_h in self.bundles.values()]
        return pd.concat(parts, axis=1)

    # --- resolving an account ---------------------------------------------------------------
    def precomputed(self, account_id: str, as_of: date | None,
                    activity: Mapping[str, Any] | None) -> bool:
        """Whether `resolve` answers from memory (no feature build, no warehouse read)."""
        batch = self._batch
        return (activity is None and batch is not None and account_id in batch["scored"]
                and (as_of is None or as_of == batch["as_of"])
                and batch.get("config") == self.rules.config_version)

    def resolve(self, account_id: str, as_of: date | None = None,
                activity: Mapping[str, list[dict[str, Any]]] | None = None,
                *, fresh: bool = False) -> Resolved:
        self.tick()
        if activity is not None:
            return self._from_payload(account_id, as_of, activity)
        batch = self._batch
        if batch is None:
            raise Unavailable("the warehouse is not available: run `healthscore ingest` first, "
                              "or send the account's activity in the payload")
        when = as_of or batch["as_of"]
        if account_id not in batch["names"]:
            raise NotFound(f"account {account_id!r} is not in the warehouse; send its raw "
                           "activity in `activity` to score it")
        if not fresh and when == batch["as_of"] and account_id in batch["scored"] \
                and batch.get("config") == self.rules.config_version:
            pos = batch["positions"][account_id]
            frame = batch["features"]
            return Resolved(dict(batch["scored"][account_id]),
                            lambda: frame.iloc[[pos]].reset_index(drop=True),
                            dict(batch["probs"].get(account_id, {})), batch["connected"],
                            "warehouse", batch["names"].get(account_id))
        key = (batch["generation"], self.rules.config_version, account_id, when)
        if not fresh:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
        out = self._from_warehouse(account_id, when, batch)
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self.settings.serving.feature_cache_size:
                self._cache.popitem(last=False)
        return out

    def _from_warehouse(self, account_id: str, when: date, batch: dict[str, Any]) -> Resolved:
        from features.build import EntityError, build_features
        from scoring.batch import churn_dates
        from scoring.health import score_frame

        try:
            # The connection: build_features takes (and closes) a cursor of its own per call.
            con = self.snapshot.connection()
        except WarehouseUnavailable as exc:
            raise Unavailable(str(exc)) from None
        rules = self.rules
        t = pd.Timestamp(when)
        ents = pd.DataFrame({"account_id": [account_id, account_id],
                             "as_of": [t, t - pd.Timedelta(days=rules.trend_days)]})
        try:
            feats = build_features(con, ents, self.settings.features)
        except EntityError as exc:
            raise NotFound(str(exc)) from None
        cur = feats.iloc[:1].reset_index(drop=True)
        with con.cursor() as dates:
            cur["churned_at"] = churn_dates(dates, [account_id]).to_numpy()
        prev = score_frame(feats.iloc[1:].reset_index(drop=True), batch["connected"], rules)
        row = score_frame(cur, batch["connected"], rules,
                          prev[["account_id", "as_of", "score"]]).to_dict("records")[0]
        probs = self._probabilities(cur)
        p = {k: float(v) for k, v in probs.iloc[0].items()} if probs is not None else {}
        return Resolved(row, cur, p, batch["connected"], "warehouse",
                        batch["names"].get(account_id))

    def _from_payload(self, account_id: str, as_of: date | None,
                      activity: Mapping[str, list[dict[str, Any]]]) -> Resolved:
        from features.build import EntityError, build_features
        from scoring.batch import churn_dates
        from scoring.health import score_frame

        con, latest = load_payload(account_id, activity)
        try:
            when = pd.Timestamp(as_of) if as_of else \
                pd.Timestamp(latest).normalize() + pd.Timedelta(days=1)
            rules = self.rules
            connected = frozenset(activity)
            ents = pd.DataFrame({"account_id": [account_id, account_id],
                                 "as_of": [when, when - pd.Timedelta(days=rules.trend_days)]})
            try:
                feats = build_features(con, ents, self.settings.features)
            except EntityError as exc:
                raise PayloadError(["body", "activity", "accounts"], str(exc)) from None
            cur = feats.iloc[:1].reset_index(drop=True)
            cur["churned_at"] = churn_dates(con, [account_id]).to_numpy()
            prev = score_frame(feats.iloc[1:].reset_index(drop=True), connected, rules)
            row = score_frame(cur, connected, rules,
                              prev[["account_id", "as_of", "score"]]).to_dict("records")[0]
            name = con.execute("select name from accounts limit 1").fetchone()
        finally:
            con.close()
        probs = self._probabilities(cur)
        p = {k: float(v) for k, v in probs.iloc[0].items()} if probs is not None else {}
        return Resolved(row, cur, p, connected, "payload", name[0] if name else None)

    # --- endpoints ----------------------------------------------------------------------------
    def calculate(self, req: api.CalculateRequest, *, fresh: bool = False) -> api.HealthScore:
        res = self.resolve(req.accountId, req.asOf, req.activity, fresh=fresh)
        self._persist(res, force=fresh)
        return self._health_score(res)

    def _persist(self, res: Resolved, *, force: bool) -> None:
        row = res.row
        as_of = _day(row["as_of"])
        if not force:
            with self.db.connect() as conn:
                stored = conn.execute(select(HealthScoreRecord.score,
                                             HealthScoreRecord.config_version).where(
                    HealthScoreRecord.account_id == row["account_id"],
                    HealthScoreRecord.as_of == as_of)).first()
            if stored is not None and stored[1] == row["config_version"] and \
                    _same(stored[0], row["score"]):
                return  # already stored for this date and rules version: nothing changed
        cuts = {p.name: (p.status.healthy_min, p.status.at_risk_min)
                for p in self.rules.all_profiles}
        churn = _longest(res.probabilities, "churn")
        record_scores(self.db, pd.DataFrame([row]), event_rules=self.event_rules,
                      alert_rules=self.alert_rules, status_cuts=cuts,
                      churn={row["account_id"]: churn} if churn is not None else None)
        self.worker.wake()

    def _health_score(self, res: Resolved) -> api.HealthScore:
        from scoring.health import composite

        row = res.row
        account = str(row["account_id"])
        rules = self.rules
        profile = rules.profile(str(row["profile"]))
        with Session(self.db, expire_on_commit=False) as session:
            override = active_override(session, account)
            alerts = [_alert_out(a) for a in open_alerts(session, account)]
        auto = _f(row["score"])
        grade, band, colour, status = row["grade"], row["band"], row["colour"], row["status"]
        score = auto
        if override is not None:
            score = float(override.score)
            s = np.array([score])
            grade = composite.grade(s, profile)[0]
            band = composite.band(s, profile)[0]
            colour = composite.colour(s, profile)[0]
            if status != "churned":
                status = composite.status(s, np.array([False]), profile)[0]
        metrics = self._metrics(res, profile)
        feats = res.features.iloc[0]
        days = _f(feats.get("days_since_last_activity"))
        as_of = _day(row["as_of"])
        last = as_of - timedelta(days=int(days)) if days is not None else None
        probs = res.probabilities
        churn, expansion = _longest(probs, "churn"), _longest(probs, "expansion")
        return api.HealthScore(
            id=account, customer=res.customer, score=score, automaticScore=auto,
            override=_override_out(override) if override else None,
            grade=grade, status=status, band=band, colour=colour, trend=row.get("trend"),
            metrics=metrics, weights={d: profile.weight(d) for d in profile.dimensions},
            dimensions=api.Dimensions(**{d: _f(row.get(f"dim_{d}")) for d in DIMENSIONS}),
            churnRisk=None if churn is None else round(100 * churn, 2),
            expansionOpportunity=None if expansion is None else round(100 * expansion, 2),
            probabilities=probs, probabilitiesNote=None if probs else self.models_note,
            lastActive=last, daysSinceActive=days, alerts=alerts,
            calculated=datetime.now(UTC), previousScore=_f(row.get("previous_score")),
            metadata={"asOf": str(as_of), "configVersion": row["config_version"],
                      "profile": row["profile"], "coverage": _f(row.get("coverage")),
                      "missing": list(row.get("missing") or []),
                      "flags": list(row.get("flags") or []), "source": res.source,
                      "models": sorted(self._labels())},
        )

    def _metrics(self, res: Resolved, profile: Any) -> list[api.Metric]:
        """Each feature's score, weight and share of the composite (factor_table: ~15 ms, so
        kept per warehouse snapshot, rules version, account and date)."""
        from scoring.health.summary import factor_table

        row = res.row
        key = (self.snapshot.generation, row["config_version"], str(row["account_id"]),
               str(_day(row["as_of"]))) if res.source == "warehouse" else None
        if key is not None:
            with self._lock:
                hit = self._metric_cache.get(key)
            if hit is not None:
                return hit
        table = factor_table(res.features.iloc[0].to_dict(), res.connected, profile)
        metrics = [api.Metric(name=r.feature, dimension=r.dimension, value=_f(r.value),
                              score=_f(r.score), weight=float(r.weight), share=float(r.share))
                   for r in table.itertuples()]
        if key is not None:
            with self._lock:
                self._metric_cache[key] = metrics
                while len(self._metric_cache) > max(1, self.settings.serving.feature_cache_size):
                    self._metric_cache.popitem(last=False)
        return metrics

    def _labels(self) -> list[str]:
        return [b.label for by_h in (self.bundles or {}).values() for b in by_h.values()]

    def predict(self, req: api.PredictRequest) -> api.Prediction:
        res = self.resolve(req.accountId, req.asOf, req.activity)
        return self._prediction(res)

    def _prediction(self, res: Resolved) -> api.Prediction:
        row = res.row
        score, prev = _f(row["score"]), _f(row.get("previous_score"))
        trajectory: dict[str, float | None] = {}
        for h in (30, 60, 90):
            if score is None:
                trajectory[f"{h}d"] = None
            else:
                # The recent trend, halved every 30 days: a trend does not run on forever.
                slope = 0.0 if prev is None else (score - prev) / self.rules.trend_days
                moved = sum(slope * 30 * 0.5 ** k for k in range(h // 30))
                trajectory[f"{h}d"] = round(min(100.0, max(0.0, score + moved)), 2)
        probs = res.probabilities
        churn, expansion = _longest(probs, "churn"), _longest(probs, "expansion")
        return api.Prediction(
            id=str(row["account_id"]), asOf=_day(row["as_of"]), probabilities=probs,
            churnRisk=None if churn is None else round(100 * churn, 2),
            expansionOpportunity=None if expansion is None else round(100 * expansion, 2),
            trajectory=trajectory, available=bool(probs),
            note=None if probs else self.models_note)

    def analyze(self, req: api.AnalyzeRequest) -> api.Analysis:
        res = self.resolve(req.accountId, req.asOf, req.activity)
        health = self._health_score(res)
        prediction = self._prediction(res)
        explainer, factors = self._explain(res, req.topK)
        rule_factors = sorted(health.metrics, key=lambda m: -m.share)[:req.topK]
        return api.Analysis(healthScore=health, prediction=prediction, ruleFactors=rule_factors,
                            modelFactors=factors, explainer=explainer)

    def _explain(self, res: Resolved, top_k: int) -> tuple[str, dict[str, list[api.Factor]]]:
        """The one seam for explanations: `serving.explain.model_factors` when that module
        exists (the explanations issue), else exact TreeSHAP from the bundles here."""
        try:
            from serving import explain  # type: ignore[attr-defined]
        except ImportError:
            explain = None
        if explain is not None and hasattr(explain, "model_factors"):
            got = explain.model_factors(res.features, self.bundles or {}, top_k)
            return "serving.explain", {k: [api.Factor(**f) for f in v] for k, v in got.items()}
        out: dict[str, list[api.Factor]] = {}
        for by_h in (self.bundles or {}).values():
            bundle = by_h[max(by_h)]
            contrib = bundle.contributions(res.features)[0, :-1]
            order = np.argsort(-np.abs(contrib))[:top_k]
            out[bundle.label] = [api.Factor(
                feature=bundle.features[j], value=_f(res.features.iloc[0].get(
                    bundle.features[j])) if bundle.features[j] not in bundle.categories else None,
                contribution=round(float(contrib[j]), 5),
                direction="raises" if contrib[j] > 0 else "lowers") for j in order]
        return "treeshap", out

    def summary(self, account_id: str, as_of: date | None = None) -> str:
        from scoring.health import health_summary

        res = self.resolve(account_id, as_of)
        return health_summary(res.row, res.features.iloc[0].to_dict(), res.connected,
                              self.rules, name=res.customer)

    # --- overrides and rules versions -----------------------------------------------------------
    def update(self, req: api.OverrideRequest, actor: str) -> api.HealthScore:
        expires = aware(req.expiresAt)
        if expires <= utcnow():  # type: ignore[operator]
            raise PayloadError(["body", "expiresAt"], "must be in the future")
        res = self.resolve(req.accountId)
        self._persist(res, force=False)
        with Session(self.db, expire_on_commit=False) as session, session.begin():
            row = Override(account_id=req.accountId, score=req.score,
                           automatic_score=_f(res.row["score"]), reason=req.reason,
                           author=req.author, expires_at=expires, created_at=utcnow(),
                           created_by_key=actor)
            session.add(row)
            session.flush()
            detail = {"score": req.score, "automaticScore": _f(res.row["score"]),
                      "reason": req.reason, "author": req.author,
                      "expiresAt": expires.isoformat()}  # type: ignore[union-attr]
            audit(session, actor, "score.override", req.accountId, detail)
            add_event(session, "updated", req.accountId, {"accountId": req.accountId, **detail})
        self.worker.wake()
        return self._health_score(res)

    def set_weights(self, req: api.WeightsRequest, actor: str) -> api.ConfigVersionOut:
        def change(profile: dict[str, Any]) -> None:
            weights = dict(profile.get("weights") or {})
            weights.update(req.weights)
            profile["weights"] = weights

        return self._new_version(req.profile, change, "weights", actor, req.reason,
                                 {"weights": req.weights})

    def set_thresholds(self, req: api.ThresholdsRequest, actor: str) -> api.ConfigVersionOut:
        given = req.model_dump(exclude_none=True, exclude={"profile", "reason"})
        if not given:
            raise PayloadError(["body"], "give at least one of grades, bands, status, flags")

        def change(profile: dict[str, Any]) -> None:
            for key in ("grades", "bands", "status"):
                if key in given:
                    profile[key] = given[key]
            for code, values in given.get("flags", {}).items():
                flags = dict(profile.get("flags") or {})
                flags[code] = {**dict(flags.get(code) or {}), **values}
                profile["flags"] = flags

        return self._new_version(req.profile, change, "thresholds", actor, req.reason, given)

    def _new_version(self, profile_name: str, change: Any, kind: str, actor: str, reason: str,
                     detail: dict[str, Any]) -> api.ConfigVersionOut:
        from scoring.health.profiles import RulesError, parse_rules

        with self._lock:
            data = json.loads(self.rules.content)
            if profile_name == "default":
                change(data["default"])
            else:
                target = [p for p in data.get("profiles") or [] if p.get("name") == profile_name]
                if not target:
                    raise NotFound(f"no rules profile named {profile_name!r}")
                change(target[0])
            try:
                rules = parse_rules(data, Path("request"))
            except RulesError as exc:
                raise PayloadError(["body"], str(exc).replace("request: ", "")) from None
            rules = rules.with_trend(self.rules.trend_days, self.rules.trend_dead_band)
            with Session(self.db, expire_on_commit=False) as session, session.begin():
                row = add_config(session, rules.config_version, rules.content, kind, actor,
                                 reason)
                audit(session, actor, f"config.{kind}", profile_name,
                      {**detail, "version": rules.config_version})
                out = _config_out(row, True)
            self._config_id = row.id
            self.rules = rules
            self._cache.clear()
        self._rescore_batch()
        return out

    def config_versions(self) -> list[api.ConfigVersionOut]:
        with Session(self.db, expire_on_commit=False) as session:
            rows = session.scalars(select(ConfigVersion).order_by(ConfigVersion.id.desc())).all()
            top = rows[0].id if rows else None
            return [_config_out(r, r.id == top) for r in rows]

    # --- alerts -------------------------------------------------------------------------------
    def create_alert(self, req: api.AlertRequest, actor: str) -> api.AlertOut:
        self._known(req.accountId)
        with Session(self.db, expire_on_commit=False) as session, session.begin():
            alert = create_alert(session, req.accountId, "manual", req.severity, req.message,
                                 actor)
            audit(session, actor, "alert.created", req.accountId, {"alertId": alert.id})
            out = _alert_out(alert)
        self.worker.wake()
        return out

    def resolve_alert(self, alert_id: int, req: api.ResolveRequest, actor: str) -> api.AlertOut:
        with Session(self.db, expire_on_commit=False) as session, session.begin():
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise NotFound(f"no alert {alert_id}")
            if alert.status != "open":
                raise Conflict(f"alert {alert_id} is already {alert.status}")
            resolve_alert(session, alert, actor, req.resolution)
            audit(session, actor, "alert.resolved", alert.account_id, {"alertId": alert_id})
            out = _alert_out(alert)
        self.worker.wake()
        return out

    def alerts(self, account_id: str | None, status: str | None, limit: int, offset: int
               ) -> list[api.AlertOut]:
        from serving.ops_store import list_alerts

        with Session(self.db, expire_on_commit=False) as session:
            return [_alert_out(a) for a in list_alerts(session, account_id=account_id,
                                                       status=status, limit=limit,
                                                       offset=offset)]

    def _known(self, account_id: str) -> None:
        batch = self._batch
        if batch is not None and account_id in batch["names"]:
            return
        with self.db.connect() as conn:
            if conn.execute(select(HealthScoreRecord.account_id).where(
                    HealthScoreRecord.account_id == account_id).limit(1)).first() is None:
                raise NotFound(f"account {account_id!r} is neither in the warehouse nor scored")

    # --- reading scores ---------------------------------------------------------------------------
    def history(self, account_id: str, start: date | None, end: date | None
                ) -> dict[str, Any]:
        self._known(account_id)
        stmt = select(*[getattr(HealthScoreRecord, c) for c in SCORE_FIELDS]).where(
            HealthScoreRecord.account_id == account_id).order_by(HealthScoreRecord.as_of)
        if start:
            stmt = stmt.where(HealthScoreRecord.as_of >= start)
        if end:
            stmt = stmt.where(HealthScoreRecord.as_of <= end)
        with Session(self.db, expire_on_commit=False) as session:
            rows = [_score_row(dict(zip(SCORE_FIELDS, r, strict=True)))
                    for r in session.execute(stmt)]
            overrides = session.scalars(select(Override).where(
                Override.account_id == account_id).order_by(Override.id)).all()
            return {"accountId": account_id, "scores": rows,
                    "overrides": [_override_out(o) for o in overrides]}

    def list_scores(self, *, as_of: date | None, band: str | None, status: str | None,
                    grade: str | None, min_score: float | None, max_score: float | None,
                    sort: str, order: str, page: int, page_size: int) -> api.ScorePage:
        R = HealthScoreRecord
        with Session(self.db, expire_on_commit=False) as session:
            when = as_of or session.scalar(select(func.max(R.as_of)))
            if when is None:
                return api.ScorePage(total=0, page=page, pageSize=page_size, items=[])
            cond = [R.as_of == when]
            if band:
                cond.append(R.band == band)
            if status:
                cond.append(R.status == status)
            if grade:
                cond.append(R.grade == grade)
            if min_score is not None:
                cond.append(R.score >= min_score)
            if max_score is not None:
                cond.append(R.score <= max_score)
            total = session.scalar(select(func.count()).select_from(R).where(*cond)) or 0
            col = {"score": R.score, "accountId": R.account_id,
                   "previousScore": R.previous_score, "grade": R.grade}[sort]
            ordered = col.desc() if order == "desc" else col.asc()
            stmt = (select(*[getattr(R, c) for c in SCORE_FIELDS]).where(*cond)
                    .order_by(ordered, R.account_id).limit(page_size)
                    .offset((page - 1) * page_size))
            items = [_score_row(dict(zip(SCORE_FIELDS, r, strict=True)))
                     for r in session.execute(stmt)]
        return api.ScorePage(total=total, page=page, pageSize=page_size, items=items)

    def compare_segment(self, req: api.SegmentRequest) -> api.SegmentComparison:
        self.tick()
        batch = self._batch
        if batch is None or batch.get("features") is None:
            raise Unavailable("no warehouse scores to compare: run `healthscore ingest`")
        if req.asOf is not None and req.asOf != batch["as_of"]:
            frame = self.store.load_scores(req.asOf)
            if frame.empty:
                raise NotFound(f"no stored scores as of {req.asOf}")
            attrs = batch["features"][["account_id", req.field]].reset_index(drop=True)
            frame = frame.merge(attrs, on="account_id", how="left")
            when = req.asOf
        else:
            frame = pd.DataFrame(list(batch["scored"].values()))
            frame[req.field] = batch["features"].loc[frame["account_id"], req.field].to_numpy()
            when = batch["as_of"]
        inside = frame[req.field].astype("string") == req.value
        if not inside.any():
            known = sorted(frame[req.field].dropna().astype(str).unique())
            raise NotFound(f"no account with {req.field} = {req.value!r}; known: {known}")
        mask = inside.to_numpy()
        seg, rest = segment_stats(frame[mask]), segment_stats(frame[~mask])
        diffs = []
        for d in DIMENSIONS:
            a, b = seg.averageDimensions.get(d), rest.averageDimensions.get(d)
            if a is not None and b is not None:
                diffs.append({"dimension": d, "segment": a, "rest": b,
                              "difference": round(a - b, 2)})
        diffs.sort(key=lambda x: -abs(x["difference"]))
        return api.SegmentComparison(field=req.field, value=req.value, asOf=when, segment=seg,
                                     rest=rest, topFactors=diffs[:5])

    def report(self, req: api.ReportRequest) -> api.Report:
        if req.end < req.start:
            raise PayloadError(["body", "end"], "must not be before start")
        R = HealthScoreRecord
        with Session(self.db, expire_on_commit=False) as session:
            dates = list(session.scalars(select(R.as_of).distinct().where(
                R.as_of >= req.start, R.as_of <= req.end).order_by(R.as_of)))
            start_dt = datetime.combine(req.start, datetime.min.time(), UTC)
            end_dt = datetime.combine(req.end + timedelta(days=1), datetime.min.time(), UTC)
            # Rule alerts carry the as-of date they were raised for; manual ones their time.
            in_period = or_(and_(Alert.as_of.is_not(None), Alert.as_of >= req.start,
                                 Alert.as_of <= req.end),
                            and_(Alert.as_of.is_(None), Alert.created_at >= start_dt,
                                 Alert.created_at < end_dt))
            raised = session.scalar(select(func.count()).select_from(Alert).where(
                in_period)) or 0
            resolved = session.scalar(select(func.count()).select_from(Alert).where(
                Alert.resolved_at >= start_dt, Alert.resolved_at < end_dt)) or 0
        empty = api.Report(start=req.start, end=req.end, asOf=None, scoredAccounts=0,
                           averageScore=None, bands={}, atRisk=0, champions=0, movements={},
                           alertsRaised=raised, alertsResolved=resolved)
        if not dates:
            return empty
        last = self.store.load_scores(dates[-1])
        first = self.store.load_scores(dates[0])
        top = max(self.rules.default.bands, key=lambda b: b.min).name
        moves = last[["account_id", "score", "band"]].merge(
            first[["account_id", "score", "band"]], on="account_id", suffixes=("", "_first"))
        delta = moves["score"] - moves["score_first"]
        dead = self.rules.trend_dead_band
        order = {b.name: b.min for b in self.rules.default.bands}
        up = moves["band"].map(order) > moves["band_first"].map(order)
        down = moves["band"].map(order) < moves["band_first"].map(order)
        return api.Report(
            start=req.start, end=req.end, asOf=dates[-1], scoredAccounts=len(last),
            averageScore=_f(round(last["score"].mean(), 2)) if len(last) else None,
            bands={str(k): int(v) for k, v in last["band"].value_counts().items()},
            atRisk=int(last["status"].isin(["at-risk", "critical"]).sum()),
            champions=int((last["band"] == top).sum()),
            movements={"improved": int((delta > dead).sum()),
                       "declined": int((delta < -dead).sum()),
                       "stable": int((delta.abs() <= dead).sum()),
                       "bandUp": int(up.sum()), "bandDown": int(down.sum())},
            alertsRaised=raised, alertsResolved=resolved)

    def export(self, fmt: str, start: date | None, end: date | None, chunk: int = 2000
               ) -> Iterator[bytes]:
        """Stored scores in a date range as CSV, JSON (an array) or Parquet, chunk by chunk."""
        R = HealthScoreRecord
        cols = [c for c in SCORE_FIELDS]
        stmt = select(*[getattr(R, c) for c in cols]).order_by(R.as_of, R.account_id)
        if start:
            stmt = stmt.where(R.as_of >= start)
        if end:
            stmt = stmt.where(R.as_of <= end)

        def frames() -> Iterator[pd.DataFrame]:
            with self.db.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=chunk)\
                    .execute(stmt)
                for part in result.partitions(chunk):
                    frame = pd.DataFrame(part, columns=cols)
                    for c in ("flags", "missing"):
                        frame[c] = [v if isinstance(v, str) else json.dumps(v, default=str)
                                    for v in frame[c]]
                    frame["as_of"] = frame["as_of"].astype(str)
                    yield frame

        if fmt == "csv":
            first = True
            for frame in frames():
                yield frame.to_csv(index=False, header=first).encode()
                first = False
            if first:
                yield (",".join(cols) + "\n").encode()
        elif fmt == "json":
            yield b"["
            sep = b""
            for frame in frames():
                for rec in frame.to_dict("records"):
                    rec["flags"], rec["missing"] = json.loads(rec["flags"]), \
                        json.loads(rec["missing"])
                    yield sep + json.dumps(_clean(rec), default=str).encode()
                    sep = b","
            yield b"]"
        else:
            yield from parquet_chunks(frames(), cols)

    # --- webhooks and keys (admin) ------------------------------------------------------------
    def add_webhook(self, req: api.WebhookRequest, actor: str) -> api.WebhookOut:
        import secrets

        from serving.events import EVENT_TYPES
        from serving.ops_store import Webhook

        bad = [t for t in req.eventTypes if t not in EVENT_TYPES]
        if bad:
            raise PayloadError(["body", "eventTypes"],
                               f"unknown event type(s) {bad}; known: {list(EVENT_TYPES)}")
        secret = req.secret or secrets.token_hex(32)
        with Session(self.db, expire_on_commit=False) as session, session.begin():
            hook = Webhook(url=req.url, secret=secret, event_types=list(req.eventTypes),
                           active=True, created_at=utcnow())
            session.add(hook)
            session.flush()
            audit(session, actor, "webhook.created", str(hook.id),
                  {"url": req.url, "eventTypes": req.eventTypes})
            return _webhook_out(hook, secret)

    def webhooks(self) -> list[api.WebhookOut]:
        from serving.ops_store import Webhook

        with Session(self.db, expire_on_commit=False) as session:
            return [_webhook_out(h) for h in session.scalars(select(Webhook).order_by(Webhook.id))]

    def delete_webhook(self, hook_id: int, actor: str) -> None:
        from serving.ops_store import Webhook

        with Session(self.db, expire_on_commit=False) as session, session.begin():
            hook = session.get(Webhook, hook_id)
            if hook is None or not hook.active:
                raise NotFound(f"no active webhook {hook_id}")
            hook.active = False
            audit(session, actor, "webhook.disabled", str(hook_id), {})

    def deliveries(self, hook_id: int, status: str | None) -> list[api.DeliveryOut]:
        from serving.ops_store import Webhook, deliveries_of

        with Session(self.db, expire_on_commit=False) as session:
            if session.get(Webhook, hook_id) is None:
                raise NotFound(f"no webhook {hook_id}")
            return [api.DeliveryOut(id=d.id, eventId=d.event_id, status=d.status,
                                    attempts=d.attempts, lastStatus=d.last_status,
                                    lastError=d.last_error, nextAttemptAt=d.next_attempt_at,
                                    deliveredAt=d.delivered_at)
                    for d in deliveries_of(session, hook_id, status)]

    def add_key(self, req: api.KeyRequest, actor: str) -> api.KeyOut:
        from serving.auth import create_key

        with Session(self.db, expire_on_commit=False) as session, session.begin():
            row, key = create_key(session, req.name, req.role, actor=actor)
            return _key_out(row, key)

    def list_keys(self) -> list[api.KeyOut]:
        from serving.ops_store import ApiKey

        with Session(self.db, expire_on_commit=False) as session:
            return [_key_out(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.id))]

    def revoke_key(self, key_id: int, actor: str) -> None:
        from serving.ops_store import ApiKey

        with Session(self.db, expire_on_commit=False) as session, session.begin():
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                raise NotFound(f"no active key {key_id}")
            row.revoked_at = utcnow()
            audit(session, actor, "key.revoked", str(key_id), {"name": row.name})
        self.keys.forget()


# --- helpers --------------------------------------------------------------------------------------

def _engine_kw(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Concurrent writers wait for the lock instead of failing at once.
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def _load_models(models_dir: Path) -> tuple[dict[str, dict[int, Any]], str | None]:
    """Champion bundles grouped by target and horizon, or ({}, why they are unavailable)."""
    try:
        from scoring.bundle import load_bundles

        bundles = load_bundles(models_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        note = f"probabilities unavailable: {exc}"
        logger.warning(note)
        return {}, note
    grouped: dict[str, dict[int, Any]] = {}
    for label, bundle in bundles.items():
        m = LABEL.match(label)
        if m:
            grouped.setdefault(m.group(1), {})[int(m.group(2))] = bundle
    logger.info("loaded models %s", sorted(bundles))
    return grouped, None if grouped else "probabilities unavailable: no churn/expansion models"


def _data_date(con: duckdb.DuckDBPyConnection, connected: frozenset[str]) -> date:
    """The day after the latest usage (what `now` means for a warehouse of past data)."""
    if "usage_events" in connected:
        got = con.execute("select max(ts) from usage_events").fetchone()
        if got and got[0] is not None:
            return (pd.Timestamp(got[0]).normalize() + pd.Timedelta(days=1)).date()
    return datetime.now(UTC).date()


def _same(a: Any, b: Any) -> bool:
    fa, fb = _f(a), _f(b)
    if fa is None or fb is None:
        return fa is None and fb is None
    return abs(fa - fb) < 1e-9


def _longest(probs: Mapping[str, float], target: str) -> float | None:
    found = [(int(m.group(2)), v) for k, v in probs.items()
             if (m := LABEL.match(k)) and m.group(1) == target]
    return max(found)[1] if found else None


def _clean(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}


def _score_row(r: dict[str, Any]) -> api.ScoreRow:
    return api.ScoreRow(accountId=r["account_id"], asOf=r["as_of"], score=_f(r["score"]),
                        grade=r["grade"], band=r["band"], status=r["status"], trend=r["trend"],
                        previousScore=_f(r["previous_score"]), configVersion=r["config_version"])


def _alert_out(a: Alert) -> api.AlertOut:
    return api.AlertOut(id=a.id, accountId=a.account_id, rule=a.rule, severity=a.severity,
                        message=a.message, status=a.status, createdAt=aware(a.created_at),
                        createdBy=a.created_by, resolvedAt=aware(a.resolved_at),
                        resolvedBy=a.resolved_by, resolution=a.resolution)


def _override_out(o: Override) -> api.OverrideOut:
    return api.OverrideOut(score=o.score, automaticScore=o.automatic_score, reason=o.reason,
                           author=o.author, expiresAt=aware(o.expires_at),
                           createdAt=aware(o.created_at))


def _config_out(r: ConfigVersion, active: bool) -> api.ConfigVersionOut:
    return api.ConfigVersionOut(id=r.id, version=r.version, change=r.change, author=r.author,
                                reason=r.reason, createdAt=aware(r.created_at), active=active)


def _webhook_out(h: Any, secret: str | None = None) -> api.WebhookOut:
    return api.WebhookOut(id=h.id, url=h.url, eventTypes=list(h.event_types), active=h.active,
                          createdAt=aware(h.created_at), secret=secret)


def _key_out(k: Any, key: str | None = None) -> api.KeyOut:
    return api.KeyOut(id=k.id, name=k.name, role=k.role, prefix=k.prefix,
                      createdAt=aware(k.created_at), revokedAt=aware(k.revoked_at), key=key)


__all__ = ["Conflict", "HealthScoreEngine", "NotFound", "PayloadError", "Unavailable",
           "active_overrides"]
