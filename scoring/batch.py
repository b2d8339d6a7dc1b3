"""Scoring accounts from the warehouse: the thin I/O edge around `score_frame`.

Owns turning (warehouse, as-of date) into scored rows: active accounts at the date
(`features.entities.build_entities`), their features (`features.build.build_features`, the one
feature function), the previous scores for the trend (from the store when it holds scores of the
same config_version N days earlier, else recomputed with the same pure function on features as of
T-N) and the churn date of accounts scored after they left. Scoring logic lives in the pure
modules; writing scores lives in `serving.store`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from scoring.health.profiles import Rules
from scoring.health.scoring import score_frame

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


def _quiet(_step: str, _done: float) -> None:
    pass


def build_account_features(
    con: duckdb.DuckDBPyConnection,
    entities: pd.DataFrame,
    feature_cfg: Any,
    *,
    chunk: int = 20_000,
    progress: Progress | None = None,
    step: str = "features",
) -> pd.DataFrame:
    """build_features over the entities in chunks (so long runs can show progress)."""
    from features.build import build_features

    report = progress or _quiet
    if len(entities) <= chunk:
        out = build_features(con, entities, feature_cfg)
        report(step, 1.0)
        return out
    parts = []
    for start in range(0, len(entities), chunk):
        parts.append(build_features(con, entities.iloc[start:start + chunk], feature_cfg))
        report(step, min(1.0, (start + chunk) / len(entities)))
    return pd.concat(parts, ignore_index=True)


def churn_dates(con: duckdb.DuckDBPyConnection, account_ids: Sequence[str]) -> pd.Series:
    """First churn date per account (NaT when it never churned or churn is not connected)."""
    from features.contract.warehouse import connected_tables

    ids = pd.Series(list(account_ids), dtype=str)
    if "churn_events" not in connected_tables(con) or ids.empty:
        return pd.Series(pd.NaT, index=ids, dtype="datetime64[us]")
    # A bound list, not a replacement scan of a local frame: Ibis turns those off on the
    # shared connection (python_enable_replacements = false) once build_features has run.
    got = con.execute(
        "select account_id, min(churned_at) as churned_at from churn_events "
        "where account_id in (select unnest(?::varchar[])) group by account_id",
        [list(ids.unique())],
    ).fetchall()
    found = {str(a): pd.Timestamp(t) for a, t in got if t is not None}
    return pd.Series([found.get(a, pd.NaT) for a in ids], index=ids,
                     dtype="datetime64[us]")


def recompute_previous(
    con: duckdb.DuckDBPyConnection,
    as_of: pd.Timestamp,
    account_ids: Sequence[str],
    rules: Rules,
    feature_cfg: Any,
    connected: frozenset[str],
    *,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Scores as of T-N for the given accounts that were active then, by the same function."""
    from features.entities import build_entities

    when = pd.Timestamp(as_of) - pd.Timedelta(days=rules.trend_days)
    if not len(account_ids):
        return pd.DataFrame({"account_id": [], "as_of": [], "score": []})
    entities = build_entities(con, [when], account_ids=list(account_ids))
    if entities.empty:
        (progress or _quiet)("previous", 1.0)
        return pd.DataFrame({"account_id": [], "as_of": [], "score": []})
    feats = build_account_features(con, entities, feature_cfg, progress=progress,
                                   step="previous")
    scored = score_frame(feats, connected, rules)
    return scored[["account_id", "as_of", "score"]]


def previous_scores(
    con: duckdb.DuckDBPyConnection,
    as_of: pd.Timestamp,
    account_ids: Sequence[str],
    rules: Rules,
    feature_cfg: Any,
    connected: frozenset[str],
    *,
    store: Any | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Previous scores (account_id, as_of, score) N days before `as_of`: read from the store
    where it holds scores of this config_version, recomputed for the other accounts."""
    when = (pd.Timestamp(as_of) - pd.Timedelta(days=rules.trend_days)).date()
    stored = pd.DataFrame({"account_id": [], "as_of": [], "score": []})
    if store is not None:
        got = store.load_scores(when, account_ids)
        got = got[got["config_version"] == rules.config_version]
        stored = got[["account_id", "as_of", "score"]]
    todo = sorted(set(map(str, account_ids)) - set(stored["account_id"].astype(str)))
    logger.info("previous scores as of %s: %d from the store, %d recomputed", when,
                len(stored), len(todo))
    fresh = recompute_previous(con, pd.Timestamp(as_of), todo, rules, feature_cfg, connected,
                               progress=progress)
    parts = [p for p in (stored, fresh) if len(p)]
    if not parts:
        return pd.DataFrame({"account_id": [], "as_of": [], "score": []})
    out = pd.concat(parts, ignore_index=True)
    out["as_of"] = pd.to_datetime(out["as_of"])
    return out


def score_accounts(
    con: duckdb.DuckDBPyConnection,
    as_of: date | str | pd.Timestamp,
    rules: Rules,
    feature_cfg: Any,
    *,
    account_ids: Sequence[str] | None = None,
    store: Any | None = None,
    include_inactive: bool = False,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, features) of the accounts active at `as_of` (or the given ones).

    With `include_inactive`, the given accounts are scored even when they are not active at
    `as_of` (churned ones get status `churned`): what a summary of one account needs.
    """
    from features.contract.warehouse import connected_tables
    from features.entities import build_entities

    report = progress or _quiet
    when = pd.Timestamp(as_of).normalize()
    connected = connected_tables(con)
    report("accounts", 0.0)
    entities = build_entities(con, [when], account_ids=list(account_ids) if account_ids else None)
    if include_inactive and account_ids:
        entities = pd.DataFrame({"account_id": [str(a) for a in account_ids],
                                 "as_of": pd.to_datetime([when] * len(account_ids))})
    report("accounts", 1.0)
    if entities.empty:
        empty = score_frame(_empty_features(con, feature_cfg), connected, rules)
        return empty, _empty_features(con, feature_cfg)
    feats = build_account_features(con, entities, feature_cfg, progress=progress)
    ids = feats["account_id"].astype(str).to_numpy()
    if include_inactive:
        feats["churned_at"] = churn_dates(con, ids).to_numpy()
    previous = previous_scores(con, when, list(np.unique(ids)), rules, feature_cfg, connected,
                               store=store, progress=progress)
    report("scoring", 0.0)
    scored = score_frame(feats, connected, rules, previous)
    report("scoring", 1.0)
    return scored, feats


def _empty_features(con: duckdb.DuckDBPyConnection, feature_cfg: Any) -> pd.DataFrame:
    from features.build import build_features

    return build_features(con, pd.DataFrame({"account_id": pd.Series([], dtype=str),
                                             "as_of": pd.Series([], dtype="datetime64[us]")}),
                          feature_cfg)
