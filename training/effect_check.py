"""The playbook-effect estimator checked against a known truth: a generated world with an opt-in
intervention (`features.synth.params.Intervention`: treated accounts picked far more often when
a yearly contract ends within the window, a known cut of their churn hazard), scored by the one
pipeline at the start and a horizon later, estimated by `scoring.effect` exactly as serving
does (the contract's timing read from the features of the portfolio scored at the start),
beside the true effect from the generator's hazards (`features.synth.generate.true_effect`).
bench/bench_effect.py prints it; the tests assert on it."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import pandas as pd

from features.contract.warehouse import load_frames
from features.synth.generate import generate_world, true_effect
from features.synth.params import Intervention
from scoring.effect import EXACT, MATCH_ON, NEIGHBOURS, effect_units, estimate_effect
from scoring.health import load_rules
from scoring.pipeline import Scorer, score_accounts

START = date(2024, 1, 1)


def effect_on_world(accounts: int, seed: int, *, days: int = 420, start_day: int = 300,
                    hazard_ratio: float = 0.4, horizon: int = 90, caliper: float = 1.0,
                    bootstraps: int = 1000, neighbours: int = NEIGHBOURS) -> dict[str, Any]:
    """The true effect, the naive difference and the matched estimate on one generated world."""
    iv = Intervention(start_day=start_day, hazard_ratio=hazard_ratio, duration=horizon)
    world = generate_world(accounts, START, days, seed, intervention=iv)
    con = duckdb.connect(":memory:")
    load_frames(con, world.tables)
    scorer = Scorer(rules=load_rules())
    t0 = pd.Timestamp(START) + pd.Timedelta(days=start_day)
    scored = [score_accounts(con, None, t0 + pd.Timedelta(days=k), scorer, trend=False)
              for k in (0, horizon)]
    con.close()
    frames = [s.scores for s in scored]
    scores = pd.concat(frames, ignore_index=True)
    scores["as_of"] = pd.to_datetime(scores["as_of"])
    assert world.intervention is not None
    picked = world.intervention[world.intervention["treated"]]
    starts = picked[["account_id"]].assign(as_of=t0)
    starts = starts[starts["account_id"].isin(set(frames[0]["account_id"]))]
    churn = world.tables["churn_events"].rename(columns={"churned_at": "at"})
    units = effect_units(scores, starts, churn, t0 + pd.Timedelta(days=horizon), horizon,
                         features=scored[0].features)
    est = estimate_effect(units, list(MATCH_ON), "churned", caliper=caliper, min_pairs=20,
                          bootstraps=bootstraps, exact=EXACT, neighbours=neighbours)
    return {"truth": true_effect(world, horizon), "estimate": est, "units": len(units)}
