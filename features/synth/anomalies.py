"""Labelled usage anomalies injected into a generated world (opt-in): what lets a usage anomaly
detector's precision and recall be measured.

An injected anomaly is a span of days of one account whose usage is changed after it was drawn:
a drop keeps only a share of the account's user-days (events and active users fall together),
a spike repeats the account's events (events rise, the same users). Each one is labelled in the
truth (`truth_anomalies.csv`: account, first and last day, kind, metrics it moves, size). They
happen on top of the world's own dynamics (health drifts, usage cuts, outages, holidays), which
stay unlabelled in this file; the shocks file (`truth_events.csv`) has those.

Every label is an observable deviation, whatever the account's volume. The account's weekly
volume is its events per week over the `baseline_days` before the anomaly (what a detector
knows of it). A drop is injected only where at least `drop_min_weekly` events a week can go
missing, and the fewer there are, the less of them it keeps (up to `drop_keep[1]` from
`drop_full_weekly` a week, proportionally less below): a drop to near zero of an account
expecting ten events is a drop, "80% of three" is two events and noise. An account below
`drop_min_weekly` gets a spike instead. A spike multiplies the span's events by its drawn
factor, raised where needed so it adds at least `spike_min_extra` events per week of the span
(capped at `spike_max_factor`): tripling one event is noise, thirty in a week of one is not.
A span without any usage of the account cannot be changed and gets no label. The `size`
column is the share kept (drop) or the factor applied (spike).

Draws come from a generator of their own (the caller seeds it apart from the world's stages), so
a world generated without injection is unchanged, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

DROP, SPIKE = "drop", "spike"
METRICS_OF = {DROP: "events;active_users", SPIKE: "events"}
LABEL_COLUMNS = ("account_id", "start", "end", "kind", "metrics", "size")


@dataclass(frozen=True)
class AnomalyInjection:
    """How many anomalies to inject, of which kinds and sizes."""

    per_account_year: float = 1.5
    """Mean anomalies per account and year of its usage history (after the warm-up)."""
    drop_share: float = 0.5
    """Share of the anomalies that are drops (the rest are spikes)."""
    drop_keep: tuple[float, float] = (0.0, 0.2)
    """A drop keeps this share of the account's user-days, drawn uniformly."""
    spike_factor: tuple[float, float] = (3.0, 5.0)
    """A spike multiplies the account's events by this, drawn uniformly."""
    duration: tuple[int, int] = (7, 14)
    """Days an anomaly lasts, drawn uniformly (inclusive)."""
    warmup_days: int = 63
    """No anomaly in an account's first days of usage: a detector needs a pattern first."""
    gap_days: int = 63
    """Days between the end of one anomaly of an account and the start of its next."""
    baseline_days: int = 28
    """Days before an anomaly its account's weekly volume is measured on."""
    drop_min_weekly: float = 10.0
    """Fewer events a week than this and there is too little to drop: a spike is injected."""
    drop_full_weekly: float = 30.0
    """From this many events a week a drop keeps up to `drop_keep[1]`; below, proportionally
    less (a drop in a small account must go close to zero to be one)."""
    spike_min_extra: float = 20.0
    """A spike adds at least this many events per week of its span."""
    spike_max_factor: float = 100.0
    """The most a spike multiplies an account's events by."""

    def __post_init__(self) -> None:
        if self.per_account_year < 0 or not 0 <= self.drop_share <= 1:
            raise ValueError("anomalies: per_account_year >= 0 and drop_share within 0-1")
        if not 0 <= self.drop_keep[0] <= self.drop_keep[1] < 1:
            raise ValueError("anomalies: drop_keep must be a range within 0-1")
        if not 1 < self.spike_factor[0] <= self.spike_factor[1]:
            raise ValueError("anomalies: spike_factor must be a range above 1")
        if not 1 <= self.duration[0] <= self.duration[1]:
            raise ValueError("anomalies: duration must be a range of at least 1 day")
        if not 0 < self.drop_min_weekly <= self.drop_full_weekly or self.baseline_days < 7:
            raise ValueError("anomalies: 0 < drop_min_weekly <= drop_full_weekly and "
                             "baseline_days >= 7")
        if self.spike_min_extra < 0 or self.spike_max_factor < self.spike_factor[1]:
            raise ValueError("anomalies: spike_min_extra >= 0 and spike_max_factor at least "
                             "the top of spike_factor")


def plan_anomalies(usage: pd.DataFrame, start: date, cfg: AnomalyInjection,
                   rng: np.random.Generator) -> pd.DataFrame:
    """Where the anomalies go: per account, spans inside its usage history (LABEL_COLUMNS,
    with `start`/`end` as day indices from `start` and `size` the keep share or factor, sized
    on the account's volume as the module says)."""
    day0 = np.datetime64(start, "D")
    day = (usage["ts"].to_numpy().astype("datetime64[D]") - day0).astype(np.int64)
    frame = pd.DataFrame({"account_id": usage["account_id"].to_numpy(), "day": day})
    span = frame.groupby("account_id", sort=True)["day"].agg(["min", "max"])
    code = span.index.get_indexer(frame["account_id"])
    width = int(day.max()) + 2 if len(day) else 1
    # Cumulative daily events per account: the events of any span in two look-ups.
    daily = np.zeros((len(span), width), dtype=np.int64)
    np.add.at(daily, (code, day), 1)
    cum = np.concatenate([np.zeros((len(span), 1), dtype=np.int64), daily.cumsum(axis=1)],
                         axis=1)
    rows = []
    for a, (account, first, last) in enumerate(zip(span.index, span["min"], span["max"],
                                                   strict=True)):
        lo, hi = int(first) + cfg.warmup_days, int(last) - cfg.duration[1]
        if hi <= lo:
            continue
        count = rng.poisson(cfg.per_account_year * (hi - lo) / 365.0)
        starts = np.sort(rng.integers(lo, hi + 1, size=count))
        free_from = lo
        for s in starts:
            length = int(rng.integers(cfg.duration[0], cfg.duration[1] + 1))
            drop = bool(rng.random() < cfg.drop_share)
            share = rng.random()
            if s < free_from:
                continue
            s = int(s)
            weekly = (cum[a, s] - cum[a, max(s - cfg.baseline_days, 0)]) * 7.0 \
                / min(cfg.baseline_days, s)
            inside = int(cum[a, s + length] - cum[a, s])
            if not inside:
                continue
            if drop and weekly >= cfg.drop_min_weekly:
                top = cfg.drop_keep[1] * min(1.0, weekly / cfg.drop_full_weekly)
                size = cfg.drop_keep[0] + share * max(top - cfg.drop_keep[0], 0.0)
                kind = DROP
            else:
                factor = cfg.spike_factor[0] + share * (cfg.spike_factor[1] - cfg.spike_factor[0])
                needed = 1.0 + cfg.spike_min_extra * length / 7.0 / inside
                size, kind = min(max(factor, needed), cfg.spike_max_factor), SPIKE
            rows.append((str(account), s, s + length - 1, kind, METRICS_OF[kind],
                         round(float(size), 3)))
            free_from = s + length + cfg.gap_days
    return pd.DataFrame(rows, columns=list(LABEL_COLUMNS))


def inject_anomalies(usage: pd.DataFrame, start: date, cfg: AnomalyInjection,
                     rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(usage with the anomalies applied, their labels with dates). Row order is kept: a
    spike's repeated rows follow the row they repeat."""
    plan = plan_anomalies(usage, start, cfg, rng)
    day0 = np.datetime64(start, "D")
    day = (usage["ts"].to_numpy().astype("datetime64[D]") - day0).astype(np.int64)
    accounts = pd.Index(plan["account_id"].unique())
    code = accounts.get_indexer(usage["account_id"].to_numpy())
    repeat = np.ones(len(usage), dtype=np.int64)
    for a, s, e, kind, size in zip(accounts.get_indexer(plan["account_id"]), plan["start"],
                                   plan["end"], plan["kind"], plan["size"], strict=True):
        hit = np.flatnonzero((code == a) & (day >= s) & (day <= e))
        if not len(hit):
            continue
        if kind == DROP:
            # Whole user-days go: a user who is kept keeps all of that day's events.
            key = pd.factorize(pd.Series(usage["user_id"].to_numpy()[hit]).astype(str)
                               + ":" + pd.Series(day[hit]).astype(str))[0]
            kept = rng.random(key.max() + 1) < size
            repeat[hit] = kept[key].astype(np.int64)
        else:
            whole = int(np.floor(size))
            repeat[hit] = whole + (rng.random(len(hit)) < size - whole)
    out = usage.take(np.repeat(np.arange(len(usage)), repeat)).reset_index(drop=True)
    labels = plan.assign(
        start=pd.to_datetime(day0 + plan["start"].to_numpy().astype("timedelta64[D]")),
        end=pd.to_datetime(day0 + plan["end"].to_numpy().astype("timedelta64[D]")))
    return out, labels
