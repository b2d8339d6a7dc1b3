"""The synthetic B2B SaaS world: generate it, write it in the contract format, and score the
oracle from its ground truth.

A world is the nine contract tables plus the truth the tables are noisy views of: each account's
hidden daily health and the exact daily churn and expansion hazards the generator drew from (so
`oracle_probability` is the true event probability given the hidden path), and the shocks (champion
left, outage, usage cut, budget cut, new use case) with their dates. This module orchestrates the
other `features.synth` modules and does the file I/O; the behaviour lives in them. It knows nothing
of features or models: they read the files (or `World.tables`) like any customer data. Same seed,
same bytes: every draw comes from `numpy.random.default_rng(seed)` and its spawned children, in a
fixed order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract.tables import TABLES
from features.synth.accounts import account_ids, build_accounts, draw_profiles
from features.synth.columns import str_column, timestamps
from features.synth.commercial import (
    build_churn_events,
    build_expansion_events,
    build_invoices,
    build_subscriptions,
    subscription_rows,
)
from features.synth.latent import SHOCK_KINDS, Latent, simulate
from features.synth.params import EventTypeEffect, Intervention
from features.synth.signals import build_surveys, build_tickets, build_touchpoints
from features.synth.usage import build_usage

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
Target = Literal["churn", "expansion"]
FORMATS = ("parquet", "csv")
TRUTH_FILE = "truth.parquet"
SHOCKS_FILE = "truth_events.csv"


@dataclass
class World:
    tables: dict[str, pd.DataFrame]
    """The nine contract tables, columns exactly as in features/contract/tables.py."""
    truth: pd.DataFrame
    """account_id, date, churn_hazard, expansion_hazard, health: one row per account and day
    from its first day in the data to the last day of the period. churn_hazard is the
    probability of a churn dated that day for a customer; health is the latent z-scale (0
    typical, higher healthier). Rows go on after a churn with the values the account would
    have had: the hidden path never depends on the churn draw, which is what makes
    `oracle_probability` exact (and calibrated) for any window."""
    shocks: pd.DataFrame
    """account_id, date, kind: the hidden events (champion_left, outage, usage_cut, budget_cut,
    new_use_case)."""
    intervention: pd.DataFrame | None = None
    """With an opt-in `Intervention`: account_id, start (the as-of date its effect is measured
    from), treated; None without one. The truth then has `untreated_churn_hazard` too."""


def generate_world(n_accounts: int, start: date, days: int, seed: int,
                   progress: Progress | None = None,
                   event_types: Sequence[EventTypeEffect] = (),
                   intervention: Intervention | None = None) -> World:
    """Simulate `n_accounts` accounts over the `days` days from `start` (exclusive end).

    `event_types`: customer event types with known churn effects (`EventTypeEffect`), added to
    the product's own events. Their propensities come from a generator of their own, so the
    rest of the world draws what it draws without them; their effect is in the true hazards
    (and so in the oracle).

    `intervention` (default none: the world is byte-identical to one generated without the
    argument): a playbook with a known true effect on churn (`Intervention`), its draws from a
    generator of their own."""
    if n_accounts < 1:
        raise ValueError(f"n_accounts must be at least 1, got {n_accounts}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    report = progress or (lambda stage, fraction: None)
    # One child generator per stage: changing how one table is drawn leaves the others intact.
    rng = dict(zip(("accounts", "latent", "usage", "commercial", "tickets", "surveys",
                    "touchpoints"), np.random.default_rng(seed).spawn(7), strict=True))

    report("accounts", 0.0)
    profiles = draw_profiles(n_accounts, days, rng["accounts"])
    ids = account_ids(n_accounts)
    propensity = event_propensity(event_types, n_accounts, days,
                                  np.random.default_rng([seed, len(rng)]))
    event_logit = (np.einsum("k,dkn->dn", [t.churn_effect for t in event_types], propensity)
                   if event_types else None)
    report("health", 0.02)
    treat_draws = None
    if intervention is not None:
        if intervention.start_day >= days:
            raise ValueError(f"intervention.start_day {intervention.start_day} is not inside "
                             f"the {days} days")
        treat_draws = np.random.default_rng([seed, len(rng) + 1]).random(n_accounts)
    latent = simulate(profiles, days, rng["latent"],
                      lambda f: report("health", 0.02 + 0.23 * f), event_logit=event_logit,
                      intervention=intervention, treat_draws=treat_draws)
    report("usage", 0.25)
    usage = build_usage(latent, profiles, ids, start, rng["usage"],
                        lambda f: report("usage", 0.25 + 0.55 * f),
                        event_types=event_types, propensity=propensity)
    report("billing", 0.8)
    rows = subscription_rows(latent, profiles)
    tables: dict[str, pd.DataFrame] = {
        "accounts": build_accounts(profiles, ids, start),
        "subscriptions": build_subscriptions(rows, ids, start),
        "usage_events": usage,
    }
    report("support", 0.84)
    tables["tickets"], rated = build_tickets(latent, profiles, ids, start, rng["tickets"])
    tables["surveys"] = build_surveys(latent, profiles, rated, ids, start, rng["surveys"])
    tables["touchpoints"] = build_touchpoints(latent, profiles, ids, start, rng["touchpoints"])
    tables["invoices"] = build_invoices(rows, latent, profiles, ids, start, rng["commercial"])
    tables["churn_events"] = build_churn_events(latent, ids, start)
    tables["expansion_events"] = build_expansion_events(latent, profiles, ids, start,
                                                        rng["commercial"])
    tables = {t.name: _contract_order(tables[t.name], t.column_names) for t in TABLES}
    report("truth", 0.94)
    truth = _truth_frame(latent, ids, start)
    shocks = _shock_frame(latent, ids, start)
    treated = None
    if intervention is not None and latent.treated is not None:
        truth["untreated_churn_hazard"] = _truth_frame(latent, ids, start,
                                                       latent.untreated_churn_hazard
                                                       )["churn_hazard"].to_numpy()
        treated = pd.DataFrame({
            "account_id": ids,
            "start": pd.Timestamp(start) + pd.Timedelta(days=intervention.start_day),
            "treated": latent.treated})
    report("done", 1.0)
    log.info("generated %d accounts x %d days: %s", n_accounts, days,
             ", ".join(f"{k}={len(v)}" for k, v in tables.items()))
    return World(tables=tables, truth=truth, shocks=shocks, intervention=treated)


def event_propensity(event_types: Sequence[EventTypeEffect], n_accounts: int, days: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(days, types, accounts) each account's hidden propensity for each declared event type:
    standard normal on every day, an AR(1) path with the type's timescale."""
    out = np.zeros((days, len(event_types), n_accounts))
    if not event_types:
        return out
    phi = np.array([np.exp(-1.0 / t.timescale) if t.timescale else 1.0 for t in event_types])
    noise = np.sqrt(1.0 - phi**2)[:, None]
    out[0] = rng.standard_normal((len(event_types), n_accounts))
    for d in range(1, days):
        out[d] = phi[:, None] * out[d - 1] + noise * rng.standard_normal(out[d].shape)
    return out


def _contract_order(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Contract columns in contract order, then any custom attributes (accounts only)."""
    extra = [c for c in frame.columns if c not in columns]
    return frame[list(columns) + extra]


def _truth_frame(lat: Latent, ids: np.ndarray, start: date,
                 churn_hazard: np.ndarray | None = None) -> pd.DataFrame:
    d = np.arange(lat.days)[None, :]
    churn = lat.churn_hazard if churn_hazard is None else churn_hazard
    # Account-major: one block of consecutive days per account, from its first day on.
    a, day = np.nonzero(d >= lat.first_day[:, None])
    return pd.DataFrame({
        "account_id": str_column(a, ids),
        "date": timestamps(start, day),
        "churn_hazard": churn[day, a],
        "expansion_hazard": lat.expansion_hazard[day, a],
        "health": lat.health[day, a].astype(np.float64),
    })


def _shock_frame(lat: Latent, ids: np.ndarray, start: date) -> pd.DataFrame:
    s = lat.shocks
    o = np.lexsort((s.value, s.day, s.account))
    return pd.DataFrame({
        "account_id": str_column(s.account[o], ids),
        "date": timestamps(start, s.day[o]),
        "kind": str_column(s.value[o].astype(np.int64), SHOCK_KINDS),
    })


def write_world(world: World, out: Path, fmt: str = "parquet",
                progress: Progress | None = None) -> dict[str, Path]:
    """Write one `<table>.<fmt>` per contract table, `truth.parquet` and `truth_events.csv`.

    A file of the same table in the other format is removed, so the folder never holds two
    versions of one table. Returns the path written for each table, truth and truth_events.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    items = [(name, frame, fmt) for name, frame in world.tables.items()]
    items += [("truth", world.truth, "parquet"), ("truth_events", world.shocks, "csv")]
    if world.intervention is not None:
        items.append(("truth_intervention", world.intervention, "csv"))
    for i, (name, frame, kind) in enumerate(items):
        if progress is not None:
            progress(name, i / len(items))
        path = out / f"{name}.{kind}"
        for other in FORMATS:
            stale = out / f"{name}.{other}"
            if other != kind and stale.exists():
                log.warning("removing %s: %s replaces it", stale, path.name)
                stale.unlink()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if kind == "parquet":
            pq.write_table(table, path)
        else:
            pacsv.write_csv(table, path)
        written[name] = path
    if progress is not None:
        progress("done", 1.0)
    return written


def oracle_probability(truth: pd.DataFrame, entities: pd.DataFrame, horizon: int,
                       target: Target = "churn") -> pd.Series:
    """P(event within `horizon` days of as_of) per entity row, from the true daily hazards.

    The window is the days [as_of, as_of + horizon), exactly what `training.labels` counts
    (features see rows dated before as_of; an event dated on the as-of day is future). For churn
    this is 1 - prod(1 - churn_hazard) over the window: the true probability given the hidden
    path, for an account that is a customer at as_of. For expansion it is the chance of a first
    expansion while still a customer (churn competes: on each day the churn draw comes first):
    sum over days d of prod_{k<d} (1 - c_k)(1 - e_k) * (1 - c_d) * e_d. Days past the data have
    no truth rows and add nothing. Rows whose account the truth does not know get NaN.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 day, got {horizon}")
    column = f"{target}_hazard"
    if column not in truth.columns:
        raise ValueError(f"truth has no column {column!r}: target must be churn or expansion")
    missing = {"account_id", "as_of"} - set(entities.columns)
    if missing:
        raise ValueError(f"entities lack column(s) {', '.join(sorted(missing))}")

    codes, accounts = pd.factorize(truth["account_id"], sort=False)
    day0 = pd.Timestamp(truth["date"].min()).normalize()
    days = ((pd.to_datetime(truth["date"]) - day0) // pd.Timedelta(days=1)).to_numpy(np.int64)
    n_days = int(days.max()) + 1 if len(days) else 0
    churn = np.zeros((len(accounts), n_days))
    churn[codes, days] = np.clip(truth["churn_hazard"].to_numpy(np.float64), 0.0, 1.0 - 1e-12)
    # Cumulative log-survival per account: a window is a difference of two lookups.
    log_survival = np.zeros((len(accounts), n_days + 1))
    if target == "churn":
        log_survival[:, 1:] = np.cumsum(np.log1p(-churn), axis=1)
    else:
        expand = np.zeros((len(accounts), n_days))
        expand[codes, days] = np.clip(truth[column].to_numpy(np.float64), 0.0, 1.0 - 1e-12)
        log_survival[:, 1:] = np.cumsum(np.log1p(-churn) + np.log1p(-expand), axis=1)
        # First expansion on day d: survive both until d, then not churn and expand on d.
        incidence = np.zeros((len(accounts), n_days + 1))
        incidence[:, 1:] = np.cumsum(np.exp(log_survival[:, :-1]) * (1.0 - churn) * expand,
                                     axis=1)

    row = pd.Index(accounts).get_indexer(entities["account_id"])
    as_of = pd.to_datetime(entities["as_of"]).dt.normalize()
    first = ((as_of - day0) // pd.Timedelta(days=1)).to_numpy(np.int64)
    lo = np.clip(first, 0, n_days)
    hi = np.clip(first + horizon, 0, n_days)
    known = row >= 0
    r = np.where(known, row, 0)
    if target == "churn":
        p = 1.0 - np.exp(log_survival[r, hi] - log_survival[r, lo])
    else:
        p = (incidence[r, hi] - incidence[r, lo]) * np.exp(-log_survival[r, lo])
    return pd.Series(np.where(known, p, np.nan), index=entities.index,
                     name=f"oracle_{target}_{horizon}d")


def oracle_expansion_probability(truth: pd.DataFrame, entities: pd.DataFrame,
                                 horizon: int) -> pd.Series:
    """`oracle_probability` for expansion."""
    return oracle_probability(truth, entities, horizon, target="expansion")


def true_effect(world: World, horizon: int = 90) -> dict[str, float]:
    """The intervention's true effect on churn within `horizon` days of its start, for the
    treated accounts that were customers then (the average effect on the treated): the mean
    of the oracle churn probability with and without the treatment, from the truth's hazards."""
    if world.intervention is None:
        raise ValueError("the world has no intervention")
    iv = world.intervention
    start = pd.Timestamp(iv["start"].iloc[0])
    churned = world.tables["churn_events"]
    gone = set(churned.loc[pd.to_datetime(churned["churned_at"]) < start, "account_id"])
    created = world.tables["accounts"].set_index("account_id")["created_at"]
    rows = iv[iv["treated"] & ~iv["account_id"].isin(gone)
              & (pd.to_datetime(created.reindex(iv["account_id"]).to_numpy()) < start)]
    ents = pd.DataFrame({"account_id": rows["account_id"].to_numpy(), "as_of": start})
    p1 = oracle_probability(world.truth, ents, horizon)
    untreated = world.truth.drop(columns="churn_hazard").rename(
        columns={"untreated_churn_hazard": "churn_hazard"})
    p0 = oracle_probability(untreated, ents, horizon)
    return {"treated": float(len(rows)), "churn_treated": float(p1.mean()),
            "churn_untreated": float(p0.mean()), "effect": float((p1 - p0).mean())}
