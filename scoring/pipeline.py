"""`score_accounts`: the one way a score is made, called by every path.

The daily `healthscore score` job, `/calculate`, `/predict`, `/analyze`, the explanation, the
summary, `validate-score` and the service's precomputed portfolio all call this function, so a fix
to how a score is made is made once. One call, for a source (the warehouse, or a payload loaded into
an in-memory DuckDB of the same shape), some accounts and one as-of date:

1. the as-of date: the one given, else `features.contract.warehouse.today` of the source;
2. each account's status as of that date (`features.entities.status_at`, the rule training's
   entities and labels follow too): `active` (created on or before the as-of day and not
   churned on or before it), `churned` (a churn event on or before the as-of day: an account
   that churns that day is not scored as active) or `not-started` (created after it); an
   unknown account is an `UnknownAccount` error;
3. point-in-time features at the date and, for the trend, at the date minus `rules.trend_days`,
   in one `build_features` call (one feature function for every path);
4. the previous score for the trend, for accounts that were customers N days earlier: from the
   score store when it holds this rules version's score of that day, else recomputed from the
   older features by the same `score_frame`;
5. the rules score (dimensions, grade, band, colour, status, trend, flags) by `score_frame`;
6. the six calibrated probabilities for active accounts only: a churned or not-yet-started
   account gets none, and `probabilities_note` says why.

Nothing here writes: persisting scores and firing events is the caller's edge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import duckdb
import numpy as np
import pandas as pd

from features.build import build_features
from features.entities import ACTIVE, CHURNED, NOT_STARTED, status_at
from features.registry import event_type_slugs
from features.settings import FeatureConfig
from features.sources import source_catalog, source_today
from scoring.health.profiles import Rules
from scoring.health.scoring import SCORE_COLUMNS, score_frame
from scoring.model_set import ModelSet

LABEL = re.compile(r"^(churn|expansion)_(\d+)d$")

Progress = Callable[[str, float], None]


class UnknownAccount(LookupError):
    """An account id the source does not hold."""


class ScoreHistory(Protocol):
    """Where earlier scores are kept (the score store): read for the trend, never written."""

    def load_scores(self, as_of: date | str | None = None,
                    account_ids: Iterable[str] | None = None) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Scorer:
    """What a score is made with, loaded once by the caller: the active rules version, the
    feature settings and the champion models (None, with `models_note` saying why, when there
    are none)."""

    rules: Rules
    features: FeatureConfig = field(default_factory=FeatureConfig)
    models: ModelSet | None = None
    models_note: str | None = None


@dataclass(frozen=True)
class ScoredAccount:
    """One account of a ScoredFrame, as the endpoints and commands read it."""

    account_id: str
    name: str | None
    as_of: date
    status: str
    score: dict[str, Any]
    features: pd.DataFrame
    probabilities: dict[str, float]
    probabilities_note: str | None
    connected: frozenset[str]
    source: str = "warehouse"
    """Where the rows came from: the warehouse, or a request's own activity (`payload`)."""

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class ScoredFrame:
    """Scored accounts as of one date; row i of every frame is the same account.

    `scores` has the columns of `score_frame` plus `account_status`, `name`, `created_at`,
    `churned_at` and `probabilities_note`; `features` the inputs the factors are read from (NaN
    for an account not yet started); `probabilities` one column per model label (NaN where not
    active)."""

    as_of: date
    connected: frozenset[str]
    scores: pd.DataFrame
    features: pd.DataFrame
    probabilities: pd.DataFrame

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def account_ids(self) -> list[str]:
        return self.scores["account_id"].astype(str).tolist()

    def position(self, account_id: str) -> int:
        hits = np.flatnonzero(self.scores["account_id"].to_numpy() == str(account_id))
        if not len(hits):
            raise UnknownAccount(f"account {account_id!r} was not scored")
        return int(hits[0])

    def account(self, account_id: str) -> ScoredAccount:
        return self.at(self.position(account_id))

    def at(self, i: int) -> ScoredAccount:
        row = self.scores.iloc[i].to_dict()
        probs = {k: float(v) for k, v in self.probabilities.iloc[i].items() if not pd.isna(v)} \
            if len(self.probabilities.columns) else {}
        return ScoredAccount(
            account_id=str(row["account_id"]), name=row.get("name"), as_of=self.as_of,
            status=str(row["account_status"]), score=row,
            features=self.features.iloc[[i]].reset_index(drop=True), probabilities=probs,
            probabilities_note=row.get("probabilities_note"), connected=self.connected)

    def where(self, mask: np.ndarray | pd.Series) -> ScoredFrame:
        keep = np.asarray(mask, dtype=bool)
        return ScoredFrame(self.as_of, self.connected,
                           self.scores[keep].reset_index(drop=True),
                           self.features[keep].reset_index(drop=True),
                           self.probabilities[keep].reset_index(drop=True))

    def active(self) -> ScoredFrame:
        return self.where(self.scores["account_status"].to_numpy() == ACTIVE)

    def longest(self, target: str) -> dict[str, float]:
        """Each account's probability of `target` at its longest horizon (risk alerts read
        churn), for the accounts that have one."""
        label = longest_label(self.probabilities.columns, target)
        if label is None:
            return {}
        values = self.probabilities[label].to_numpy()
        return {a: float(v) for a, v in zip(self.account_ids, values, strict=True) if v == v}


def longest_label(labels: Iterable[str], target: str) -> str | None:
    """The model label of `target` with the longest horizon (`churn_90d`), None without one."""
    found = [(int(m.group(2)), label) for label in labels
             if (m := LABEL.match(label)) and m.group(1) == target]
    return max(found)[1] if found else None


def feature_config(scorer: Scorer) -> FeatureConfig:
    """The feature settings a score is built with: the models' event types when there are
    models (a model scores with exactly the event-type features it was trained on, whatever
    the source's most frequent types are, e.g. a request's own activity), else the
    settings' own choice."""
    if scorer.models is None or scorer.features.event_types is not None:
        return scorer.features
    slugs = tuple(dict.fromkeys(s for enc in scorer.models.encodings
                                for s in event_type_slugs(enc.features)))
    return scorer.features.model_copy(update={"event_types": slugs})


def score_accounts(
    source: duckdb.DuckDBPyConnection,
    account_ids: Sequence[str] | None,
    as_of: date | str | pd.Timestamp | None,
    scorer: Scorer,
    *,
    history: ScoreHistory | None = None,
    trend: bool = True,
    progress: Progress | None = None,
) -> ScoredFrame:
    """Score the given accounts (each with its status), or with `account_ids=None` every account
    active at `as_of` (the portfolio), as of `as_of` (None: the source's `today`).

    `history` is the score store the previous scores are read from; `trend=False` skips the
    previous scores (a backtest of the score itself has no use for its trend). `source` is a
    DuckDB warehouse or a `features.spark_engine.SparkWarehouse` (features built on Spark,
    collected; the Spark batch job maps `score_built` over partitions instead)."""
    report = progress or (lambda _step, _done: None)
    plan = plan_scores(source, account_ids, as_of, scorer, history=history, trend=trend,
                       progress=report)
    feats = build_features(source, plan.entities, feature_config(scorer),
                           progress=lambda _s, done: report("features", done))
    return score_built(plan.accounts, plan.status, feats.iloc[:plan.n_current],
                       feats.iloc[plan.n_current:], plan.stored, plan.when, scorer,
                       plan.connected, progress=report)


@dataclass(frozen=True)
class ScorePlan:
    """What a score of some accounts at one date needs besides features: who they are, their
    status, the entity rows to build (the scored accounts at `when`, then the ones needing a
    recomputed previous score at `when - trend_days`) and the stored previous scores."""

    when: pd.Timestamp
    prev_when: pd.Timestamp
    connected: frozenset[str]
    accounts: pd.DataFrame
    """account_id, name, created_at, churned_at: every account asked, in order."""
    status: np.ndarray
    entities: pd.DataFrame
    n_current: int
    """The first n_current entity rows are the scored accounts at `when`."""
    stored: pd.DataFrame


def plan_scores(
    source: Any,
    account_ids: Sequence[str] | None,
    as_of: date | str | pd.Timestamp | None,
    scorer: Scorer,
    *,
    history: ScoreHistory | None = None,
    trend: bool = True,
    progress: Progress | None = None,
) -> ScorePlan:
    """Steps 1, 2 and 4 of the module docstring: the date, statuses, entities, stored scores."""
    report = progress or (lambda _step, _done: None)
    when = pd.Timestamp(as_of if as_of is not None else source_today(source)).normalize()
    rules = scorer.rules
    connected, catalog = source_catalog(source)
    report("accounts", 0.0)
    accounts = _accounts(catalog, account_ids, connected)
    status = _status(accounts, when)
    if account_ids is None:
        accounts, status = accounts[status == ACTIVE], status[status == ACTIVE]
        accounts = accounts.reset_index(drop=True)
    report("accounts", 1.0)

    scored_rows = accounts[status != NOT_STARTED]
    ids = scored_rows["account_id"].tolist()
    prev_when = when - pd.Timedelta(days=rules.trend_days)
    stored = _stored_previous(history, prev_when, ids, rules)
    # Every account that was a customer N days earlier has a previous score (a churned one's
    # too: its score is still shown, with its trend).
    existed = _status(scored_rows, prev_when) != NOT_STARTED
    known = set(stored["account_id"])
    todo = [a for a, ok in zip(ids, existed, strict=True) if ok and a not in known] \
        if trend else []
    entities = pd.DataFrame({"account_id": ids + todo,
                             "as_of": [when] * len(ids) + [prev_when] * len(todo)})
    entities["as_of"] = entities["as_of"].astype("datetime64[us]")
    return ScorePlan(when, prev_when, connected, accounts, status, entities, len(ids), stored)


def score_built(
    accounts: pd.DataFrame,
    status: np.ndarray,
    current: pd.DataFrame,
    older: pd.DataFrame,
    stored: pd.DataFrame,
    when: pd.Timestamp,
    scorer: Scorer,
    connected: frozenset[str],
    *,
    progress: Progress | None = None,
) -> ScoredFrame:
    """Steps 4 to 6 on features already built: the scores of `accounts` at `when`.

    `current` holds the features of the accounts not `not-started`, in `accounts`' order;
    `older` those at `when - trend_days` of the accounts whose previous score is recomputed;
    `stored` the previous scores read from the store. Pure: what `score_accounts` runs after
    building features, a stage of its own so its cost is measured apart (bench_scale.py), and
    what the Spark batch job runs on each partition."""
    report = progress or (lambda _step, _done: None)
    rules = scorer.rules
    scored_rows = accounts[status != NOT_STARTED]
    cur = current.reset_index(drop=True)
    cur["churned_at"] = scored_rows["churned_at"].to_numpy().astype("datetime64[us]")
    old = older.reset_index(drop=True)
    # Only their scores are read: their flags would be worded for nothing.
    recomputed = score_frame(old, connected, rules, flags=False)[["account_id", "as_of",
                                                                   "score"]]
    previous = pd.concat([p for p in (stored, recomputed) if len(p)] or [recomputed],
                         ignore_index=True)
    report("scoring", 0.0)
    scores = score_frame(cur, connected, rules, previous)
    report("scoring", 1.0)

    frame = _assemble(accounts, status, scores, cur, when, rules)
    probabilities = _probabilities(frame, scorer, report)
    return ScoredFrame(when.date(), connected, frame["scores"], frame["features"], probabilities)


def _accounts(source: duckdb.DuckDBPyConnection, account_ids: Sequence[str] | None,
              connected: frozenset[str]) -> pd.DataFrame:
    """(account_id, name, created_at, churned_at) in the order asked, in one statement."""
    if "accounts" not in connected:
        raise ValueError("the warehouse has no accounts table: run `healthscore ingest` first")
    churn = ("left join (select account_id, min(churned_at) as churned_at from churn_events "
             "group by account_id) c using (account_id)" if "churn_events" in connected else "")
    churned_at = "c.churned_at" if churn else "cast(null as timestamp)"
    sql = (f"select a.account_id, a.name, a.created_at, {churned_at} as churned_at "
           f"from accounts a {churn}")
    with source.cursor() as cur:
        if account_ids is None:
            got = cur.execute(sql + " order by a.account_id").fetchdf()
        else:
            wanted = [str(a) for a in account_ids]
            got = cur.execute(sql + " where a.account_id in (select unnest(?::varchar[]))",
                              [wanted]).fetchdf()
            got["account_id"] = got["account_id"].astype(str)
            missing = [a for a in wanted if a not in set(got["account_id"])]
            if missing:
                raise UnknownAccount(f"no account {missing[0]!r} in the warehouse")
            got = got.set_index("account_id").loc[wanted].reset_index()
    got["account_id"] = got["account_id"].astype(str)
    for col in ("created_at", "churned_at"):
        got[col] = pd.to_datetime(got[col]).astype("datetime64[us]")
    return got.reset_index(drop=True)


def _status(accounts: pd.DataFrame, when: pd.Timestamp) -> np.ndarray:
    """Each account's status at `when`: the one rule of `features.entities.status_at`."""
    return status_at(accounts["created_at"].to_numpy(), accounts["churned_at"].to_numpy(),
                     np.datetime64(when.to_datetime64(), "us"))


def _stored_previous(history: ScoreHistory | None, when: pd.Timestamp, ids: list[str],
                     rules: Rules) -> pd.DataFrame:
    empty = pd.DataFrame({"account_id": pd.Series([], dtype=str),
                          "as_of": pd.Series([], dtype="datetime64[us]"),
                          "score": pd.Series([], dtype=float)})
    if history is None or not ids:
        return empty
    got = history.load_scores(when.date(), ids)
    got = got[got["config_version"] == rules.config_version]
    return got[["account_id", "as_of", "score"]].reset_index(drop=True) if len(got) else empty


def _assemble(accounts: pd.DataFrame, status: np.ndarray, scores: pd.DataFrame,
              feats: pd.DataFrame, when: pd.Timestamp, rules: Rules
              ) -> dict[str, pd.DataFrame]:
    """Scores and features of every account asked, not-started ones as empty rows."""
    ids = accounts["account_id"].tolist()
    scores = scores.set_index("account_id", drop=False).reindex(ids)
    scores["account_id"] = ids
    scores["as_of"] = np.datetime64(when.to_datetime64(), "us")
    scores["config_version"] = rules.config_version
    for col in ("missing", "flags"):
        scores[col] = [v if isinstance(v, list) else [] for v in scores[col]]
    scores["account_status"] = status
    scores["name"] = accounts["name"].to_numpy()
    scores["created_at"] = accounts["created_at"].to_numpy()
    scores["churned_at"] = accounts["churned_at"].to_numpy()
    features = feats.set_index(feats["account_id"].astype(str)).reindex(ids)
    features["account_id"] = ids
    features["as_of"] = np.datetime64(when.to_datetime64(), "us")
    columns = [*SCORE_COLUMNS, "account_status", "name", "created_at", "churned_at"]
    return {"scores": scores[columns].reset_index(drop=True),
            "features": features.reset_index(drop=True)}


def _probabilities(frame: dict[str, pd.DataFrame], scorer: Scorer, report: Progress
                   ) -> pd.DataFrame:
    """Calibrated probabilities of the active accounts; the reason of every empty row."""
    scores, feats = frame["scores"], frame["features"]
    models = scorer.models
    labels = list(models.labels) if models is not None else []
    out = pd.DataFrame(np.nan, index=range(len(scores)), columns=labels)
    active = scores["account_status"].to_numpy() == ACTIVE
    notes = np.full(len(scores), None, dtype=object)
    for i in np.flatnonzero(~active):
        notes[i] = _inactive_note(scores.iloc[i])
    if models is None:
        notes[active] = scorer.models_note or "probabilities unavailable: no trained models"
    elif active.any():
        report("probabilities", 0.0)
        probs = models.probabilities(models.matrices(feats[active].reset_index(drop=True)))
        for label, values in probs.items():
            out.loc[active, label] = values
        report("probabilities", 1.0)
    scores["probabilities_note"] = notes
    return out


def _inactive_note(row: pd.Series) -> str:
    as_of = pd.Timestamp(row["as_of"]).date()
    if row["account_status"] == CHURNED:
        return (f"no probabilities: the account churned on "
                f"{pd.Timestamp(row['churned_at']):%Y-%m-%d}, not after {as_of}")
    return (f"no probabilities: the account was created on "
            f"{pd.Timestamp(row['created_at']):%Y-%m-%d}, after {as_of}")
