"""The table a batch scorer writes: one row per account with its rules score, the six
probabilities and the top factors of the longest churn and expansion models.

`partition_scores` turns rows of raw features (`features.build.side_by_side_features`, the
current date's and, under a `prev__` prefix, the trend date's) into that table through the
pipeline's own `scoring.pipeline.score_built`: what the Spark job (`scoring/spark_batch.py`)
runs on every partition, so a batch score is made by the same code as any other. Lists
(flags, missing dimensions, factors) are JSON text so the table is plain Parquet;
`scores_from_table` reads them back for the score store's write path. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.build import assemble_rows
from features.entities import ACTIVE, status_at
from features.event_types import EventType
from features.settings import FeatureConfig
from scoring.health.scoring import SCORE_COLUMNS
from scoring.pipeline import ScoredFrame, Scorer, longest_label, score_built

PREVIOUS = "prev__"
"""Prefix of the trend date's raw feature columns on a batch row."""
ACCOUNT_COLUMNS = ("account_id", "name", "created_at", "churned_at")
JSON_COLUMNS = ("missing", "flags")
TARGETS = ("churn", "expansion")
TEXT = {"account_id", "grade", "band", "colour", "status", "trend", "profile",
        "config_version", "account_status", "name", "probabilities_note", *JSON_COLUMNS,
        *(f"top_{t}_factors" for t in TARGETS)}
TIMES = {"as_of", "created_at", "churned_at"}


def table_columns(labels: Sequence[str]) -> list[tuple[str, str]]:
    """(column, kind) of the batch table: kind is `string`, `timestamp` or `double`."""
    names = [*SCORE_COLUMNS, "account_status", "name", "created_at", "churned_at",
             "probabilities_note", *labels, *(f"top_{t}_factors" for t in TARGETS)]
    return [(n, "string" if n in TEXT else "timestamp" if n in TIMES else "double")
            for n in names]


def _json(values: Any) -> Any:
    return None if values is None or (isinstance(values, float) and np.isnan(values)) \
        else json.dumps(values, default=str)


def batch_table(frame: ScoredFrame, scorer: Scorer, top_k: int) -> pd.DataFrame:
    """The batch rows of a scored frame, columns as `table_columns` says."""
    models = scorer.models
    labels = list(models.labels) if models is not None else []
    scores = frame.scores
    out = pd.DataFrame({c: scores[c].to_numpy() for c in scores.columns
                        if c not in JSON_COLUMNS})
    for col in JSON_COLUMNS:
        out[col] = [_json(v) for v in scores[col]]
    for label in labels:
        out[label] = frame.probabilities[label].to_numpy(dtype=float)
    active = scores["account_status"].to_numpy() == ACTIVE
    for target in TARGETS:
        out[f"top_{target}_factors"] = None
    if models is not None and top_k and active.any():
        matrices = models.matrices(frame.features[active].reset_index(drop=True))
        for target in TARGETS:
            label = longest_label(labels, target)
            if label is not None:
                factors = np.full(len(out), None, dtype=object)
                factors[active] = [json.dumps(f) for f in
                                   models.top_factors(matrices, label, top_k)]
                out[f"top_{target}_factors"] = factors
    return out[[c for c, _ in table_columns(labels)]]


def partition_scores(rows: pd.DataFrame, when: pd.Timestamp, scorer: Scorer,
                     connected: frozenset[str], cfg: FeatureConfig,
                     types: tuple[EventType, ...], top_k: int) -> pd.DataFrame:
    """The batch rows of accounts given as raw feature rows (each active at `when`): the
    current date's columns, the trend date's under `PREVIOUS` (NULL `prev___eid`: no previous
    score, the account was not yet a customer then), and ACCOUNT_COLUMNS."""
    rows = rows.reset_index(drop=True)
    accounts = pd.DataFrame({
        "account_id": rows["account_id"].astype(str).to_numpy(),
        "name": rows["name"].to_numpy(),
        **{c: pd.to_datetime(rows[c]).to_numpy().astype("datetime64[us]")
           for c in ("created_at", "churned_at")}})
    status = status_at(accounts["created_at"].to_numpy(), accounts["churned_at"].to_numpy(),
                       np.datetime64(when.to_datetime64(), "us"))
    feature_cols = [c for c in rows.columns if not c.startswith(PREVIOUS)
                    and c not in ACCOUNT_COLUMNS or c == "account_id"]
    current = assemble_rows(rows[feature_cols], cfg, types)
    had = rows[f"{PREVIOUS}_eid"].notna().to_numpy()
    prev = rows.loc[had, [f"{PREVIOUS}{c}" for c in feature_cols if c != "account_id"]]
    prev.columns = [c[len(PREVIOUS):] for c in prev.columns]
    prev.insert(0, "account_id", accounts["account_id"].to_numpy()[had])
    older = assemble_rows(prev.reset_index(drop=True), cfg, types)
    empty = pd.DataFrame({"account_id": pd.Series([], dtype=str),
                          "as_of": pd.Series([], dtype="datetime64[us]"),
                          "score": pd.Series([], dtype=float)})
    frame = score_built(accounts, status, current, older, empty, when, scorer, connected)
    return batch_table(frame, scorer, top_k)


def scores_from_table(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """A batch table as the score store's write path reads scores (`SCORE_COLUMNS`, lists as
    lists) and the longest churn model's probabilities by account."""
    scores = table.copy()
    for col in JSON_COLUMNS:
        scores[col] = [json.loads(v) if isinstance(v, str) else [] for v in scores[col]]
    scores["as_of"] = pd.to_datetime(scores["as_of"]).astype("datetime64[us]")
    label = longest_label([c for c in table.columns if c not in TEXT], "churn")
    churn = {} if label is None else {
        str(a): float(p) for a, p in zip(table["account_id"], table[label], strict=True)
        if pd.notna(p)}
    return scores, churn
