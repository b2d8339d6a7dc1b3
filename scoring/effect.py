"""Did it work: the effect of a completed playbook against matched similar untreated accounts.

Pure numpy. Each treated account is matched, at its own start date, to the nearest untreated
account scored that same date (nearest neighbour on the score's inputs, standardised by their
pooled spread, with replacement, inside a caliper; optionally exactly on a segment column). The
effect is the mean treated-minus-matched difference of an outcome (churn within the horizon,
the score change over it), with a bootstrap 95% interval (accounts resampled and matched
again), the number of pairs, the naive treated-minus-untreated difference beside it (what the
matching corrects) and a plain warning when the groups cannot be matched well (too few pairs,
poor overlap, inputs still unbalanced after matching).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scoring.health.profiles import FLAG_CODES
from scoring.realised import event_within

FLAGS = FLAG_CODES
INPUTS = ("score", "dim_engagement", "dim_adoption", "dim_usage", "dim_support",
          "dim_satisfaction", "dim_value", "dim_relationship")
"""The score's inputs as the store holds them: the score and its seven dimensions, what treated
and untreated accounts are matched on by distance."""
EXACT = ("profile", *(f"flag_{f}" for f in FLAGS))
"""Matched exactly: the rules profile and whether each risk flag is raised (a flag is a step,
not a distance: a renewal due or not is a different account)."""
BALANCE_SMD = 0.25
"""A standardised mean difference above this after matching: the groups are not comparable."""
UNMATCHED_SHARE = 0.2
"""More treated accounts than this share without a match inside the caliper: poor overlap."""


@dataclass(frozen=True)
class EffectEstimate:
    outcome: str
    effect: float | None
    """Mean of treated minus matched untreated (negative churn: the playbook reduced churn)."""
    low: float | None
    high: float | None
    pairs: int
    treated: int
    naive: float | None
    """Treated minus every untreated account of the same dates, unmatched."""
    warnings: list[str] = field(default_factory=list)
    balance: dict[str, float] = field(default_factory=dict)
    """Largest |standardised mean difference| of each input after matching."""

    def as_dict(self) -> dict[str, object]:
        return {"outcome": self.outcome, "effect": self.effect, "ci95": [self.low, self.high],
                "pairs": self.pairs, "treated": self.treated, "naive": self.naive,
                "warnings": self.warnings, "balance": self.balance}


@dataclass(frozen=True)
class Matches:
    treated: np.ndarray
    """Row positions (in the units frame) of each matched treated account."""
    control: np.ndarray
    """Row position of its matched untreated account."""
    unmatched: int


def _standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    mu = np.nanmean(ref, axis=0)
    sd = np.nanstd(ref, axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu) / sd
    return np.where(np.isnan(z), 0.0, z)


def match_nearest(units: pd.DataFrame, inputs: Sequence[str], *, caliper: float,
                  date_col: str = "as_of", treated_col: str = "treated",
                  exact: Sequence[str] = ()) -> Matches:
    """Nearest untreated neighbour of each treated row, at the same date (and `exact` values).

    Distance: root mean squared difference of the inputs standardised over all rows of the date
    (a missing input counts as the mean); a treated row whose nearest neighbour is farther than
    `caliper` stays unmatched."""
    x_all = units[list(inputs)].to_numpy(dtype=float)
    is_t = units[treated_col].to_numpy(dtype=bool)
    dates = units[date_col].to_numpy()
    z = np.zeros_like(x_all)
    for d in pd.unique(dates):
        rows = np.flatnonzero(dates == d)
        z[rows] = _standardise(x_all[rows], x_all[rows])
    cells = units.groupby([date_col, *exact], sort=True, dropna=False).ngroup().to_numpy()
    t_out: list[np.ndarray] = []
    c_out: list[np.ndarray] = []
    unmatched = 0
    order = np.argsort(cells, kind="stable")
    bounds = np.flatnonzero(np.diff(cells[order])) + 1
    for rows in np.split(order, bounds):
        t = rows[is_t[rows]]
        c = rows[~is_t[rows]]
        if not len(t):
            continue
        if not len(c):
            unmatched += len(t)
            continue
        d = np.sqrt(((z[t][:, None, :] - z[c][None, :, :]) ** 2).mean(axis=2))
        best = d.argmin(axis=1)
        ok = d[np.arange(len(t)), best] <= caliper
        unmatched += int((~ok).sum())
        t_out.append(t[ok])
        c_out.append(c[best[ok]])
    return Matches(_join(t_out), _join(c_out), unmatched)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(int) if parts else np.zeros(0, dtype=int)


def _smd(a: np.ndarray, b: np.ndarray) -> float:
    sd = np.sqrt((np.nanvar(a) + np.nanvar(b)) / 2.0)
    if not np.isfinite(sd) or sd == 0:
        return 0.0
    return float(abs(np.nanmean(a) - np.nanmean(b)) / sd)


def estimate_effect(units: pd.DataFrame, inputs: Sequence[str], outcome: str, *,
                    caliper: float = 1.0, min_pairs: int = 20, bootstraps: int = 1000,
                    seed: int = 0, exact: Sequence[str] = (),
                    matches: Matches | None = None) -> EffectEstimate:
    """The matched effect of treatment on `outcome` (a column of `units`, NaN where unknown).

    `units`: one row per account and start date with `treated`, `as_of`, the `inputs` and the
    outcome. Untreated rows are the candidates at their date."""
    units = units.reset_index(drop=True)
    is_t = units["treated"].to_numpy(dtype=bool)
    m = matches or match_nearest(units, inputs, caliper=caliper, exact=exact)
    y = units[outcome].to_numpy(dtype=float)
    keep = ~np.isnan(y[m.treated]) & ~np.isnan(y[m.control])
    ti, ci = m.treated[keep], m.control[keep]
    warnings: list[str] = []
    n_treated = int(is_t.sum())
    treated_dates = set(units.loc[is_t, "as_of"])
    same_dates = units["as_of"].isin(treated_dates).to_numpy()
    yt, yc = y[is_t], y[~is_t & same_dates]
    naive = float(np.nanmean(yt) - np.nanmean(yc)) \
        if np.isfinite(yt).any() and np.isfinite(yc).any() else None
    if n_treated and m.unmatched / n_treated > UNMATCHED_SHARE:
        warnings.append(f"poor overlap: {m.unmatched} of {n_treated} treated accounts have no "
                        f"untreated account within the caliper ({caliper}) at their start date")
    if len(ti) < min_pairs:
        warnings.append(f"too few matched pairs: {len(ti)} (at least {min_pairs} are needed "
                        "for an estimate to rely on)")
    balance = {}
    for col in inputs:
        x = units[col].to_numpy(dtype=float)
        balance[col] = round(_smd(x[ti], x[ci]), 3) if len(ti) else float("nan")
    worse = [c for c, v in balance.items() if v > BALANCE_SMD]
    if worse:
        warnings.append("the matched groups still differ on " + ", ".join(worse)
                        + f" (standardised mean difference above {BALANCE_SMD})")
    if not len(ti):
        return EffectEstimate(outcome, None, None, None, 0, n_treated, naive,
                              warnings or ["no matched pairs"], balance)
    diff = y[ti] - y[ci]
    # The interval resamples accounts (treated and untreated apart) and matches again: with
    # matching with replacement a popular control weighs on many pairs, which a resample of the
    # pairs alone would not see, and the interval would be too narrow.
    rng = np.random.default_rng(seed)
    t_rows, c_rows = np.flatnonzero(is_t), np.flatnonzero(~is_t)
    boot = []
    for _ in range(bootstraps):
        pick = np.r_[rng.choice(t_rows, len(t_rows)), rng.choice(c_rows, len(c_rows))]
        sample = units.iloc[pick].reset_index(drop=True)
        mb = match_nearest(sample, inputs, caliper=caliper, exact=exact)
        yb = sample[outcome].to_numpy(dtype=float)
        d = yb[mb.treated] - yb[mb.control]
        d = d[~np.isnan(d)]
        if len(d):
            boot.append(d.mean())
    low, high = np.quantile(np.asarray(boot), [0.025, 0.975])
    return EffectEstimate(outcome, float(diff.mean()), float(low), float(high), len(diff),
                          n_treated, naive, warnings, balance)


def effect_units(scores: pd.DataFrame, starts: pd.DataFrame, churn: pd.DataFrame | None,
                 data_end: pd.Timestamp, horizon: int, untreated: set[str] | None = None
                 ) -> pd.DataFrame:
    """One row per (account, start date) of the stored scores at the treated start dates:
    `treated`, the inputs, `churned` (NaN while the window is open) and `score_change`.

    `starts`: account_id, as_of of each treated account; `untreated`: accounts allowed as
    controls (default: every account not treated)."""
    treated = set(starts["account_id"])
    at = scores[scores["as_of"].isin(set(starts["as_of"]))].copy()
    key = set(zip(starts["account_id"], starts["as_of"], strict=True))
    at["treated"] = [(a, d) in key for a, d in zip(at["account_id"], at["as_of"], strict=True)]
    allowed = untreated if untreated is not None else None
    control = ~at["treated"] & ~at["account_id"].isin(treated)
    if allowed is not None:
        control &= at["account_id"].isin(allowed)
    at = at[at["treated"] | control].reset_index(drop=True)
    for code in FLAGS:
        at[f"flag_{code}"] = [float(any((f.get("code") if isinstance(f, dict) else f) == code
                                        for f in (flags or []))) for flags in at["flags"]]
    later = scores[["account_id", "as_of", "score"]].copy()
    later["as_of"] = later["as_of"] - pd.Timedelta(days=horizon)
    at = at.merge(later, on=["account_id", "as_of"], how="left", suffixes=("", "_later"))
    at["score_change"] = at["score_later"] - at["score"]
    matured = (at["as_of"] + pd.Timedelta(days=horizon) <= data_end).to_numpy()
    churned = event_within(at, churn, horizon) if churn is not None else np.full(len(at), np.nan)
    at["churned"] = np.where(matured, churned, np.nan)
    return at
