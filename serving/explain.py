"""`analyze`: one account's health explained, rules and models together, as a `HealthAnalysis`.

Owns assembling the explanation of one account: the rules score with each dimension's share of
the composite, the six models' probabilities (calibrated, monotone across horizons) with their
exact TreeSHAP factors (serving/factors.py), risk flags with action hints, missing data and what
it would add, what-if suggestions (serving/whatif.py), peer benchmarks (serving/peers.py) and the
agreement check between the rules band and the model. The account comes scored from the one
pipeline (`scoring.pipeline.score_accounts`, via `explain_account`); only an active account's
models are explained. Scoring logic lives in `scoring.health`, wording in wording.yaml; this
module only combines them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from features.registry import FEATURES_BY_NAME
from features.settings import FeatureConfig
from scoring.health.profiles import Profile, Rules
from scoring.health.scoring import score_frame
from scoring.health.summary import SOURCE_ORDER
from scoring.health.wording import Wording
from scoring.model_set import ModelSet, model_set
from scoring.pipeline import (
    NOT_STARTED,
    ScoredAccount,
    ScoreHistory,
    Scorer,
    UnknownAccount,
    score_accounts,
)
from serving.convert import number
from serving.explain_words import ExplainWords, load_explain_words, parse_explain_words
from serving.factors import explain_model
from serving.peers import ALL, PeerGroup, PeerTable, load_peer_table
from serving.schemas.explanation import (
    Agreement,
    DimensionScore,
    HealthAnalysis,
    MissingData,
    ModelExplanation,
    PeerInfo,
    RiskFlag,
    WhatIf,
)
from serving.settings import ServingConfig
from serving.whatif import (
    MAX_CANDIDATES,
    Candidate,
    best_candidates,
    changed_frame,
    describe,
    levers_for,
)
from serving.whatif import what_if as _what_if

log = logging.getLogger(__name__)

DECILE = 10.0
"""Agreement check: top (and bottom) decile of the scored population's churn probability."""

Bundles = Mapping[str, Any] | ModelSet | None
"""load_bundles' {label: Bundle}, a {target: {horizon: Bundle}} grouping, or a ModelSet."""


class AnalysisError(ValueError):
    """The input cannot be explained (not one row, unknown account)."""


def _words(wording: Wording | None) -> ExplainWords:
    return load_explain_words() if wording is None else parse_explain_words(wording)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


# --- rules side: dimensions, missing data, flags ---------------------------------------------
def dimension_scores(scored: Mapping[str, Any], profile: Profile, words: ExplainWords,
                     peers: PeerGroup | None = None) -> list[DimensionScore]:
    """Each scored dimension's 0-100 score, its share of the configured weight and the points
    of the composite it supplies (weights renormalised over the dimensions with data, so the
    points sum to the score)."""
    dims = profile.dimensions
    weights = {d: profile.weight(d) for d in dims}
    total = sum(w for w in weights.values() if w > 0)
    scores = {d: number(scored.get(f"dim_{d}")) for d in dims}
    den = sum(weights[d] for d in dims if scores[d] is not None and weights[d] > 0)
    out = []
    for d in dims:
        s = scores[d]
        label = words.wording.dimension(d)
        pct = peers.percentile(f"dim_{d}", s) if peers is not None and s is not None else None
        median = peers.median(f"dim_{d}") if peers is not None else None
        if s is None:
            text = words.fill("peers.unscored", dimension=label)
        elif pct is not None and median is not None:
            text = words.fill("peers.dimension", dimension=label, score=s, percentile=pct,
                              group=_group_name(peers, words), median=median)
        else:
            text = None
        out.append(DimensionScore(
            dimension=d, label=label, score=s,
            weight=weights[d] / total if total > 0 else 0.0,
            contribution=float(np.clip(weights[d] * s / den, 0, 100))
            if s is not None and den > 0 else 0.0,
            missing=s is None, peer_percentile=pct, peer_median=median, text=text))
    return out


def missing_data(values: Mapping[str, Any], connected: frozenset[str], profile: Profile,
                 words: ExplainWords) -> list[MissingData]:
    """Per source the rules score reads: not connected, or connected with no data for this
    account, and the share of the score's configured weight its features carry."""
    total = sum(profile.weight(d) for d in profile.dimensions if profile.weight(d) > 0)
    if total <= 0:
        return []
    share: dict[str, float] = {}
    dims: dict[str, list[str]] = {}
    empty: dict[str, bool] = {}
    for d in profile.dimensions:
        norms = profile.normalisations[d]  # type: ignore[index]
        feat_total = sum(n.weight for n in norms.values())
        for name, norm in norms.items():
            source = FEATURES_BY_NAME[name].source
            part = profile.weight(d) / total * (norm.weight / feat_total if feat_total else 0)
            share[source] = share.get(source, 0.0) + part
            if d not in dims.setdefault(source, []):
                dims[source].append(d)
            empty[source] = empty.get(source, True) and number(values.get(name)) is None
    out = []
    for source in SOURCE_ORDER:
        if source not in share or share[source] <= 0 or source == "accounts":
            continue
        is_connected = source in connected
        if is_connected and not empty[source]:
            continue
        entry = words.source(source)
        key = "missing.no_data" if is_connected else "missing.not_connected"
        out.append(MissingData(
            source=source, dimensions=dims[source], connected=is_connected,
            weight_share=min(1.0, share[source]),
            text=words.fill(key, what=entry["what"], system=entry["system"],
                            share=share[source])))
    return out


def risk_flags(scored: Mapping[str, Any]) -> list[RiskFlag]:
    """The rules' flags with their action hints (a store row carries them as JSON text)."""
    flags = scored.get("flags")
    if isinstance(flags, str):
        flags = json.loads(flags)
    if flags is None or isinstance(flags, float):
        flags = []
    return [RiskFlag(code=f["code"], severity=f["severity"], title=f["title"], text=f["text"],
                     hint=f["hint"], evidence=dict(f.get("evidence") or {})) for f in flags]


# --- models side ------------------------------------------------------------------------------
def _group_name(peers: PeerGroup | None, words: ExplainWords) -> str:
    if peers is None or peers.name == ALL:
        return str(words.get("peers.all_accounts"))
    return peers.name


def agreement(scored: Mapping[str, Any], probabilities: Mapping[str, float],
              models: ModelSet | None, peers: PeerTable | None, words: ExplainWords
              ) -> Agreement:
    """Flag strong disagreement: a healthy rules status with a top-decile churn probability in
    the scored population, or a critical one with a bottom-decile probability."""
    band = _text(scored.get("band"))
    status = _text(scored.get("status"))
    churn = models.by_target("churn") if models is not None else ()
    population = peers.population if peers is not None else None
    if not churn or population is None or band is None:
        return Agreement(status="unknown", band=band, text=str(words.get("agreement.unknown")))
    label = churn[-1].label
    values = population.values.get(label)
    if values is None or len(values) < DECILE:
        return Agreement(status="unknown", band=band, text=str(words.get("agreement.unknown")))
    p = float(probabilities[label])
    pct = population.percentile(label, p)
    top = float(np.quantile(values, 1 - DECILE / 100))
    bottom = float(np.quantile(values, DECILE / 100))
    common = {"band": band, "horizon": churn[-1].horizon, "probability": p}
    if status == "healthy" and p >= top:
        kind, threshold = "healthy_but_risky", top
    elif status == "critical" and p <= bottom:
        kind, threshold = "at_risk_but_safe", bottom
    else:
        return Agreement(status="agree", band=band, label=label, probability=p,
                         population_percentile=pct,
                         text=words.fill("agreement.agree", band=band))
    return Agreement(status=kind, band=band, label=label, probability=p,  # type: ignore[arg-type]
                     population_percentile=pct, threshold=threshold,
                     text=words.fill(f"agreement.{kind}", threshold=threshold, **common))


def _model_versions(models: ModelSet | None) -> dict[str, Any]:
    if models is None:
        return {}
    out = {}
    for e in models.entries:
        reg = e.bundle.metadata.get("registry") or {}
        out[e.label] = {"trees": e.bundle.n_trees,
                        **{k: reg[k] for k in ("version", "alias", "run_id") if k in reg}}
    return out


# --- the analysis -----------------------------------------------------------------------------
def analyze_features(
    features: pd.DataFrame,
    connected: frozenset[str],
    rules: Rules,
    bundles: Bundles,
    *,
    peers: PeerTable | None = None,
    cfg: ServingConfig | None = None,
    scored: Mapping[str, Any] | pd.DataFrame | None = None,
    previous: pd.DataFrame | None = None,
    name: str | None = None,
    wording: Wording | None = None,
    max_candidates: int = MAX_CANDIDATES,
) -> HealthAnalysis:
    """Explain one account from its already-built one-row features frame (build_features
    output). `scored` is its score_frame row when the caller has it (with a trend); `peers` the
    peer table (None: no benchmarks and no agreement check)."""
    if len(features) != 1:
        raise AnalysisError(f"analyze takes one account's features row, got {len(features)} rows")
    cfg = cfg or ServingConfig()
    words = _words(wording)
    connected = frozenset(connected) | {"accounts"}
    row = features.reset_index(drop=True)
    values = {k: v for k, v in row.iloc[0].items()}
    segment = _text(values.get("segment"))
    group = peers.group(segment) if peers is not None else None
    group_name = _group_name(group, words)

    models = model_set(bundles)
    probabilities: dict[str, float] = {}
    explanations: list[ModelExplanation] = []
    chosen: list[Candidate] = []
    if models is not None:
        matrices = models.row_matrices(values)
        probs = models.probabilities(matrices)
        contribs = models.contributions(matrices)
        probabilities = {label: float(p[0]) for label, p in probs.items()}
        texts: dict[str, str] = {}
        for e in models.entries:
            explanations.append(explain_model(
                e, models.encodings[e.encoding].features, contribs[e.label][0], values,
                probabilities[e.label], words, connected=connected, peers=group,
                group=group_name, top_k=cfg.top_k_factors, texts=texts))
        levers = levers_for(values, connected, group, group_name)
        chosen = best_candidates(models, matrices, levers, max_candidates=max_candidates)
    # One rules call scores the account and every suggestion (the first row is the account).
    scored_all = score_frame(changed_frame(row, [{}] + [c.changes for c in chosen]), connected,
                             rules, previous, wording=wording)
    if scored is None:
        scored = scored_all.iloc[0]
    elif isinstance(scored, pd.DataFrame):
        scored = scored.iloc[0]
    scored_row: Mapping[str, Any] = scored  # type: ignore[assignment]
    profile = rules.profile(str(scored_row["profile"]))
    score = number(scored_row.get("score"))
    churned = scored_row.get("status") == "churned"
    # A churned account has nothing left to act on: no suggestions, no agreement to check.
    suggestions = [] if churned else [
        describe(c, words, score, number(scored_all["score"].iloc[i + 1]))
        for i, c in enumerate(chosen)]
    agreed = Agreement(status="unknown", band=_text(scored_row.get("band")),
                       text=str(words.wording["interpretation"]["churned"])) if churned else \
        agreement(scored_row, probabilities, models, peers, words)

    as_of = pd.Timestamp(values["as_of"]).date()
    return HealthAnalysis(
        account_id=str(values["account_id"]),
        name=name,
        as_of=as_of,
        segment=segment,
        score=score,
        grade=_text(scored_row.get("grade")),
        band=_text(scored_row.get("band")),
        status=_text(scored_row.get("status")),
        trend=_text(scored_row.get("trend")),
        coverage=float(np.clip(number(scored_row.get("coverage")) or 0.0, 0, 1)),
        profile=profile.name,
        config_version=str(scored_row.get("config_version") or rules.config_version),
        dimensions=dimension_scores(scored_row, profile, words, group),
        probabilities=probabilities,
        models=explanations,
        flags=risk_flags(scored_row),
        missing=missing_data(values, connected, profile, words),
        what_if=suggestions,
        agreement=agreed,
        peers=PeerInfo(group=group_name, size=group.size,
                       as_of=peers.as_of.date() if peers.as_of is not None else None)
        if group is not None and peers is not None else None,
        model_versions=_model_versions(models),
    )


def explain_account(
    account: ScoredAccount,
    rules: Rules,
    bundles: Bundles,
    *,
    peers: PeerTable | None = None,
    cfg: ServingConfig | None = None,
    wording: Wording | None = None,
    max_candidates: int = MAX_CANDIDATES,
) -> HealthAnalysis:
    """Explain one account the scoring pipeline scored (`scoring.pipeline.score_accounts`): its
    score row with the trend, and, only when it is active, the models' probabilities with their
    factors and what-if suggestions. A churned account gets its status and no probability."""
    if account.status == NOT_STARTED:
        created = pd.Timestamp(account.score["created_at"])
        raise AnalysisError(f"account {account.account_id!r} was created on {created:%Y-%m-%d}, "
                            f"after the as-of date {account.as_of}: nothing to explain")
    analysis = analyze_features(account.features, account.connected, rules,
                                bundles if account.active else None, peers=peers, cfg=cfg,
                                scored=account.score, name=account.name, wording=wording,
                                max_candidates=max_candidates)
    return analysis.model_copy(update={"account_status": account.status,
                                       "probabilities_note": account.probabilities_note})


def analyze(
    account_id: str,
    as_of: date | str | pd.Timestamp | None,
    con: duckdb.DuckDBPyConnection,
    rules: Rules,
    bundles: Bundles,
    *,
    peers: PeerTable | None = None,
    load_peers: bool = True,
    cfg: ServingConfig | None = None,
    feature_cfg: FeatureConfig | None = None,
    history: ScoreHistory | None = None,
    wording: Wording | None = None,
    max_candidates: int = MAX_CANDIDATES,
) -> HealthAnalysis:
    """Explain one account of the warehouse as of a date (None: the warehouse's today).

    Pass the service's loaded rules, bundles (load_bundles' dict, or a ModelSet) and, ideally,
    its peer table; without one the peer table of `as_of` is built once and cached
    (`load_peers=False` skips peers: no benchmarks, agreement unknown). `history` is the score
    store the trend's previous score is read from.
    """
    scorer = Scorer(rules=rules, features=feature_cfg or FeatureConfig(),
                    models=model_set(bundles))
    try:
        frame = score_accounts(con, [account_id], as_of, scorer, history=history)
    except UnknownAccount as exc:
        raise AnalysisError(str(exc)) from None
    account = frame.account(account_id)
    if peers is None and load_peers and account.status != NOT_STARTED:
        peers = load_peer_table(con, frame.as_of, scorer)
    return explain_account(account, rules, scorer.models, peers=peers, cfg=cfg, wording=wording,
                           max_candidates=max_candidates)


def what_if(
    features: pd.DataFrame,
    changes: Mapping[str, Any],
    connected: frozenset[str],
    rules: Rules,
    bundles: Bundles,
    *,
    wording: Wording | None = None,
) -> WhatIf:
    """Probabilities and the rules score of one account with changed actionable features
    (WhatIfError names a change that is not allowed)."""
    models = model_set(bundles)
    if models is None:
        from serving.whatif import WhatIfError

        raise WhatIfError("what-if needs trained models: run `healthscore train`")
    return _what_if(models, features.reset_index(drop=True), changes, _words(wording),
                    connected=frozenset(connected) | {"accounts"}, rules=rules)

