"""The synthetic B2B SaaS world: generate it, write it in the contract format, and score the
oracle from its ground truth.

A world is the contract tables plus the truth the tables are noisy views of: each account's
hidden daily health, the exact daily churn and expansion hazards the generator drew from (so
`path_probability` is the true event probability given the hidden path), the state each day's
data came from (what `oracle_probability` reads as of a date: the best a model of the data can
aim at), and the shocks (champion left, outage, usage cut, budget cut, new use case) with their
dates. This module orchestrates the
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
from features.synth import params as P
from features.synth.accounts import account_ids, build_accounts, draw_profiles
from features.synth.anomalies import AnomalyInjection, inject_anomalies
from features.synth.columns import str_column, timestamps
from features.synth.commercial import (
    build_churn_events,
    build_expansion_events,
    build_invoices,
    build_subscriptions,
    subscription_rows,
)
from features.synth.intent_estimate import filtered_intent, observed_counts
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
VOICE_TABLES = ("tickets", "surveys", "touchpoints")
"""The tables an events-only world leaves out (not connected): only product events, billing and
the commercial outcomes."""
STATE_COLUMNS = ("term", "days_to_end", "end_logit", "midterm_hazard", "event_logit",
                 "event_logit_seen", "event_logit_var")
"""Truth columns `oracle_probability` reads (see `World.truth`)."""
STATE_ESTIMATE_COLUMNS = ("end_logit", "end_logit_var", "log_midterm", "log_midterm_var",
                          "log_expansion")
"""Columns of the `state_estimate` `oracle_probability` may read instead of the latent state."""
ANOMALIES_FILE = "truth_anomalies.csv"
ANOMALY_SEED = 7919
"""Mixed into the seed of the injected anomalies' own generator (apart from every stage's)."""


@dataclass
class World:
    tables: dict[str, pd.DataFrame]
    """The contract tables, columns exactly as in features/contract/tables.py: all nine, or
    without `VOICE_TABLES` in an events-only world."""
    truth: pd.DataFrame
    """account_id, date, churn_hazard, expansion_hazard, health, then `STATE_COLUMNS`: one row
    per account and day from its first day in the data to the last day of the period.
    churn_hazard is the probability of a churn dated that day for a customer; health is the
    latent z-scale (0 typical, higher healthier). Rows go on after a churn with the values the
    account would have had: the hidden path never depends on the churn draw, which is what makes
    `path_probability` exact (and calibrated) for any window.

    The state columns are that day's state in the terms of the churn decision: term (days; 30
    is monthly), days_to_end (to the next scheduled contract end, 0 on it), end_logit (log-odds
    of leaving were a contract end that day, from health, shocks, plan and renewal count),
    midterm_hazard (daily early termination from the same), both without the hidden churn risk
    and the intent; event_logit (log-odds the declared event types' latent intent adds to a
    decision that day: the intent of `params.EVENT_INTENT_LEAD` days before; 0 without event
    types); event_logit_seen and event_logit_var (the posterior mean and variance of the
    intent's log-odds as of that day given the usage table's event counts up to it,
    `features.synth.intent_estimate`: what the data shows of the intent, aligned to the day the
    counts end, not to a decision)."""
    shocks: pd.DataFrame
    """account_id, date, kind: the hidden events (champion_left, outage, usage_cut, budget_cut,
    new_use_case)."""
    anomalies: pd.DataFrame | None = None
    """account_id, start, end (inclusive), kind (drop, spike), metrics (`;`-joined), size: the
    usage anomalies injected on request (`features.synth.anomalies`); None when none were."""
    intervention: pd.DataFrame | None = None
    """With an opt-in `Intervention`: account_id, start (the as-of date its effect is measured
    from), treated; None without one. The truth then has `untreated_churn_hazard` too."""


def generate_world(n_accounts: int, start: date, days: int, seed: int,
                   progress: Progress | None = None,
                   event_types: Sequence[EventTypeEffect] = (),
                   billing: str = "mixed", events_only: bool = False,
                   anomalies: AnomalyInjection | None = None,
                   intervention: Intervention | None = None) -> World:
    """Simulate `n_accounts` accounts over the `days` days from `start` (exclusive end).

    `event_types`: customer event types with known churn effects (`EventTypeEffect`), added to
    the product's own events. Their propensities come from a generator of their own, so the
    rest of the world draws what it draws without them; an account emits them by its intent of
    the day and its churn decisions act on the intent of `params.EVENT_INTENT_LEAD` days before,
    so the events show a churn coming. `billing`: one of `params.BILLING` (the segments' own
    mix of monthly and yearly terms, all monthly, or none monthly). `events_only`: leave out
    tickets, surveys and touchpoints (`VOICE_TABLES`), as a customer that connects only its
    product events and billing.

    `anomalies`: labelled usage anomalies to inject (`AnomalyInjection`), off by default; their
    draws come from a generator of their own, so the world is otherwise the same.

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
    profiles = draw_profiles(n_accounts, days, rng["accounts"], billing=billing)
    ids = account_ids(n_accounts)
    lead = P.EVENT_INTENT_LEAD
    # The intent path starts `lead` days early: day d's decisions act on row d (the intent of
    # day d - lead), day d's events show row d + lead (the intent of day d).
    intent = event_propensity(event_types, n_accounts, days + lead,
                              np.random.default_rng([seed, len(rng)]))
    propensity = intent[lead:]
    event_logit = (np.einsum("k,dkn->dn", [t.churn_effect for t in event_types],
                             recent_intent(intent)[:days]) if event_types else None)
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
    seen_logit, seen_var = _intent_seen(usage, event_types, ids, start, days)
    labels = None
    if anomalies is not None:
        usage, labels = inject_anomalies(usage, start, anomalies,
                                         np.random.default_rng([seed, ANOMALY_SEED]))
    report("billing", 0.8)
    rows = subscription_rows(latent, profiles)
    tables: dict[str, pd.DataFrame] = {
        "accounts": build_accounts(profiles, ids, start),
        "subscriptions": build_subscriptions(rows, ids, start),
        "usage_events": usage,
    }
    report("support", 0.84)
    if not events_only:
        tables["tickets"], rated = build_tickets(latent, profiles, ids, start, rng["tickets"])
        tables["surveys"] = build_surveys(latent, profiles, rated, ids, start, rng["surveys"])
        tables["touchpoints"] = build_touchpoints(latent, profiles, ids, start,
                                                  rng["touchpoints"])
    tables["invoices"] = build_invoices(rows, latent, profiles, ids, start, rng["commercial"])
    tables["churn_events"] = build_churn_events(latent, ids, start)
    tables["expansion_events"] = build_expansion_events(latent, profiles, ids, start,
                                                        rng["commercial"])
    tables = {t.name: _contract_order(tables[t.name], t.column_names) for t in TABLES
              if t.name in tables}
    report("truth", 0.94)
    truth = _truth_frame(latent, ids, start, profiles.term, seen_logit, seen_var)
    shocks = _shock_frame(latent, ids, start)
    treated = None
    if intervention is not None and latent.treated is not None:
        truth["untreated_churn_hazard"] = _truth_frame(
            latent, ids, start, profiles.term, seen_logit, seen_var,
            latent.untreated_churn_hazard)["churn_hazard"].to_numpy()
        treated = pd.DataFrame({
            "account_id": ids,
            "start": pd.Timestamp(start) + pd.Timedelta(days=intervention.start_day),
            "treated": latent.treated})
    report("done", 1.0)
    log.info("generated %d accounts x %d days: %s", n_accounts, days,
             ", ".join(f"{k}={len(v)}" for k, v in tables.items()))
    return World(tables=tables, truth=truth, shocks=shocks, anomalies=labels,
                 intervention=treated)


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


def recent_intent(intent: np.ndarray) -> np.ndarray:
    """The intent a decision weighs: the exponential average over the last
    `params.EVENT_INTENT_MEMORY` days (day-major, as `event_propensity`). A customer decides on
    what it has been doing for weeks, not on one day's mood, which is also what counts of its
    events over weeks can show."""
    out = np.empty_like(intent)
    if not len(intent):
        return out
    out[0] = intent[0]
    keep = np.exp(-1.0 / P.EVENT_INTENT_MEMORY) if P.EVENT_INTENT_MEMORY else 0.0
    for d in range(1, len(intent)):
        out[d] = keep * out[d - 1] + (1.0 - keep) * intent[d]
    return out


def _intent_seen(usage: pd.DataFrame, event_types: Sequence[EventTypeEffect], ids: np.ndarray,
                 start: date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """(days, accounts) the churn log-odds the declared types' intent adds, as the usage
    table shows it up to each day (`intent_estimate`): the posterior mean and variance of
    sum(churn_effect * decision intent). Zeros without event types."""
    n = len(ids)
    if not event_types:
        return np.zeros((days, n)), np.zeros((days, n))
    counts, active = observed_counts(usage, event_types, ids, start, days)
    mean, var = filtered_intent(counts, active, event_types)
    effect = np.array([t.churn_effect for t in event_types])
    return (np.einsum("k,dkn->dn", effect, mean), np.einsum("k,dkn->dn", effect**2, var))


def _contract_order(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Contract columns in contract order, then any custom attributes (accounts only)."""
    extra = [c for c in frame.columns if c not in columns]
    return frame[list(columns) + extra]


def _truth_frame(lat: Latent, ids: np.ndarray, start: date, term: np.ndarray,
                 seen_logit: np.ndarray, seen_var: np.ndarray,
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
        "term": term[a].astype(np.int32),
        "days_to_end": lat.days_to_end[day, a],
        "end_logit": lat.end_logit[day, a],
        "midterm_hazard": lat.midterm_hazard[day, a],
        "event_logit": lat.event_logit[day, a],
        "event_logit_seen": seen_logit[day, a],
        "event_logit_var": seen_var[day, a],
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
    """Write one `<table>.<fmt>` per contract table, `truth.parquet` and `truth_events.csv`
    (and `truth_anomalies.csv` for a world with injected anomalies).

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
    if world.anomalies is not None:
        items.append(("truth_anomalies", world.anomalies, "csv"))
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


def _truth_grid(truth: pd.DataFrame) -> tuple[np.ndarray, pd.Index, pd.Timestamp, np.ndarray,
                                              int]:
    """The truth's rows on an (account, day) grid: each row's account code, the accounts, the
    first day, each row's day number and the number of days."""
    codes, accounts = pd.factorize(truth["account_id"], sort=False)
    day0 = pd.Timestamp(truth["date"].min()).normalize()
    days = ((pd.to_datetime(truth["date"]) - day0) // pd.Timedelta(days=1)).to_numpy(np.int64)
    return codes, pd.Index(accounts), day0, days, int(days.max()) + 1 if len(days) else 0


def _entity_days(entities: pd.DataFrame, accounts: pd.Index, day0: pd.Timestamp
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per entity row: whether the truth knows its account, the account's code (0 where not)
    and the as-of date's day number on the truth's grid."""
    row = accounts.get_indexer(entities["account_id"])
    as_of = pd.to_datetime(entities["as_of"]).dt.normalize()
    return (row >= 0, np.where(row >= 0, row, 0),
            ((as_of - day0) // pd.Timedelta(days=1)).to_numpy(np.int64))


def path_probability(truth: pd.DataFrame, entities: pd.DataFrame, horizon: int,
                     target: Target = "churn") -> pd.Series:
    """P(event within `horizon` days of as_of) per entity row, from the true daily hazards of
    the hidden path: what a forecaster who saw the future state (health, shocks, intent, the
    hidden churn risk) would say. It is the probability the draws were made with (the sum over
    accounts matches the count of events), not a bound a model of the data can reach.

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

    codes, accounts, day0, days, n_days = _truth_grid(truth)
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

    known, r, first = _entity_days(entities, accounts, day0)
    lo = np.clip(first, 0, n_days)
    hi = np.clip(first + horizon, 0, n_days)
    if target == "churn":
        p = 1.0 - np.exp(log_survival[r, hi] - log_survival[r, lo])
    else:
        p = (incidence[r, hi] - incidence[r, lo]) * np.exp(-log_survival[r, lo])
    return pd.Series(np.where(known, p, np.nan), index=entities.index,
                     name=f"path_{target}_{horizon}d")


def oracle_probability(truth: pd.DataFrame, entities: pd.DataFrame, horizon: int,
                       target: Target = "churn", intent: str = "seen",
                       state_estimate: pd.DataFrame | None = None) -> pd.Series:
    """P(event within `horizon` days of as_of) per entity row, as the state the data came from
    tells it: the reference a model of the data is measured against.

    What it reads, for each row, on s = the last day before as_of (the day whose state made the
    latest rows a feature sees), and why:
    - the contract schedule and term (`term`, `days_to_end`): the subscriptions table shows
      them;
    - the churn log-odds of that day's health, shocks, plan and renewal count (`end_logit`,
      `midterm_hazard`) and its expansion hazard, held at their value on s for the whole window
      (their drift and new shocks are in no data). Usage, tickets, surveys and touchpoints are
      noisy views of them: with `state_estimate` (one row per entity,
      `STATE_ESTIMATE_COLUMNS`) the oracle reads them as that estimate gives them, its error
      variance averaged out as the hidden risk is (`training.oracle.estimate_state`: what the
      data shows of them); without it, the latent values, better informed than any model of
      the data;
    - the event types' intent only as the usage table shows it (`event_logit_seen`,
      `event_logit_var`, `features.synth.intent_estimate`: the filtered posterior given the
      event counts up to a day, not the latent intent). A decision on day D weighs the intent
      of D - `params.EVENT_INTENT_LEAD`: its estimate from the counts up to that day, or up to
      s when that is later (held after s);
    - the hidden churn risk (`params.HIDDEN_RISK_SD`) and the intent's posterior spread are in
      no table: averaged out, not read.
    Each day of the window [as_of, as_of + horizon) then has the hazard that state gives (a
    contract end's log-odds on a scheduled end, the early-termination rate between), and churn
    is 1 - their product of survivals; expansion is a first expansion at s's expansion hazard
    with churn competing, as in `path_probability`. Days past the data add nothing. Rows whose
    account the truth does not know get NaN. `intent="latent"` reads the latent intent instead
    (`event_logit`, known up to s + the lead): what the counts lose; so does a truth without
    the seen columns. A truth without the other state columns gets `path_probability`.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 day, got {horizon}")
    seen_columns = ("event_logit_seen", "event_logit_var")
    if intent == "seen" and not set(seen_columns) <= set(truth.columns):
        log.warning("truth has no %s: the oracle reads the latent intent instead",
                    ", ".join(seen_columns))
        intent = "latent"
    missing_state = [c for c in STATE_COLUMNS if c not in truth.columns and c not in seen_columns]
    if missing_state:
        log.warning("truth has no %s: the oracle reads the hidden path instead",
                    ", ".join(missing_state))
        return path_probability(truth, entities, horizon, target).rename(
            f"oracle_{target}_{horizon}d")
    if target not in ("churn", "expansion"):
        raise ValueError(f"target must be churn or expansion, got {target!r}")
    missing = {"account_id", "as_of"} - set(entities.columns)
    if missing:
        raise ValueError(f"entities lack column(s) {', '.join(sorted(missing))}")

    codes, accounts, day0, days, n_days = _truth_grid(truth)
    # Truth row of (account, day), -1 where the account has no row that day.
    pos = np.full((len(accounts), n_days), -1, dtype=np.int64)
    pos[codes, days] = np.arange(len(truth))
    first_day = np.where(pos >= 0, np.arange(n_days)[None, :], n_days).min(axis=1)

    def col(name: str) -> np.ndarray:
        return truth[name].to_numpy(np.float64)

    if intent not in ("seen", "latent"):
        raise ValueError(f"intent must be seen or latent, got {intent!r}")
    end_logit, midterm = col("end_logit"), col("midterm_hazard")
    if intent == "seen":
        intent_mean, intent_var = col("event_logit_seen"), col("event_logit_var")
    else:
        intent_mean, intent_var = col("event_logit"), np.zeros(len(truth))
    expansion = np.clip(col("expansion_hazard"), 0.0, 1.0 - 1e-12)
    to_end, term = col("days_to_end").astype(np.int64), col("term").astype(np.int64)

    known, r, t = _entity_days(entities, accounts, day0)
    s = np.clip(t - 1, first_day[r], max(n_days - 1, 0))
    state = pos[r, s]
    state = np.where(state >= 0, state, 0)
    end_row, mid_row, e = end_logit[state], midterm[state], expansion[state]
    end_var, mid_var = np.zeros(len(r)), np.zeros(len(r))
    if state_estimate is not None:
        end_row, end_var, mid_row, mid_var, e = _estimated_state(state_estimate, end_row,
                                                                 mid_row, e)
    end0 = s + to_end[state]
    every = np.maximum(term[state], 1)
    lead = P.EVENT_INTENT_LEAD
    log_survival = np.zeros(len(r))
    incidence = np.zeros(len(r))
    for k in range(horizon):
        d = t + k
        inside = known & (d >= 0) & (d < n_days)
        if not inside.any():
            continue
        if intent == "seen":
            # The decision on d weighs the intent of d - lead: as the counts up to then show
            # it, or up to s (the last day of data) when that is later.
            shown = pos[r, np.clip(np.minimum(d - lead, s), first_day[r], n_days - 1)]
        else:
            shown = pos[r, np.clip(np.minimum(d, s + lead), 0, n_days - 1)]
        shown = np.where(shown >= 0, shown, state)
        mu, var = intent_mean[shown], intent_var[shown]
        # What no data shows averaged out (the hidden risk, the intent's posterior spread):
        # E[sigmoid(x + sd Z)] ~ sigmoid(x / sqrt(1 + pi sd^2 / 8)) (the probit match),
        # E[exp(sd Z)] = exp(sd^2 / 2).
        unseen = P.HIDDEN_RISK_SD**2 + var
        at_end = (d >= end0) & ((d - end0) % every == 0)
        h = np.where(at_end, 1.0 / (1.0 + np.exp(-(end_row + mu) / np.sqrt(
                         1.0 + np.pi * (unseen + end_var) / 8.0))),
                     np.minimum(mid_row * np.exp(mu + (unseen + mid_var) / 2.0), 0.05))
        h = np.where(inside, np.clip(h, 0.0, 1.0 - 1e-12), 0.0)
        if target == "expansion":
            ek = np.where(inside, e, 0.0)
            incidence += np.exp(log_survival) * (1.0 - h) * ek
            log_survival += np.log1p(-h) + np.log1p(-ek)
        else:
            log_survival += np.log1p(-h)
    p = 1.0 - np.exp(log_survival) if target == "churn" else incidence
    return pd.Series(np.where(known, p, np.nan), index=entities.index,
                     name=f"oracle_{target}_{horizon}d")


def _estimated_state(estimate: pd.DataFrame, end_row: np.ndarray, mid_row: np.ndarray,
                     expansion_row: np.ndarray) -> tuple[np.ndarray, ...]:
    """The state of each entity row as `estimate` gives it (`STATE_ESTIMATE_COLUMNS`, log
    scale for the two hazards; a variance for each churn part, averaged out as the hidden risk
    is): (end_logit, its variance, midterm hazard, its log variance, expansion hazard). Where
    the estimate is missing, and for the midterm hazard of a plan that has none (monthly), the
    latent value stays."""
    def take(name: str) -> np.ndarray:
        return estimate[name].to_numpy(np.float64)
    end, mid, grow = take("end_logit"), take("log_midterm"), take("log_expansion")
    has_end, has_mid = np.isfinite(end), np.isfinite(mid) & (mid_row > 0)
    return (np.where(has_end, end, end_row), np.where(has_end, take("end_logit_var"), 0.0),
            np.where(has_mid, np.exp(mid), mid_row),
            np.where(has_mid, take("log_midterm_var"), 0.0),
            np.where(np.isfinite(grow), np.clip(np.exp(grow), 0.0, 1.0 - 1e-12), expansion_row))


def oracle_expansion_probability(truth: pd.DataFrame, entities: pd.DataFrame,
                                 horizon: int) -> pd.Series:
    """`oracle_probability` for expansion."""
    return oracle_probability(truth, entities, horizon, target="expansion")


def true_effect(world: World, horizon: int = 90) -> dict[str, float]:
    """The intervention's true effect on churn within `horizon` days of its start, for the
    treated accounts that were customers then (the average effect on the treated): the mean
    of the churn probability the draws were made with (`path_probability`, the hidden path's
    hazards) with and without the treatment."""
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
    p1 = path_probability(world.truth, ents, horizon)
    untreated = world.truth.drop(columns="churn_hazard").rename(
        columns={"untreated_churn_hazard": "churn_hazard"})
    p0 = path_probability(untreated, ents, horizon)
    return {"treated": float(len(rows)), "churn_treated": float(p1.mean()),
            "churn_untreated": float(p0.mean()), "effect": float((p1 - p0).mean())}
