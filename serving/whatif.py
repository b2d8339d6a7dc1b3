"""What-if: the probabilities and the rules score with changed inputs, and the smallest changes a
CSM can make that lower the churn probability most.

Owns the levers (an executive touch, a check-in call, closing open tickets, collecting overdue
invoices, usage back to the peer median, adopting more features): each is a set of new values
for actionable features only (registry `actionable`; tenure, segment, ARR and the like never
move), consistent with how the features are defined (a touch today sets days-since to 1 and adds
one to the counts that include it). Candidates are single levers, then pairs and triples of
levers from different groups, up to a cap; every candidate row of every model is scored in one
predict call per model. It does not build features or word factors; sentences come from
wording.yaml.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.registry import FEATURES, feature
from scoring.health.profiles import Rules
from scoring.health.scoring import score_frame
from scoring.model_set import ModelSet
from serving.explain_words import ExplainWords
from serving.peers import PeerGroup
from serving.schemas.explanation import WhatIf

MAX_CANDIDATES = 20
MIN_GAIN = 0.005
"""A suggestion (or a bigger one over a smaller) must lower the probability at least this much."""
TOUCH_RECENT_DAYS = 14
EXEC_TOUCH_RECENT_DAYS = 30
ADOPT_FEATURES = 2

# Usage and engagement levers move these toward the peer median (actionable, usage_events).
_REACTIVATE: tuple[str, ...] = tuple(
    f.name for f in FEATURES if f.actionable and f.dimension in ("engagement", "usage"))


class WhatIfError(ValueError):
    """A change the what-if cannot make (not an actionable feature, or not a number)."""


@dataclass(frozen=True)
class Lever:
    code: str
    """Its phrase in wording.yaml (`explain.what_if.levers.<code>`)."""
    group: str
    """At most one lever per group in a combination (two ways of closing tickets never mix)."""
    changes: dict[str, float]
    n: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _num(values: Mapping[str, Any], name: str) -> float:
    try:
        return float(values.get(name, np.nan))
    except (TypeError, ValueError):
        return float("nan")


def _plus(values: Mapping[str, Any], name: str, n: float) -> float:
    v = _num(values, name)
    return (0.0 if np.isnan(v) else v) + n


def check_changes(changes: Mapping[str, Any]) -> dict[str, float]:
    """Changes as floats, refusing any feature that is not actionable (named in the error)."""
    out: dict[str, float] = {}
    for name, value in changes.items():
        try:
            spec = feature(name)
        except KeyError:
            raise WhatIfError(f"what-if change {name!r}: unknown feature") from None
        if not spec.actionable:
            raise WhatIfError(
                f"what-if change {name!r}: not an actionable feature ({spec.description}); "
                "only features a CSM can change may move"
            )
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise WhatIfError(f"what-if change {name!r}: {value!r} is not a number") from None
        if np.isnan(out[name]):
            raise WhatIfError(f"what-if change {name!r}: NaN is not a value to change to")
    return out


def levers_for(values: Mapping[str, Any], connected: frozenset[str],
               peers: PeerGroup | None = None, group: str = "") -> list[Lever]:
    """The levers that apply to this account, in a fixed order."""
    out: list[Lever] = []
    if "touchpoints" in connected:
        touch = {"touchpoints_30d": _plus(values, "touchpoints_30d", 1),
                 "touchpoints_90d": _plus(values, "touchpoints_90d", 1),
                 "days_since_last_touch": 1.0}
        exec_days = _num(values, "days_since_last_exec_touch")
        if np.isnan(exec_days) or exec_days > EXEC_TOUCH_RECENT_DAYS:
            out.append(Lever("exec_touch", "touch", {
                **touch, "exec_touches_90d": _plus(values, "exec_touches_90d", 1),
                "days_since_last_exec_touch": 1.0}))
        touch_days = _num(values, "days_since_last_touch")
        if np.isnan(touch_days) or touch_days > TOUCH_RECENT_DAYS:
            out.append(Lever("check_in", "touch", touch))
    open_tickets = _num(values, "open_tickets")
    if "tickets" in connected and open_tickets >= 1:
        for n in sorted({1, min(2, int(open_tickets)), int(open_tickets)}):
            out.append(Lever("close_ticket" if n == 1 else "close_tickets", "tickets",
                             {"open_tickets": open_tickets - n}, n=n))
    if "invoices" in connected and _num(values, "overdue_invoices") >= 1:
        out.append(Lever("collect_invoices", "invoices", {"overdue_invoices": 0.0}))
    if "usage_events" in connected and peers is not None:
        changes = {}
        for name in _REACTIVATE:
            median = peers.median(name)
            v = _num(values, name)
            if median is None:
                continue
            better = median > v if feature(name).higher_is_healthier else median < v
            if np.isnan(v) or better:
                changes[name] = median
        # A lever worth naming moves logins or active users, not only a ratio's rounding.
        if {"logins_30d", "active_users_30d", "events_30d"} & set(changes):
            out.append(Lever("reactivate", "usage", changes, params={"group": group}))
    used = _num(values, "features_used_30d")
    if "usage_events" in connected and not np.isnan(used):
        new = used + ADOPT_FEATURES
        out.append(Lever("adopt_features", "adoption", {
            "features_used_30d": new,
            "features_used_90d": max(_num(values, "features_used_90d"), new)
            if not np.isnan(_num(values, "features_used_90d")) else new,
            "features_used_change_30d": _plus(values, "features_used_change_30d",
                                              ADOPT_FEATURES),
        }, n=ADOPT_FEATURES))
    for lever in out:
        check_changes(lever.changes)
    return out


def candidates(levers: Sequence[Lever], max_candidates: int = MAX_CANDIDATES
               ) -> list[tuple[Lever, ...]]:
    """Single levers, then pairs, then triples from distinct groups, up to `max_candidates`."""
    out: list[tuple[Lever, ...]] = []
    for size in (1, 2, 3):
        for combo in itertools.combinations(levers, size):
            if len({lv.group for lv in combo}) < size:
                continue
            if len(out) >= max_candidates:
                return out
            out.append(combo)
    return out


def merged_changes(combo: Sequence[Lever]) -> dict[str, float]:
    out: dict[str, float] = {}
    for lever in combo:
        out.update(lever.changes)
    return out


def changed_matrices(models: ModelSet, base: Sequence[np.ndarray],
                     changes: Sequence[Mapping[str, float]]) -> list[np.ndarray]:
    """Per encoding: the base row, then one row per change set (numeric features set in place:
    levers never touch categorical features, so no re-encoding is needed)."""
    out = []
    for enc, matrix, index in zip(models.encodings, base, models.indexes, strict=True):
        m = np.repeat(np.asarray(matrix, dtype=float)[:1], len(changes) + 1, axis=0)
        for i, change in enumerate(changes, start=1):
            for name, value in change.items():
                j = index.get(name)
                if j is not None and name not in enc.categories:
                    m[i, j] = value
        out.append(m)
    return out


def changed_frame(row: pd.DataFrame, changes: Sequence[Mapping[str, float]]) -> pd.DataFrame:
    """The one-row features frame repeated once per change set, with the changes applied."""
    frame = row.iloc[np.zeros(len(changes), dtype=int)].reset_index(drop=True)
    names = dict.fromkeys(name for change in changes for name in change)
    fresh: dict[str, np.ndarray] = {}
    for name in names:
        if frame[name].dtype != np.float64:
            # Not a float feature: let pandas decide what a cell assignment makes of it.
            for i, change in enumerate(changes):
                if name in change:
                    frame.loc[i, name] = change[name]
            continue
        # Float features (every actionable one): one column write, not one .loc per cell
        # (pandas' cost per cell adds up to a noticeable share of an explanation).
        values = frame[name].to_numpy(dtype=np.float64, copy=True)
        for i, change in enumerate(changes):
            if name in change:
                values[i] = change[name]
        fresh[name] = values
    if fresh:
        frame[list(fresh)] = np.column_stack(list(fresh.values()))
    return frame


def lever_phrase(lever: Lever, words: ExplainWords) -> str:
    return words.fill(f"what_if.levers.{lever.code}", n=lever.n, **lever.params)


def rules_scores(row: pd.DataFrame, changes: Sequence[Mapping[str, float]],
                 connected: frozenset[str], rules: Rules | None,
                 previous: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """score_frame rows of the account with each change set (one call for all of them)."""
    if rules is None or not changes:
        return None
    return score_frame(changed_frame(row, changes), connected, rules, previous)


@dataclass(frozen=True)
class Candidate:
    """A lever combination and every model's probability with it."""

    levers: tuple[Lever, ...]
    changes: dict[str, float]
    label: str
    horizon: int
    before: float
    probabilities: dict[str, float]

    @property
    def after(self) -> float:
        return self.probabilities[self.label]


def best_candidates(
    models: ModelSet,
    base: Sequence[np.ndarray],
    levers: Sequence[Lever],
    *,
    max_candidates: int = MAX_CANDIDATES,
    max_suggestions: int = 3,
    min_gain: float = MIN_GAIN,
) -> list[Candidate]:
    """The smallest few lever combinations with the largest drop in the longest-horizon churn
    probability: the best single lever, then a pair, then a triple, each only when it lowers
    the probability at least `min_gain` more than the best smaller one. Every candidate row of
    a model is scored in one predict call."""
    churn = models.by_target("churn")
    if not churn or not levers:
        return []
    ranked_by = churn[-1]
    combos = candidates(levers, max_candidates)
    changes = [merged_changes(c) for c in combos]
    probs = models.probabilities(changed_matrices(models, base, changes))
    p = probs[ranked_by.label]
    before = float(p[0])
    out: list[Candidate] = []
    best_so_far = before
    for size in (1, 2, 3):
        idx = [i for i, c in enumerate(combos) if len(c) == size]
        if not idx:
            continue
        i = min(idx, key=lambda k: (p[k + 1], k))
        if p[i + 1] <= best_so_far - min_gain:
            out.append(Candidate(combos[i], changes[i], ranked_by.label, ranked_by.horizon,
                                 before, {label: float(v[i + 1]) for label, v in probs.items()}))
            best_so_far = float(p[i + 1])
        if len(out) >= max_suggestions:
            break
    return out


def describe(candidate: Candidate, words: ExplainWords, score_before: float | None = None,
             score_after: float | None = None) -> WhatIf:
    """The suggestion in words: "an executive touch and closing 2 open tickets: 41% -> 22%"."""
    join = str(words.get("what_if.join"))
    phrase = join.join(lever_phrase(lv, words) for lv in candidate.levers) or ", ".join(
        f"{feature(k).description} {v:g}" for k, v in candidate.changes.items())
    text = words.fill("what_if.line", changes=phrase, target=words.get("targets.churn"),
                      horizon=candidate.horizon, before=candidate.before, after=candidate.after)
    if score_before is not None and score_after is not None:
        text += words.fill("what_if.score", score_before=score_before, score_after=score_after)
    return WhatIf(levers=[lv.code for lv in candidate.levers], changes=dict(candidate.changes),
                  label=candidate.label, before=candidate.before, after=candidate.after,
                  probabilities=dict(candidate.probabilities), score_before=score_before,
                  score_after=score_after, text=text)


def _score(scored: pd.DataFrame | None, i: int) -> float | None:
    if scored is None:
        return None
    s = float(scored["score"].iloc[i])
    return None if np.isnan(s) else s


def what_if(
    models: ModelSet,
    row: pd.DataFrame,
    changes: Mapping[str, Any],
    words: ExplainWords,
    *,
    connected: frozenset[str],
    rules: Rules | None = None,
) -> WhatIf:
    """The probabilities and the rules score of one account (a one-row features frame) with
    the given feature changes; refuses changes to features that are not actionable."""
    if len(row) != 1:
        raise WhatIfError(f"what-if takes one account's features row, got {len(row)} rows")
    change = check_changes(changes)
    churn = models.by_target("churn")
    if not churn:
        raise WhatIfError("what-if needs a churn model: none is loaded")
    ranked_by = churn[-1]
    probs = models.probabilities(changed_matrices(models, models.matrices(row), [change]))
    scored = rules_scores(row, [{}, change], connected, rules)
    candidate = Candidate((), change, ranked_by.label, ranked_by.horizon,
                          float(probs[ranked_by.label][0]),
                          {label: float(v[1]) for label, v in probs.items()})
    return describe(candidate, words, _score(scored, 0), _score(scored, 1))
