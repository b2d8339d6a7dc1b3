"""The health summary: one account's score, flags, factors and inputs as Markdown.

Owns the fixed Markdown shape the CLI prints and the service returns:

    ## Health: <account name>
    **Score:** <0-100> (<band>, <grade>) — <one-line interpretation>
    ### Risk Flags            (or "No risk flags.")
    ### Factors               **Positive:** / **Negative:** / **Missing data:**
    ### Inputs Used           per source: the features used, or "Not connected"

Factors are the features whose 0-100 score pulls the composite up or down most (by their share of
the composite's weight); every word comes from wording.yaml. Pure: it reads one scored row and the
features row it came from and computes nothing the scoring did not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.registry import DIMENSION_SOURCES, FEATURES_BY_NAME
from scoring.health.composite import displayed
from scoring.health.dimensions import score_features
from scoring.health.profiles import REGISTRY_DIMENSION, Profile, Rules
from scoring.health.wording import Wording, fill, load_wording

# Sources in the order a CSM thinks of them; accounts last (it decides the profile).
SOURCE_ORDER: tuple[str, ...] = (
    "usage_events", "tickets", "surveys", "touchpoints", "subscriptions", "invoices", "accounts",
)


def _as_list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def factor_table(
    features_row: Mapping[str, Any], connected: frozenset[str], profile: Profile
) -> pd.DataFrame:
    """Per scored feature: dimension, value, 0-100 score and its share of the composite weight
    (0 when it has no data)."""
    frame = pd.DataFrame([dict(features_row)])
    per_dim = score_features(frame, connected, profile)
    rows = []
    for dim, feats in per_dim.items():
        for name, s in feats.items():
            rows.append({"dimension": dim, "feature": name, "value": _num(frame[name].iloc[0]),
                         "score": float(s[0]),
                         "weight": profile.normalisations[dim][name].weight})  # type: ignore[index]
    table = pd.DataFrame(rows)
    have = ~table["score"].isna()
    feat_den = table[have].groupby("dimension")["weight"].sum()
    dim_w = {d: profile.weight(d) for d in per_dim}
    avail_dims = [d for d in per_dim if d in feat_den.index and feat_den[d] > 0]
    dim_den = sum(dim_w[d] for d in avail_dims)
    counted = have & table["dimension"].isin(avail_dims) & (dim_den > 0)
    dim_share = table["dimension"].map(lambda d: dim_w[d] / dim_den if dim_den > 0 else 0.0)
    feat_share = table["weight"] / table["dimension"].map(feat_den).fillna(1.0)
    table["share"] = np.where(counted, dim_share * feat_share, 0.0)
    return table


def _factor_lines(table: pd.DataFrame, wording: Wording, positive: bool, top: int,
                  threshold: float) -> list[str]:
    sel = table[(table["share"] > 0)
                & ((table["score"] >= threshold) if positive else (table["score"] <= threshold))]
    if sel.empty:
        return []
    impact = (sel["score"] - 50.0) * sel["share"] * (1 if positive else -1)
    sel = sel.assign(impact=impact).sort_values(["impact", "feature"], ascending=[False, True])
    lines = []
    for _, r in sel.head(top).iterrows():
        spec = FEATURES_BY_NAME[r["feature"]]
        lines.append(fill(
            wording["factors"]["line"],
            description=spec.description,
            value=wording.value(spec.kind, r["value"]),
            dimension=wording.dimension(r["dimension"]),
            score=r["score"],
            feature=r["feature"],
        ))
    return lines


def _missing_lines(missing: list[str], connected: frozenset[str], profile: Profile,
                   wording: Wording) -> list[str]:
    lines = []
    for dim in missing:
        feats = {str(k): v for k, v in profile.normalisations.items()}.get(dim) or {}
        sources = sorted({FEATURES_BY_NAME[f].source for f in feats}
                         or set(DIMENSION_SOURCES[REGISTRY_DIMENSION[dim]]))
        absent = [s for s in sources if s not in connected]
        label = wording.dimension(dim)
        if len(absent) == len(sources):
            lines.append(fill(wording["missing"]["not_connected"], dimension=label,
                              sources=", ".join(absent)))
        else:
            lines.append(fill(wording["missing"]["no_signal"], dimension=label))
    return lines


def _input_lines(features_row: Mapping[str, Any], connected: frozenset[str], profile: Profile,
                 wording: Wording) -> list[str]:
    used: dict[str, list[str]] = {}
    for feats in profile.normalisations.values():
        for name in feats:
            used.setdefault(FEATURES_BY_NAME[name].source, []).append(name)
    for col in profile.match:
        used.setdefault("accounts", []).append(col)
    used.setdefault("accounts", ["segment"])
    lines = []
    for source in [s for s in SOURCE_ORDER if s in used]:
        if source != "accounts" and source not in connected:
            text = wording["inputs"]["not_connected"]
        else:
            names = [n for n in used[source] if n in features_row
                     and not pd.isna(features_row[n])]
            text = (fill(wording["inputs"]["used"], features=", ".join(names)) if names
                    else wording["inputs"]["no_data"])
        lines.append(f"- **{source}**: {text}")
    return lines


def _bullets(lines: list[str], none: str) -> list[str]:
    return [f"- {line}" for line in lines] if lines else [f"- {none}"]


def health_summary(
    scored_row: Mapping[str, Any],
    features_row: Mapping[str, Any],
    connected: frozenset[str],
    rules: Rules,
    *,
    name: str | None = None,
    wording: Wording | None = None,
    top: int = 5,
    positive_at_least: float = 70.0,
    negative_at_most: float = 40.0,
) -> str:
    """Markdown summary of one account from its `score_frame` row (or a store row, whose flags and
    missing are JSON) and the features row it was scored from."""
    wording = wording or load_wording()
    connected = frozenset(connected) | {"accounts"}
    profile = rules.profile(str(scored_row["profile"]))
    account = name or str(scored_row["account_id"])
    score = _num(scored_row.get("score"))
    status = scored_row.get("status")
    flags = _as_list(scored_row.get("flags"))
    missing = [str(m) for m in _as_list(scored_row.get("missing"))]

    if np.isnan(score):
        head = "n/a (no data)"
        interpretation = wording["interpretation"]["unscored"]
    else:
        shown = int(displayed(np.array([score]))[0])
        head = f"{shown} ({scored_row['band']}, {scored_row['grade']})"
        key = "churned" if status == "churned" else str(scored_row["band"])
        interpretation = wording["interpretation"].get(key, "")
        prev = _num(scored_row.get("previous_score"))
        trend = scored_row.get("trend") or "unknown"
        interpretation = " ".join(filter(None, [interpretation, fill(
            wording["trend"][trend if trend in wording["trend"] else "unknown"],
            delta=score - prev, days=rules.trend_days)]))

    as_of = pd.Timestamp(scored_row["as_of"]).date() if "as_of" in scored_row else None
    lines = [f"## Health: {account}", "", f"**Score:** {head} — {interpretation}", "",
             *([f"_As of {as_of}._", ""] if as_of is not None else []), "### Risk Flags"]
    if flags:
        for f in flags:
            lines.append(f"- **{f['title']}** ({f['severity']}): {f['text']} "
                         f"_Action:_ {f['hint']}")
    else:
        lines.append(wording["no_flags"])

    table = factor_table(features_row, connected, profile)
    none = wording["factors"]["none"]
    lines += ["", "### Factors", "**Positive:**"]
    lines += _bullets(_factor_lines(table, wording, True, top, positive_at_least), none)
    lines += ["", "**Negative:**"]
    lines += _bullets(_factor_lines(table, wording, False, top, negative_at_most), none)
    lines += ["", "**Missing data:**"]
    lines += _bullets(_missing_lines(missing, connected, profile, wording), none)
    lines += ["", "### Inputs Used"]
    lines += _input_lines(features_row, connected, profile, wording)
    return "\n".join(lines) + "\n"
