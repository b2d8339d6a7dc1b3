"""The synthetic world: deterministic, in the contract format, B2B-realistic, and honest about its
truth (churns are drawn from the hazards the oracle reads)."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from features.contract.tables import TABLES
from features.synth import params as P
from features.synth.generate import (
    STATE_COLUMNS,
    World,
    generate_world,
    oracle_probability,
    path_probability,
    write_world,
)

START = date(2024, 1, 1)
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(300, START, 365, seed=11)


@pytest.fixture(scope="module")
def big_world() -> World:
    """Twice the demo size: enough enterprise churners for a tight yearly rate (~8 s)."""
    return generate_world(3000, START, 730, seed=7)


def _entities(w: World, as_ofs: pd.DatetimeIndex) -> pd.DataFrame:
    """Active accounts at each as-of date: signed up before it and not churned before it."""
    acc = w.tables["accounts"]
    churned = acc["account_id"].map(w.tables["churn_events"].set_index("account_id")
                                    ["churned_at"])
    parts = []
    for as_of in as_ofs:
        active = (acc["created_at"] < as_of) & ~(churned < as_of).fillna(False).astype(bool)
        parts.append(pd.DataFrame({"account_id": acc.loc[active, "account_id"].to_numpy(),
                                   "as_of": as_of}))
    return pd.concat(parts, ignore_index=True)


def _churn_labels(w: World, ents: pd.DataFrame, horizon: int) -> np.ndarray:
    churned = ents["account_id"].map(w.tables["churn_events"].set_index("account_id")
                                     ["churned_at"])
    return ((churned >= ents["as_of"]) & (churned < ents["as_of"] + horizon * DAY)).to_numpy(int)


# --- determinism -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_same_seed_writes_the_same_bytes(tmp_path, fmt):
    a, b = tmp_path / "a", tmp_path / "b"
    paths_a = write_world(generate_world(120, START, 200, seed=5), a, fmt)
    paths_b = write_world(generate_world(120, START, 200, seed=5), b, fmt)
    assert sorted(p.name for p in paths_a.values()) == sorted(p.name for p in paths_b.values())
    for name, path in paths_a.items():
        assert path.read_bytes() == paths_b[name].read_bytes(), f"{path.name} differs"


def test_another_seed_gives_another_world():
    a = generate_world(60, START, 90, seed=1).tables["usage_events"]
    b = generate_world(60, START, 90, seed=2).tables["usage_events"]
    assert len(a) != len(b) or not a.equals(b)


# --- the contract ----------------------------------------------------------------------------
_KINDS = {
    "string": pd.api.types.is_string_dtype,
    "int": pd.api.types.is_integer_dtype,
    "float": pd.api.types.is_float_dtype,
    "bool": pd.api.types.is_bool_dtype,
    "timestamp": pd.api.types.is_datetime64_dtype,
}


def test_all_nine_tables_have_exactly_the_contract_columns_and_types(world):
    assert set(world.tables) == {t.name for t in TABLES}
    for t in TABLES:
        frame = world.tables[t.name]
        names = list(frame.columns)
        assert names[: len(t.columns)] == list(t.column_names), t.name
        if not t.extra_columns_allowed:
            assert names == list(t.column_names), t.name
        assert len(frame) > 0, f"{t.name} is empty"
        for col in t.columns:
            series = frame[col.name]
            assert _KINDS[col.type](series.dtype), f"{t.name}.{col.name}: {series.dtype}"
            if not col.nullable:
                assert series.notna().all(), f"{t.name}.{col.name} has empty cells"
            if col.allowed:
                assert set(series.dropna()) <= set(col.allowed), f"{t.name}.{col.name}"
            if col.min is not None:
                assert (series.dropna() >= col.min).all(), f"{t.name}.{col.name} < min"
            if col.max is not None:
                assert (series.dropna() <= col.max).all(), f"{t.name}.{col.name} > max"
        if t.key:
            assert not frame.duplicated(list(t.key)).any(), f"{t.name}: key repeats"
        if t.references_accounts:
            known = set(world.tables["accounts"]["account_id"])
            assert set(frame["account_id"]) <= known, f"{t.name}: unknown account"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_files_read_back_with_contract_columns_and_types(tmp_path, fmt):
    w = generate_world(80, START, 120, seed=3)
    paths = write_world(w, tmp_path, fmt)
    sql_types = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN",
                 "timestamp": "TIMESTAMP"}
    con = duckdb.connect()
    for t in TABLES:
        path = paths[t.name]
        assert path.name == f"{t.name}.{fmt}"
        reader = "read_parquet" if fmt == "parquet" else "read_csv"
        described = con.execute(f"describe select * from {reader}(?)", [str(path)]).fetchall()
        types = {row[0]: row[1] for row in described}
        assert list(types)[: len(t.columns)] == list(t.column_names)
        for col in t.columns:
            expected = {sql_types[col.type]}
            if fmt == "csv":
                if not w.tables[t.name][col.name].notna().any():
                    continue  # an all-empty CSV column carries no type
                if col.type == "float":
                    expected.add("BIGINT")  # whole numbers (quantity 3) sniff as integers
            assert types[col.name] in expected, f"{path.name}:{col.name} is {types[col.name]}"
        assert con.execute(f"select count(*) from {reader}(?)", [str(path)]).fetchone()[0] \
            == len(w.tables[t.name])
    assert (tmp_path / "truth.parquet").exists() and (tmp_path / "truth_events.csv").exists()


def test_writing_one_format_replaces_the_other(tmp_path):
    w = generate_world(30, START, 40, seed=3)
    write_world(w, tmp_path, "csv")
    write_world(w, tmp_path, "parquet")
    assert not list(tmp_path.glob("accounts.csv"))
    assert (tmp_path / "accounts.parquet").exists()


def test_nothing_is_dated_outside_the_period_or_before_signup(world):
    end = pd.Timestamp(START) + 365 * DAY
    signup = world.tables["accounts"].set_index("account_id")["created_at"]
    for t in TABLES:
        if not t.time_column:
            continue
        frame = world.tables[t.name]
        when = frame[t.time_column]
        assert (when < end).all(), f"{t.name}.{t.time_column} after the data ends"
        if t.name not in ("subscriptions",):
            assert (when >= pd.Timestamp(START)).all(), f"{t.name} before the period"
        assert (when >= frame["account_id"].map(signup)).all(), f"{t.name} before signup"


def test_bad_arguments_are_refused_with_the_name_of_the_argument(tmp_path):
    with pytest.raises(ValueError, match="n_accounts"):
        generate_world(0, START, 10, seed=1)
    with pytest.raises(ValueError, match="days"):
        generate_world(10, START, 0, seed=1)
    with pytest.raises(ValueError, match="format"):
        write_world(generate_world(5, START, 5, seed=1), tmp_path, "xlsx")


# --- a B2B SaaS world ------------------------------------------------------------------------
def test_segments_mix_and_accounts_old_and_new(big_world):
    acc = big_world.tables["accounts"]
    share = acc["segment"].value_counts(normalize=True)
    assert share["enterprise"] == pytest.approx(0.15, abs=0.04)
    assert share["mid-market"] == pytest.approx(0.35, abs=0.05)
    assert share["smb"] == pytest.approx(0.50, abs=0.05)
    before = (acc["created_at"] < pd.Timestamp(START)).mean()
    assert 0.6 < before < 0.9, "most accounts exist before the period, some sign up during it"
    for col in ("industry", "region", "plan", "seats", "arr", "owner"):
        assert acc[col].notna().mean() > 0.8, col


def test_custom_attribute_columns_exist(world):
    acc = world.tables["accounts"]
    extra = [c for c in acc.columns if c not in TABLES[0].column_names]
    assert {"csm_tier", "onboarding_package"} <= set(extra)
    for col in ("csm_tier", "onboarding_package"):
        assert acc[col].notna().all() and acc[col].nunique() >= 2


def test_yearly_logo_churn_per_segment_is_near_b2b_norms(big_world):
    """Per segment, the share of customers at the start of each year who churn within it."""
    acc = big_world.tables["accounts"].set_index("account_id")
    churned = acc.index.map(big_world.tables["churn_events"].set_index("account_id")
                            ["churned_at"]).to_series(index=acc.index)
    at_risk, lost = pd.Series(0, index=acc["segment"].unique()), pd.Series(0.0)
    for year in (0, 1):
        y0 = pd.Timestamp(START) + 365 * year * DAY
        cohort = (acc["created_at"] < y0) & ~(churned < y0).fillna(False).astype(bool)
        gone = cohort & (churned < y0 + 365 * DAY).fillna(False).astype(bool)
        at_risk = at_risk.add(cohort.groupby(acc["segment"]).sum(), fill_value=0)
        lost = lost.add(gone.groupby(acc["segment"]).sum(), fill_value=0)
    rate = (lost / at_risk).dropna()
    assert 0.05 <= rate["enterprise"] <= 0.10, rate.to_dict()
    assert 0.10 <= rate["mid-market"] <= 0.20, rate.to_dict()
    assert 0.25 <= rate["smb"] <= 0.40, rate.to_dict()


def test_churned_accounts_emit_nothing_after_churn(world):
    churned = world.tables["churn_events"].set_index("account_id")["churned_at"]
    assert churned.index.is_unique, "an account churns at most once"
    assert len(churned) > 10
    for t in TABLES:
        if not t.time_column or t.name == "churn_events":
            continue
        frame = world.tables[t.name]
        when = frame["account_id"].map(churned)
        late = frame[frame[t.time_column] >= when]
        assert late.empty, f"{t.name}: {len(late)} rows at or after the churn"


def test_subscriptions_chain_renewals_and_show_churn(world):
    subs = world.tables["subscriptions"].sort_values(["account_id", "start_date"])
    nxt = subs.groupby("account_id")["start_date"].shift(-1)
    renewed = nxt.notna()
    assert (subs.loc[renewed, "end_date"] == nxt[renewed]).all(), "a renewal starts at the end"
    assert (subs.loc[renewed, "status"] == "expired").all()
    last = subs[~renewed].set_index("account_id")
    churned = set(world.tables["churn_events"]["account_id"])
    assert (last.loc[last.index.isin(churned), "status"] == "cancelled").all()
    assert (last.loc[~last.index.isin(churned), "status"] == "active").all()
    assert (subs["end_date"] > subs["start_date"]).all()


def test_expansion_shows_as_more_seats_on_the_next_subscription(big_world):
    subs = big_world.tables["subscriptions"].sort_values(["account_id", "start_date"])
    exp = big_world.tables["expansion_events"]
    budget = set(big_world.shocks.loc[big_world.shocks["kind"] == "budget_cut", "account_id"])
    subs["next_seats"] = subs.groupby("account_id")["seats"].shift(-1)
    subs["next_start"] = subs.groupby("account_id")["start_date"].shift(-1)
    joined = exp.merge(subs, on="account_id")
    inside = joined[(joined["ts"] >= joined["start_date"]) & (joined["ts"] < joined["end_date"])
                    & joined["next_seats"].notna() & ~joined["account_id"].isin(budget)]
    assert len(inside) > 20
    assert (inside["next_seats"] > inside["seats"]).all()
    assert (exp["arr_delta"] > 0).all()


def test_some_accounts_lack_some_sources(big_world):
    t = big_world.tables
    ids = set(t["accounts"]["account_id"])
    share_without = {name: 1 - t[name]["account_id"].nunique() / len(ids)
                     for name in ("surveys", "touchpoints", "invoices")}
    assert 0.08 <= share_without["surveys"] <= 0.30, share_without
    assert 0.05 <= share_without["touchpoints"] <= 0.20, share_without
    assert 0.03 <= share_without["invoices"] <= 0.25, share_without
    assert t["usage_events"]["account_id"].nunique() / len(ids) > 0.97


def test_usage_cuts_are_recorded_with_their_date_and_cut_usage(big_world):
    cuts = big_world.shocks[big_world.shocks["kind"] == "usage_cut"]
    assert len(cuts) > 10
    usage = big_world.tables["usage_events"]
    usage = usage[usage["account_id"].isin(cuts["account_id"])]
    by_account = dict(tuple(usage.groupby("account_id")["ts"]))
    churned = big_world.tables["churn_events"].set_index("account_id")["churned_at"]
    end = pd.Timestamp(START) + 730 * DAY
    ratios = []
    for account_id, when in cuts[["account_id", "date"]].itertuples(index=False):
        stop = churned.get(account_id, end)
        if when - 60 * DAY < pd.Timestamp(START) or when + 60 * DAY > min(stop, end):
            continue
        ts = by_account[account_id]
        before = ((ts >= when - 60 * DAY) & (ts < when)).sum()
        after = ((ts >= when) & (ts < when + 60 * DAY)).sum()
        if before:
            ratios.append(after / before)
    assert len(ratios) >= 5
    assert np.median(ratios) < 0.7, ratios


def test_observations_are_noisy_views_of_the_hidden_health(big_world):
    truth = big_world.truth.set_index(["account_id", "date"])["health"]
    nps = big_world.tables["surveys"].query("kind == 'nps'")
    nps_health = truth.reindex(pd.MultiIndex.from_arrays([nps["account_id"],
                                                          nps["ts"].dt.normalize()]))
    r = np.corrcoef(nps["score"], nps_health.to_numpy())[0, 1]
    assert 0.3 < r < 0.9, f"NPS follows health but noisily (r={r:.2f})"
    tickets = big_world.tables["tickets"]
    t_health = truth.reindex(pd.MultiIndex.from_arrays([tickets["account_id"],
                                                        tickets["created_at"].dt.normalize()]))
    assert t_health.mean() < big_world.truth["health"].mean(), "tickets come from the unhealthy"


# --- the truth -------------------------------------------------------------------------------
def test_truth_covers_every_day_and_churns_happen_where_hazard_is(world):
    truth = world.truth
    assert list(truth.columns) == ["account_id", "date", "churn_hazard", "expansion_hazard",
                                   "health", *STATE_COLUMNS]
    assert truth["churn_hazard"].between(0, 1).all()
    assert truth["expansion_hazard"].between(0, 1).all()
    assert truth["health"].notna().all()
    first = truth.groupby("account_id")["date"].min()
    signup = world.tables["accounts"].set_index("account_id")["created_at"]
    assert (first == signup.clip(lower=pd.Timestamp(START))[first.index]).all()
    # The hidden path goes on after a churn: the truth never depends on the churn draw.
    assert (truth.groupby("account_id")["date"].max() == pd.Timestamp(START) + 364 * DAY).all()
    churn = world.tables["churn_events"].set_index("account_id")["churned_at"]
    on_churn_day = list(zip(churn.index, churn, strict=True))
    at_churn = truth.set_index(["account_id", "date"]).loc[on_churn_day, "churn_hazard"]
    assert (at_churn > 0).all()
    kinds = set(world.shocks["kind"])
    assert {"usage_cut", "champion_left", "outage"} <= kinds


def test_path_probability_is_one_minus_the_product_of_survivals_over_the_window():
    truth = pd.DataFrame({
        "account_id": ["a"] * 5 + ["b"] * 2,
        "date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04",
                                "2024-01-05", "2024-01-01", "2024-01-02"]),
        "churn_hazard": [0.1, 0.2, 0.3, 0.4, 0.5, 0.0, 0.5],
        "expansion_hazard": [0.0, 0.0, 0.0, 0.5, 0.0, 0.1, 0.0],
        "health": [0.0] * 7,
    })
    ents = pd.DataFrame({"account_id": ["a", "a", "b", "zz"],
                         "as_of": pd.to_datetime(["2024-01-02", "2024-01-05", "2024-01-02",
                                                  "2024-01-02"])})
    p = path_probability(truth, ents, horizon=2)
    # The as-of day itself is in the window (training.labels counts a churn dated on it).
    assert p[0] == pytest.approx(1 - 0.8 * 0.7)
    assert p[1] == pytest.approx(0.5), "days past the data add nothing"
    assert p[2] == pytest.approx(0.5)
    assert np.isnan(p[3]), "an unknown account has no oracle"
    # Expansion: a first expansion while still a customer; that day's churn draw comes first.
    e = path_probability(truth, ents, horizon=3, target="expansion")
    assert e[0] == pytest.approx((0.8 * 0.7) * 0.6 * 0.5)
    assert e[2] == pytest.approx(0.0)


def test_the_oracle_reads_the_state_of_the_day_before_not_the_path_after_it(world):
    """Changing the truth on or after the as-of date (the future) moves the path probability
    but not the oracle; changing the state of the day before moves the oracle."""
    as_of = pd.Timestamp(START) + 200 * DAY
    ents = _entities(world, pd.DatetimeIndex([as_of]))
    before = oracle_probability(world.truth, ents, 90)
    future = world.truth.astype({"end_logit": float})
    later = future["date"] >= as_of
    future.loc[later, ["end_logit", "churn_hazard"]] += [3.0, 0.01]
    pd.testing.assert_series_equal(oracle_probability(future, ents, 90), before)
    assert (path_probability(future, ents, 90) > path_probability(world.truth, ents, 90)).all()
    worse = world.truth.astype({"end_logit": float})
    worse.loc[worse["date"] == as_of - DAY, "end_logit"] += 3.0
    assert (oracle_probability(worse, ents, 90) >= before).all()
    assert (oracle_probability(worse, ents, 90) > before).mean() > 0.1


def test_oracle_ranks_90_day_churners_well_and_matches_the_churn_count(big_world):
    as_ofs = pd.date_range(pd.Timestamp(START) + 90 * DAY, pd.Timestamp(START) + 640 * DAY,
                           freq="MS")
    ents = _entities(big_world, as_ofs)
    y = _churn_labels(big_world, ents, 90)
    p = oracle_probability(big_world.truth, ents, 90).to_numpy()
    assert p[y == 1].mean() > 2 * p[y == 0].mean()
    assert roc_auc_score(y, p) > 0.8


def test_churns_and_expansions_are_drawn_from_the_truth_hazards(big_world):
    """Over the whole period, one window per account: the expected number of accounts with an
    event (the sum of oracle probabilities) matches the observed number within sampling error."""
    acc = big_world.tables["accounts"]
    ents = pd.DataFrame({"account_id": acc["account_id"],
                         "as_of": acc["created_at"].clip(lower=pd.Timestamp(START))})
    for target, table in (("churn", "churn_events"), ("expansion", "expansion_events")):
        p = path_probability(big_world.truth, ents, 730, target=target).to_numpy()
        observed = big_world.tables[table]["account_id"].nunique()
        sd = np.sqrt((p * (1 - p)).sum())
        assert abs(p.sum() - observed) < 4 * sd, (target, p.sum(), observed, sd)
        assert observed > 100


def test_churn_probability_grows_with_the_horizon(world):
    ents = _entities(world, pd.DatetimeIndex([pd.Timestamp(START) + 100 * DAY]))
    p30, p90 = (oracle_probability(world.truth, ents, h) for h in (30, 90))
    assert (p30 <= p90 + 1e-12).all()


# --- the command -----------------------------------------------------------------------------
def test_cli_generate_writes_a_world(tmp_path):
    from healthscore.cli import app

    out = tmp_path / "raw"
    result = CliRunner().invoke(app, ["generate", "--accounts", "40", "--start", "2024-01-01",
                                      "--days", "60", "--seed", "2", "--out", str(out),
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {f"{t.name}.csv" for t in TABLES} | {
        "truth.parquet", "truth_events.csv"}
    assert "usage_events" in result.output
    again = CliRunner().invoke(app, ["generate", "--accounts", "40", "--days", "60", "--seed",
                                     "2", "--out", str(tmp_path / "p")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "p" / "usage_events.parquet").exists()


def test_cli_refuses_a_bad_date_or_format(tmp_path):
    from healthscore.cli import app

    bad_date = CliRunner().invoke(app, ["generate", "--start", "2024-13-01", "--out",
                                        str(tmp_path)])
    assert bad_date.exit_code != 0 and "--start" in bad_date.output
    bad_fmt = CliRunner().invoke(app, ["generate", "--format", "xlsx", "--out", str(tmp_path)])
    assert bad_fmt.exit_code != 0 and "--format" in bad_fmt.output


# --- declared customer event types -------------------------------------------------------------
def test_a_world_without_declared_event_types_has_only_the_products_events(world):
    from features.synth.params import EVENTS

    assert set(world.tables["usage_events"]["event"]) <= set(EVENTS)


@pytest.fixture(scope="module")
def typed_world() -> World:
    from features.synth.params import EXAMPLE_EVENT_TYPES

    return generate_world(300, START, 365, seed=11, event_types=EXAMPLE_EVENT_TYPES)


def test_declared_event_types_are_emitted_and_move_the_true_churn_hazard(typed_world):
    """The oracle is the truth with the types' effects in it: accounts doing a churn-raising
    type often have a higher true churn probability than those doing it seldom, and the other
    way round for the lowering type; a noise type moves it little."""
    from features.synth.params import EXAMPLE_EVENT_TYPES

    usage = typed_world.tables["usage_events"]
    t = pd.Timestamp("2024-09-01")
    recent = usage[(usage["ts"] < t) & (usage["ts"] >= t - 30 * DAY)]
    ents = pd.DataFrame({"account_id": sorted(recent["account_id"].unique()), "as_of": t})
    p = oracle_probability(typed_world.truth, ents, 90).to_numpy()
    active_days = recent.groupby("account_id")["ts"].apply(lambda ts: ts.dt.date.nunique()
                                                           ).reindex(ents["account_id"])
    for declared in EXAMPLE_EVENT_TYPES:
        rows = recent[recent["event"] == declared.name]
        assert len(rows) > 100, declared.name
        count = rows.groupby("account_id")["quantity"].sum().reindex(ents["account_id"],
                                                                      fill_value=0)
        # per active day: raw counts also grow with activity, which healthy accounts have more of
        rate = (count / active_days).to_numpy()
        often, seldom = rate >= np.quantile(rate, 0.75), rate <= np.quantile(rate, 0.25)
        ratio = p[often].mean() / p[seldom].mean()
        if declared.churn_effect > 0:
            assert ratio > 1.5, (declared.name, ratio)
        elif declared.churn_effect < 0:
            assert ratio < 1 / 1.5, (declared.name, ratio)


def test_an_event_type_cannot_take_a_product_events_name():
    from features.synth.params import EventTypeEffect

    with pytest.raises(ValueError, match="app.login"):
        EventTypeEffect("app.login", churn_effect=1.0)


def test_the_oracle_weighs_the_intent_the_counts_show_not_the_latent_one(typed_world):
    """The truth's seen intent is the filtered posterior from the usage table's counts: it
    tracks the latent intent closely (dozens of events a month) but not exactly, its variance
    falls as counts accrue, and the oracle reads it (changing the latent intent leaves the
    oracle as it is; changing the seen one moves it)."""
    truth = typed_world.truth
    later = truth[truth["date"] >= pd.Timestamp(START) + 120 * DAY]
    active = later[later["event_logit_var"] < 0.5]
    # Seen on day d estimates the intent a decision lead days later weighs (latent row d + lead).
    latent = truth.set_index(["account_id", "date"])["event_logit"].reindex(
        pd.MultiIndex.from_arrays([active["account_id"], active["date"] + P.EVENT_INTENT_LEAD
                                   * DAY])).to_numpy()
    known = ~np.isnan(latent)
    r = np.corrcoef(active["event_logit_seen"].to_numpy()[known], latent[known])[0, 1]
    assert 0.8 < r < 1.0, r
    assert later["event_logit_var"].median() < 0.5 * truth.groupby("account_id")[
        "event_logit_var"].first().median()
    as_of = pd.Timestamp(START) + 200 * DAY
    ents = _entities(typed_world, pd.DatetimeIndex([as_of]))
    before = oracle_probability(truth, ents, 90)
    moved = truth.assign(event_logit=truth["event_logit"] + 2.0)
    pd.testing.assert_series_equal(oracle_probability(moved, ents, 90), before)
    assert (oracle_probability(moved, ents, 90, intent="latent") > before).mean() > 0.9
    seen = truth.assign(event_logit_seen=truth["event_logit_seen"] + 2.0)
    assert (oracle_probability(seen, ents, 90) > before).mean() > 0.9
