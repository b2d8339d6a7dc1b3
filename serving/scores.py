"""The score resource: calculate, predict, analyze and the Markdown summary of one account.

Every answer starts from the account as the one pipeline scored it (`ServiceState.account`, which
calls `scoring.pipeline.score_accounts`), so the API, the daily job and the CLI agree on every
number. An account that is not active at the date asked (churned, or not yet a customer) is
answered with `accountStatus` and no probabilities, with `probabilitiesNote` saying why: a
churn probability of an account that has already left means nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from scoring.health import composite, health_summary
from scoring.health.summary import factor_table
from scoring.pipeline import ScoredAccount, longest_label
from serving import schemas
from serving.convert import alert_out, day, number, override_out, text
from serving.events import record_scores
from serving.explain import explain_account
from serving.ops_store import active_override, open_alerts
from serving.peers import PeerTable, load_peer_table, peers_of
from serving.schemas.explanation import HealthAnalysis
from serving.state import ServiceState
from serving.store import DIMENSIONS, HealthScoreRecord


def calculate(state: ServiceState, req: schemas.CalculateRequest, *, fresh: bool = False
              ) -> schemas.HealthScore:
    """The account's health score; stored once per date and rules version (events fire)."""
    account = state.account(req.accountId, req.asOf, req.activity, fresh=fresh)
    persist(state, account, force=fresh)
    return health_score(state, account)


def predict(state: ServiceState, req: schemas.PredictRequest) -> schemas.Prediction:
    return prediction(state, state.account(req.accountId, req.asOf, req.activity))


def analyze(state: ServiceState, req: schemas.AnalyzeRequest) -> schemas.Analysis:
    """Score, prediction, the rules' factors and the one explanation of the account."""
    account = state.account(req.accountId, req.asOf, req.activity)
    health = health_score(state, account)
    rule_factors = sorted(health.metrics, key=lambda m: -m.share)[:req.topK]
    explanation = None
    if account.status != "not-started":
        explanation = _explanation(state, account, req.topK)
    return schemas.Analysis(healthScore=health, prediction=prediction(state, account),
                            ruleFactors=rule_factors, explanation=explanation)


def _explanation(state: ServiceState, account: ScoredAccount, top_k: int) -> HealthAnalysis:
    """The account explained (kept per snapshot, rules version, account, date and top-k for a
    warehouse account: the same inputs give the same explanation, and TreeSHAP with the what-if
    search is the costly part of an `analyze`)."""
    cfg = state.settings.serving.model_copy(update={"top_k_factors": top_k})
    warehouse = account.source == "warehouse"

    def make() -> HealthAnalysis:
        return explain_account(account, state.rules, state.models,
                               peers=_peers(state, account, warehouse), cfg=cfg)

    if not warehouse:
        return make()
    key = ("explanation", state.snapshot.generation, state.rules.config_version,
           account.account_id, account.as_of, top_k)
    return state.derive(key, make)  # type: ignore[no-any-return]


def summary(state: ServiceState, account_id: str, as_of: Any = None) -> str:
    account = state.account(account_id, as_of)
    return health_summary(account.score, account.features.iloc[0].to_dict(), account.connected,
                          state.rules, name=account.name)


def persist(state: ServiceState, account: ScoredAccount, *, force: bool) -> None:
    """Store the account's score through the outbox, unless this date and rules version already
    hold the same score (an account not yet a customer has none to store)."""
    if account.status == "not-started":
        return
    row = account.score
    if not force:
        with state.db.connect() as conn:
            stored = conn.execute(select(HealthScoreRecord.score,
                                         HealthScoreRecord.config_version).where(
                HealthScoreRecord.account_id == row["account_id"],
                HealthScoreRecord.as_of == day(row["as_of"]))).first()
        if stored is not None and stored[1] == row["config_version"] and \
                _same(stored[0], row["score"]):
            return
    cuts = {p.name: (p.status.healthy_min, p.status.at_risk_min)
            for p in state.rules.all_profiles}
    label = longest_label(account.probabilities, "churn")
    record_scores(state.db, pd.DataFrame([row]), event_rules=state.event_rules,
                  alert_rules=state.alert_rules, status_cuts=cuts,
                  churn={account.account_id: account.probabilities[label]} if label else None)
    state.worker.wake()


def health_score(state: ServiceState, account: ScoredAccount) -> schemas.HealthScore:
    row = account.score
    profile = state.rules.profile(str(row["profile"])) if isinstance(row.get("profile"), str) \
        else state.rules.default
    with Session(state.db, expire_on_commit=False) as session:
        override = active_override(session, account.account_id)
        alerts = [alert_out(a) for a in open_alerts(session, account.account_id)]
    auto = number(row["score"])
    grade, band, colour, status = (text(row[c]) for c in ("grade", "band", "colour", "status"))
    score = auto
    if override is not None:
        score = float(override.score)
        s = np.array([score])
        grade, band = composite.grade(s, profile)[0], composite.band(s, profile)[0]
        colour = composite.colour(s, profile)[0]
        if status != "churned":
            status = composite.status(s, np.array([False]), profile)[0]
    days = number(account.features.iloc[0].get("days_since_last_activity"))
    last = account.as_of - timedelta(days=int(days)) if days is not None else None
    probs = account.probabilities
    return schemas.HealthScore(
        id=account.account_id, customer=account.name, accountStatus=account.status,
        score=score, automaticScore=auto,
        override=override_out(override) if override else None,
        grade=grade, status=status, band=band, colour=colour, trend=text(row.get("trend")),
        metrics=metrics(state, account, profile),
        weights={d: profile.weight(d) for d in profile.dimensions},
        dimensions=schemas.Dimensions(**{d: number(row.get(f"dim_{d}")) for d in DIMENSIONS}),
        churnRisk=_percent(probs, "churn"), expansionOpportunity=_percent(probs, "expansion"),
        probabilities=probs, probabilitiesNote=account.probabilities_note,
        lastActive=last, daysSinceActive=days, alerts=alerts,
        calculated=datetime.now(UTC), previousScore=number(row.get("previous_score")),
        metadata={"asOf": str(account.as_of), "configVersion": row["config_version"],
                  "profile": text(row["profile"]), "coverage": number(row.get("coverage")),
                  "missing": list(row.get("missing") or []),
                  "flags": list(row.get("flags") or []),
                  "source": account.source,
                  "models": sorted(state.labels)},
    )


def metrics(state: ServiceState, account: ScoredAccount, profile: Any) -> list[schemas.Metric]:
    """Each feature's score, weight and share of the composite (the factor table is the costly
    part of a `calculate`: kept per snapshot, rules version, account and date for a warehouse
    account)."""
    if account.status == "not-started":
        return []

    def make() -> list[schemas.Metric]:
        table = factor_table(account.features.iloc[0].to_dict(), account.connected, profile)
        return [schemas.Metric(name=r.feature, dimension=r.dimension, value=number(r.value),
                               score=number(r.score), weight=float(r.weight),
                               share=float(r.share)) for r in table.itertuples()]

    if account.source != "warehouse":
        return make()
    return state.derive(("metrics", state.snapshot.generation,  # type: ignore[no-any-return]
                         account.score["config_version"], account.account_id, account.as_of),
                        make)


def prediction(state: ServiceState, account: ScoredAccount) -> schemas.Prediction:
    """Probabilities at 30/60/90 days and the score projected along its recent trend (neither
    for an account that is not active)."""
    row = account.score
    score, prev = number(row["score"]), number(row.get("previous_score"))
    trajectory: dict[str, float | None] = {}
    for h in (30, 60, 90):
        if score is None or not account.active:  # a churned account's score goes nowhere
            trajectory[f"{h}d"] = None
        else:
            # The recent trend, halved every 30 days: a trend does not run on forever.
            slope = 0.0 if prev is None else (score - prev) / state.rules.trend_days
            moved = sum(slope * 30 * 0.5 ** k for k in range(h // 30))
            trajectory[f"{h}d"] = round(min(100.0, max(0.0, score + moved)), 2)
    probs = account.probabilities
    return schemas.Prediction(
        id=account.account_id, asOf=account.as_of, accountStatus=account.status,
        probabilities=probs, churnRisk=_percent(probs, "churn"),
        expansionOpportunity=_percent(probs, "expansion"), trajectory=trajectory,
        available=bool(probs), note=account.probabilities_note)


def _peers(state: ServiceState, account: ScoredAccount, warehouse: bool) -> PeerTable | None:
    """The peer table of the account's date: today's portfolio (kept per snapshot and rules
    version; a payload account is compared with it too), or that date's (cached)."""
    portfolio = state.portfolio
    if portfolio is not None and (not warehouse or portfolio.as_of == account.as_of):
        return state.derive(  # type: ignore[no-any-return]
            ("peers", state.snapshot.generation, state.rules.config_version),
            lambda: peers_of(portfolio))
    if not warehouse:
        return None
    return load_peer_table(state.snapshot.connection(), account.as_of, state.scorer)


def _percent(probs: dict[str, float], target: str) -> float | None:
    label = longest_label(probs, target)
    return None if label is None else round(100 * probs[label], 2)


def _same(a: Any, b: Any) -> bool:
    fa, fb = number(a), number(b)
    if fa is None or fb is None:
        return fa is None and fb is None
    return abs(fa - fb) < 1e-9
