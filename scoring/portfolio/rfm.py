"""RFM: recency (days since the last engagement), frequency (engagement per 30 days) and
monetary value (ARR), each scored 1-5 on the portfolio's quintiles, and the named segment of the
standard RFM map (Champions, Loyal, At Risk, Hibernating, ...).

Scores are relative to the accounts given (pass the active portfolio): an account in the most
recent fifth gets R 5, the most frequent fifth F 5, the largest contracts M 5. Ties share a
score (the average rank decides), so a tied value never lands in two quintiles. An account with
no activity on record counts as the least recent and least frequent; one without ARR as the
smallest. The segment reads R and FM (the mean of F and M rounded half up) against
`portfolio.rfm.segments`. Pure: a frame in, a frame out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.pipeline import ScoredFrame
from scoring.portfolio.inputs import column
from scoring.portfolio.settings import RfmConfig

OTHERS = "Others"
RFM_COLUMNS = ("account_id", "name", "recency_days", "frequency_30d", "monetary", "r", "f", "m",
               "fm", "rfm", "segment", "reason")


def quintile_scores(values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """1-5 by the value's place in the fifths of `values` (5: the best fifth)."""
    x = np.asarray(values, dtype=float)
    if not len(x):
        return np.zeros(0, dtype=np.int64)
    ranked = pd.Series(x if higher_is_better else -x).rank(pct=True, method="average")
    return np.clip(np.ceil(ranked.to_numpy() * 5), 1, 5).astype(np.int64)


def quintile_edges(values: np.ndarray) -> list[float]:
    """The 20/40/60/80th percentiles of `values`: the cuts between the quintiles."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    return [float(v) for v in np.quantile(x, [0.2, 0.4, 0.6, 0.8])] if len(x) else []


def segment_of(r: int, fm: int, cfg: RfmConfig) -> str:
    for name, recency, fm_scores in cfg.segments:
        if str(r) in recency and str(fm) in fm_scores:
            return name
    return OTHERS


def rfm_scores(frame: ScoredFrame, cfg: RfmConfig) -> pd.DataFrame:
    """R, F, M scores, the RFM code and the named segment of every account of `frame`."""
    recency = column(frame, cfg.recency_column)
    frequency = column(frame, cfg.frequency_column)
    monetary = column(frame, cfg.monetary_column)
    r = quintile_scores(np.where(np.isnan(recency), np.inf, recency), higher_is_better=False)
    f = quintile_scores(np.nan_to_num(frequency, nan=0.0))
    m = quintile_scores(np.nan_to_num(monetary, nan=0.0))
    fm = np.floor((f + m) / 2 + 0.5).astype(np.int64)
    names = frame.scores["name"].to_numpy() if "name" in frame.scores.columns \
        else np.full(len(frame), None, dtype=object)
    segments = [segment_of(int(a), int(b), cfg) for a, b in zip(r, fm, strict=True)]
    reasons = [_reason(seg, int(a), int(b), int(c), rec, fr, mo)
               for seg, a, b, c, rec, fr, mo
               in zip(segments, r, f, m, recency, frequency, monetary, strict=True)]
    return pd.DataFrame({
        "account_id": frame.account_ids, "name": names, "recency_days": recency,
        "frequency_30d": frequency, "monetary": monetary, "r": r, "f": f, "m": m, "fm": fm,
        "rfm": [f"{a}{b}{c}" for a, b, c in zip(r, f, m, strict=True)],
        "segment": segments, "reason": reasons}, columns=list(RFM_COLUMNS))


def _reason(segment: str, r: int, f: int, m: int, recency: float, frequency: float,
            monetary: float) -> str:
    seen = "no activity on record" if recency != recency else \
        f"last active {recency:.0f} days ago"
    often = "no activity in the last 30 days" if frequency != frequency or frequency == 0 else \
        f"active on {frequency:.0f} of the last 30 days"
    size = "no ARR" if monetary != monetary else f"ARR {monetary:,.0f}"
    return (f"{segment}: recency {r} of 5 ({seen}), frequency {f} of 5 ({often}), "
            f"monetary {m} of 5 ({size}), against the portfolio's quintiles")
