"""The commercial tables of the synthetic world: subscriptions, invoices, churn_events and
expansion_events, rendered from the contracts, churns and expansions the latent process decided.

It decides no churn or expansion itself (that is `features.synth.latent`, which holds the hazards);
only how they show up in billing data: contract rows and their statuses, invoice schedules, and
payment behaviour (late or failed payments more likely when the hidden health is low).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from features.synth import params as P
from features.synth.accounts import Profiles
from features.synth.columns import (
    id_labels,
    nullable_timestamps,
    sigmoid,
    str_column,
    timestamps,
    work_seconds,
)
from features.synth.latent import CHURN_REASONS, Latent

NET_TERMS = 30


def subscription_rows(lat: Latent, p: Profiles) -> dict[str, np.ndarray]:
    """One row per contract: start and end days, arr, seats, status, auto_renew."""
    c = lat.contracts
    order = np.lexsort((c.day, c.account))
    acct, day = c.account[order], c.day[order]
    arr, seats = c.value[order], c.seats[order]  # type: ignore[index]
    first = np.ones(len(acct), dtype=bool)
    first[1:] = acct[1:] != acct[:-1]
    last = np.ones(len(acct), dtype=bool)
    last[:-1] = acct[1:] != acct[:-1]
    start = np.where(first, lat.contract_start[acct], day).astype(np.int64)
    successor = np.empty(len(acct), dtype=np.int64)
    successor[:-1] = start[1:]
    term = p.term[acct].astype(np.int64)
    churned = lat.churn_day[acct] < lat.days
    # The end date is the scheduled one even when the customer leaves early: a snapshot column
    # that moved with the churn would tell the future to any as-of date before it.
    end = np.where(last, start + term, successor)
    status = np.where(~last, 1, np.where(churned, 2, 0))  # codes into STATUSES
    return {"account": acct, "start": start, "end": end, "arr": arr, "seats": seats,
            "status": status, "auto_renew": p.auto_renew[acct], "term": term}


STATUSES = ("active", "expired", "cancelled", "trial")


def build_subscriptions(rows: dict[str, np.ndarray], ids: np.ndarray, start: date
                        ) -> pd.DataFrame:
    n = len(rows["account"])
    open_ended = rows["end"] < 0
    return pd.DataFrame({
        "account_id": str_column(rows["account"], ids),
        "subscription_id": str_column(np.arange(n), id_labels("S", n, 7)),
        "start_date": timestamps(start, rows["start"]),
        "end_date": nullable_timestamps(start, rows["end"], np.zeros(n), ~open_ended),
        "arr": rows["arr"].astype(np.float64),
        "seats": rows["seats"].astype(np.int64),
        "status": str_column(rows["status"], STATUSES),
        "auto_renew": rows["auto_renew"].astype(bool),
    })


def build_invoices(rows: dict[str, np.ndarray], lat: Latent, p: Profiles, ids: np.ndarray,
                   start: date, rng: np.random.Generator) -> pd.DataFrame:
    """Invoices issued inside the period: yearly for annual contracts (net 30, paid by
    transfer), monthly for monthly plans (card, due in a week, may fail)."""
    days = lat.days
    acct = rows["account"]
    monthly = rows["term"] == P.MONTH
    period = np.where(monthly, P.MONTH, 365).astype(np.int64)
    lo = np.maximum(rows["start"], lat.first_day[acct])
    hi = np.minimum(np.where(rows["end"] < 0, days, rows["end"]), np.minimum(
        lat.churn_day[acct], days))
    k_lo = np.maximum(0, -((rows["start"] - lo) // period))
    k_hi = np.maximum(0, -((rows["start"] - hi) // period))
    count = np.where(p.has_invoices[acct], np.maximum(0, k_hi - k_lo), 0)
    row = np.repeat(np.arange(len(acct)), count)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)
    issue = rows["start"][row] + (k_lo[row] + offset) * period[row]
    a = acct[row]
    by_month = monthly[row]
    amount = np.round(rows["arr"][row] * np.where(by_month, 1 / 12, 1.0), 2)
    due = issue + np.where(by_month, 7, NET_TERMS)
    x = lat.health[issue, a].astype(np.float64)
    m = len(row)

    # Cards fail more for unhealthy accounts; dunning recovers most failures of healthy ones
    # (paid late, status paid), the rest stay failed. Transfers arrive later, some never.
    declined = by_month & (rng.random(m) < sigmoid(-3.2 - 1.5 * x))
    recovered = declined & (rng.random(m) < sigmoid(1.0 + 1.5 * x))
    failed = declined & ~recovered
    lateness = rng.exponential(1.0, m) * 8.0 * np.exp(-1.3 * x)
    pay_day = np.where(by_month, issue + (rng.random(m) < 0.1),
                       due + np.round(rng.normal(-4.0, 5.0, m) + lateness))
    pay_day = np.where(recovered, issue + rng.integers(3, 15, size=m), pay_day)
    pay_day = np.maximum(pay_day, issue)
    never = ~by_month & (rng.random(m) < sigmoid(-4.0 - 1.5 * x))
    hour = np.asarray(P.REGION_UTC_HOUR)[p.region[a]]
    pay_seconds = work_seconds(rng, hour)
    paid = ~failed & ~never & (pay_day < days)
    status = np.where(failed, 2, np.where(paid, 0, 1))
    o = np.lexsort((issue, a))
    return pd.DataFrame({
        "account_id": str_column(a[o], ids),
        "invoice_id": str_column(np.arange(m), id_labels("INV", m, 8)),
        "issued_at": timestamps(start, issue[o]),
        "due_at": timestamps(start, due[o]),
        "paid_at": nullable_timestamps(start, pay_day[o], pay_seconds[o], paid[o]),
        "amount": amount[o],
        "status": str_column(status[o], ("paid", "open", "failed")),
    })


def build_churn_events(lat: Latent, ids: np.ndarray, start: date) -> pd.DataFrame:
    c = lat.churns
    order = np.lexsort((c.day, c.account))
    reason = c.value[order].astype(np.int64)
    return pd.DataFrame({
        "account_id": str_column(c.account[order], ids),
        "churned_at": timestamps(start, c.day[order]),
        "reason": str_column(np.maximum(reason, 0), CHURN_REASONS, valid=reason >= 0),
    })


def build_expansion_events(lat: Latent, p: Profiles, ids: np.ndarray, start: date,
                           rng: np.random.Generator) -> pd.DataFrame:
    e = lat.expansions
    order = np.lexsort((e.day, e.account))
    a = e.account[order]
    seconds = work_seconds(rng, np.asarray(P.REGION_UTC_HOUR)[p.region[a]])
    return pd.DataFrame({
        "account_id": str_column(a, ids),
        "ts": timestamps(start, e.day[order], seconds),
        "arr_delta": e.value[order].astype(np.float64),
    })

