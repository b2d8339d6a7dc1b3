"""Did it work: the effect of a completed playbook against matched similar untreated accounts.

Pure numpy. Each treated account is matched, at its own start date, to its nearest untreated
accounts scored that same date (with replacement, inside a caliper, exactly on a few segment
columns): the effect on the treated (ATT) is the mean of treated minus matched
untreated outcomes, bias-corrected for what the matching leaves (Abadie and Imbens 2011: a
ridge regression of the outcome on the matching inputs among the untreated of the same exact
cell, its prediction for the treated account minus that for its matches taken off each
difference). Beside it: a bootstrap 95% interval (accounts resampled, matched and regressed
again), the number of matched treated accounts, the naive treated-minus-untreated difference
(what the matching corrects) and a plain warning when the groups cannot be matched well (too
few pairs, poor overlap, inputs still unbalanced after matching).

What is matched on decides what is corrected: the score and its dimensions, every risk flag and
the contract's timing at the start date (days to the renewal, the contract term, auto-renew,
tenure), the observed inputs an account is picked for a playbook by. A renewal inside the
horizon is where an annual contract churns, so `renewal_soon` and the profile are matched
exactly; the other flags are thresholds on features the dimensions already show and count in
the distance (exact on all of them splits the pool into cells where many treated accounts find
no untreated one, and those are dropped, which moves the estimate off the effect on all the
treated).
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
"""The score's inputs as the store holds them: the score and its seven dimensions."""
CONTRACT = ("days_to_renewal", "contract_term_days", "auto_renew", "tenure_days")
"""The contract's timing at the start date (point-in-time features of the one feature
function): when the renewal falls, how long the term is, whether it renews by itself, how old
the account is. What a renewal playbook is picked by and what the churn of the horizon turns
on; the flag alone is a threshold on them."""
EXACT = ("profile", "flag_renewal_soon")
"""Matched exactly: the rules profile and whether a renewal is due (a renewal due or not is a
different account)."""
MATCH_ON = (*INPUTS, *(f"flag_{f}" for f in FLAGS if f"flag_{f}" not in EXACT), *CONTRACT)
"""Matched by distance: the score's inputs, the other flags (0 or 1) and the contract's timing."""
NEIGHBOURS = 4
"""Untreated matches per treated account: more than one lowers the variance that rare outcomes
(churn) give a single match (Abadie and Imbens suggest four)."""
CORRECTION_RIDGE = 1.0
"""Ridge penalty of the bias correction's regressions (on standardised inputs; the usual default
of 1): it keeps the slopes of a cell with few untreated accounts from chasing noise."""
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
    """Treated accounts with at least one match (and a known outcome)."""
    treated: int
    naive: float | None
    """Treated minus every untreated account of the same dates, unmatched."""
    warnings: list[str] = field(default_factory=list)
    balance: dict[str, float] = field(default_factory=dict)
    """|Standardised mean difference| of each input after matching."""

    def as_dict(self) -> dict[str, object]:
        return {"outcome": self.outcome, "effect": self.effect, "ci95": [self.low, self.high],
                "pairs": self.pairs, "treated": self.treated, "naive": self.naive,
                "warnings": self.warnings, "balance": self.balance}


@dataclass(frozen=True)
class Matches:
    treated: np.ndarray
    """Row position (in the units frame) of the treated account of each match."""
    control: np.ndarray
    """Row position of its matched untreated account."""
    weight: np.ndarray
    """1 / the number of matches of that treated account: each treated account weighs one."""
    unmatched: int
    z: np.ndarray
    """The matching inputs standardised per date (a missing input at the date's mean)."""
    cells: np.ndarray
    """The exact-matching cell (date and `exact` values) of each row."""


def _standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(ref, axis=0) if len(ref) else np.zeros(x.shape[1])
        sd = np.nanstd(ref, axis=0) if len(ref) else np.ones(x.shape[1])
    mu = np.where(np.isnan(mu), 0.0, mu)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    z = (x - mu) / sd
    return np.where(np.isnan(z), 0.0, z)


def match_nearest(units: pd.DataFrame, inputs: Sequence[str], *, caliper: float,
                  date_col: str = "as_of", treated_col: str = "treated",
                  exact: Sequence[str] = (), neighbours: int = 1) -> Matches:
    """The `neighbours` nearest untreated rows of each treated row, at the same date (and
    `exact` values), with replacement.

    Distance: root mean squared difference of the inputs standardised over all rows of the date
    (a missing input counts as the mean; an input absent from `units` counts nothing); a match
    farther than `caliper` is left out, and a treated row with none inside stays unmatched."""
    present = [c for c in inputs if c in units.columns]
    x_all = units[present].to_numpy(dtype=float).reshape(len(units), len(present))
    is_t = units[treated_col].to_numpy(dtype=bool)
    dates = units[date_col].to_numpy()
    z = np.zeros_like(x_all)
    for d in pd.unique(dates):
        rows = np.flatnonzero(dates == d)
        z[rows] = _standardise(x_all[rows], x_all[rows])
    cells = units.groupby([date_col, *exact], sort=True, dropna=False).ngroup().to_numpy()
    t_out: list[np.ndarray] = []
    c_out: list[np.ndarray] = []
    w_out: list[np.ndarray] = []
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
        d = np.sqrt(((z[t][:, None, :] - z[c][None, :, :]) ** 2).mean(axis=2)) \
            if z.shape[1] else np.zeros((len(t), len(c)))
        k = min(neighbours, len(c))
        near = np.argsort(d, axis=1, kind="stable")[:, :k]
        ok = np.take_along_axis(d, near, axis=1) <= caliper
        n_ok = ok.sum(axis=1)
        unmatched += int((n_ok == 0).sum())
        ti, slot = np.nonzero(ok)
        t_out.append(t[ti])
        c_out.append(c[near[ti, slot]])
        w_out.append(1.0 / n_ok[ti])
    return Matches(_join(t_out), _join(c_out), _join(w_out, float), unmatched, z, cells)


def _join(parts: list[np.ndarray], dtype: type = int) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _weighted_smd(x: np.ndarray, m: Matches, is_t: np.ndarray) -> float:
    """|Mean over the matched treated - weighted mean over their matches|, over the pooled
    standard deviation of all treated and all untreated rows (before matching, so that a
    matching that narrows the groups does not look balanced for it)."""
    a, b = x[m.treated], x[m.control]
    ok = ~np.isnan(a) & ~np.isnan(b)
    if not ok.any():
        return 0.0
    with np.errstate(invalid="ignore"):
        sd = np.sqrt((np.nanvar(x[is_t]) + np.nanvar(x[~is_t])) / 2.0)
    if not np.isfinite(sd) or sd == 0:
        return 0.0
    w = m.weight[ok]
    return float(abs(np.average(a[ok], weights=w) - np.average(b[ok], weights=w)) / sd)


def _correction(m: Matches, y: np.ndarray, is_t: np.ndarray) -> np.ndarray:
    """Per match, what the matching inputs alone predict between the treated account and its
    match: in each exact cell, a ridge regression (`CORRECTION_RIDGE`) of the outcome on the
    standardised inputs among the cell's untreated accounts, its slopes times the
    treated-minus-match input difference. Slopes per cell: churn at a renewal turns on health
    far more than churn between renewals, and one slope for both under-corrects the renewals."""
    out = np.zeros(len(m.treated))
    if not m.z.shape[1] or not len(m.treated):
        return out
    rows = ~is_t & ~np.isnan(y)
    cell_t = m.cells[m.treated]
    for cell in np.unique(cell_t):
        fit = rows & (m.cells == cell)
        if fit.sum() < 2:
            continue
        slopes = _ridge_slopes(m.z[fit], y[fit], CORRECTION_RIDGE)
        at = cell_t == cell
        out[at] = (m.z[m.treated[at]] - m.z[m.control[at]]) @ slopes
    return out


def _ridge_slopes(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """The slopes of a ridge regression with an intercept (the intercept is not penalised):
    the closed form on centred data, solved in numpy (scoring imports no fitting library)."""
    xc, yc = x - x.mean(axis=0), y - y.mean()
    return np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)


def _matched_effect(m: Matches, y: np.ndarray, is_t: np.ndarray, bias_correct: bool
                    ) -> tuple[float | None, int]:
    """The weighted mean matched difference (bias-corrected) and the treated accounts in it."""
    diff = y[m.treated] - y[m.control]
    if bias_correct:
        diff = diff - _correction(m, y, is_t)
    ok = ~np.isnan(diff)
    if not ok.any():
        return None, 0
    w = m.weight[ok]
    return float(np.average(diff[ok], weights=w)), len(np.unique(m.treated[ok]))


def estimate_effect(units: pd.DataFrame, inputs: Sequence[str], outcome: str, *,
                    caliper: float = 1.0, min_pairs: int = 20, bootstraps: int = 1000,
                    seed: int = 0, exact: Sequence[str] = (), neighbours: int = 1,
                    bias_correct: bool = True) -> EffectEstimate:
    """The matched effect of treatment on `outcome` (a column of `units`, NaN where unknown).

    `units`: one row per account and start date with `treated`, `as_of`, the `inputs` and the
    outcome. Untreated rows are the candidates at their date."""
    units = units.reset_index(drop=True)
    is_t = units["treated"].to_numpy(dtype=bool)
    m = match_nearest(units, inputs, caliper=caliper, exact=exact, neighbours=neighbours)
    y = units[outcome].to_numpy(dtype=float)
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
    effect, pairs = _matched_effect(m, y, is_t, bias_correct)
    if pairs < min_pairs:
        warnings.append(f"too few matched pairs: {pairs} (at least {min_pairs} are needed "
                        "for an estimate to rely on)")
    balance = {col: round(_weighted_smd(units[col].to_numpy(dtype=float), m, is_t), 3)
               if len(m.treated) else float("nan")
               for col in inputs if col in units.columns}
    worse = [c for c, v in balance.items() if v > BALANCE_SMD]
    if worse:
        warnings.append("the matched groups still differ on " + ", ".join(worse)
                        + f" (standardised mean difference above {BALANCE_SMD})")
    if effect is None:
        return EffectEstimate(outcome, None, None, None, 0, n_treated, naive,
                              warnings or ["no matched pairs"], balance)
    # The interval resamples accounts (treated and untreated apart), matches and regresses
    # again: with matching with replacement a popular control weighs on many pairs, which a
    # resample of the pairs alone would not see, and the interval would be too narrow.
    rng = np.random.default_rng(seed)
    t_rows, c_rows = np.flatnonzero(is_t), np.flatnonzero(~is_t)
    boot = []
    for _ in range(bootstraps):
        pick = np.r_[rng.choice(t_rows, len(t_rows)), rng.choice(c_rows, len(c_rows))]
        sample = units.iloc[pick].reset_index(drop=True)
        mb = match_nearest(sample, inputs, caliper=caliper, exact=exact, neighbours=neighbours)
        eb, _ = _matched_effect(mb, y[pick], is_t[pick], bias_correct)
        if eb is not None:
            boot.append(eb)
    low, high = np.quantile(np.asarray(boot), [0.025, 0.975])
    return EffectEstimate(outcome, effect, float(low), float(high), pairs, n_treated, naive,
                          warnings, balance)


def effect_units(scores: pd.DataFrame, starts: pd.DataFrame, churn: pd.DataFrame | None,
                 data_end: pd.Timestamp, horizon: int, untreated: set[str] | None = None,
                 features: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (account, start date) of the stored scores at the treated start dates:
    `treated`, the inputs, the `CONTRACT` timing, `churned` (NaN while the window is open) and
    `score_change`.

    `starts`: account_id, as_of of each treated account; `untreated`: accounts allowed as
    controls (default: every account not treated); `features`: the point-in-time features
    (account_id, as_of and the `CONTRACT` columns) at the start dates, from the pipeline's
    scored frame; without them the contract timing is unknown (NaN) and counts nothing."""
    treated = set(starts["account_id"])
    at = scores[scores["as_of"].isin(set(starts["as_of"]))].copy()
    key = set(zip(starts["account_id"], starts["as_of"], strict=True))
    at["treated"] = [(a, d) in key for a, d in zip(at["account_id"], at["as_of"], strict=True)]
    control = ~at["treated"] & ~at["account_id"].isin(treated)
    if untreated is not None:
        control &= at["account_id"].isin(untreated)
    at = at[at["treated"] | control].reset_index(drop=True)
    for code in FLAGS:
        at[f"flag_{code}"] = [float(any((f.get("code") if isinstance(f, dict) else f) == code
                                        for f in (flags or []))) for flags in at["flags"]]
    at = at.drop(columns=[c for c in CONTRACT if c in at.columns])
    if features is not None:
        timing = features[["account_id", "as_of",
                           *[c for c in CONTRACT if c in features.columns]]].copy()
        timing["account_id"] = timing["account_id"].astype(str)
        timing["as_of"] = pd.to_datetime(timing["as_of"]).astype(at["as_of"].dtype)
        at["account_id"] = at["account_id"].astype(str)
        at = at.merge(timing.drop_duplicates(["account_id", "as_of"]),
                      on=["account_id", "as_of"], how="left")
    for col in CONTRACT:
        at[col] = pd.to_numeric(at[col], errors="coerce") if col in at.columns else np.nan
    later = scores[["account_id", "as_of", "score"]].copy()
    later["as_of"] = later["as_of"] - pd.Timedelta(days=horizon)
    at = at.merge(later, on=["account_id", "as_of"], how="left", suffixes=("", "_later"))
    at["score_change"] = at["score_later"] - at["score"]
    matured = (at["as_of"] + pd.Timedelta(days=horizon) <= data_end).to_numpy()
    churned = event_within(at, churn, horizon) if churn is not None else np.full(len(at), np.nan)
    at["churned"] = np.where(matured, churned, np.nan)
    return at
