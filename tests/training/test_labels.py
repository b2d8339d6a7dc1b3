"""Labels: a churn in the h days after as_of is 1, later is 0, an unfinished window is unknown."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from training.labels import build_labels, data_end, label_names, last_labelled_date


@pytest.fixture
def con():
    con = duckdb.connect(":memory:")
    accounts = pd.DataFrame({"account_id": ["a", "b", "c", "d"],
                             "created_at": pd.to_datetime(["2023-01-01"] * 4)})
    churn = pd.DataFrame({"account_id": ["a", "b", "d"],
                          "churned_at": pd.to_datetime(["2024-01-20", "2024-03-15", "2023-12-01"])})
    expansion = pd.DataFrame({"account_id": ["c"], "ts": pd.to_datetime(["2024-01-01"]),
                              "arr_delta": [100.0]})
    usage = pd.DataFrame({"account_id": ["c"], "user_id": ["u"], "event": ["x"], "quantity": [1.0],
                          "ts": pd.to_datetime(["2024-06-30 10:00"])})
    for name, frame in [("accounts", accounts), ("churn_events", churn),
                        ("expansion_events", expansion), ("usage_events", usage)]:
        con.register("f", frame)
        con.execute(f"create table {name} as select * from f")
        con.unregister("f")
    return con


def ents(*rows):
    return pd.DataFrame({"account_id": [r[0] for r in rows],
                         "as_of": pd.to_datetime([r[1] for r in rows])})


def test_data_ends_the_midnight_after_the_latest_row(con):
    assert data_end(con) == pd.Timestamp("2024-07-01")


def test_churn_inside_the_horizon_is_one_and_after_it_zero(con):
    y = build_labels(con, ents(("a", "2024-01-01"), ("b", "2024-01-01")))
    assert y.loc[0, ["churn_30d", "churn_60d", "churn_90d"]].tolist() == [1.0, 1.0, 1.0]
    # b churns on day 74 after as_of: only the 90-day window sees it
    assert y.loc[1, ["churn_30d", "churn_60d", "churn_90d"]].tolist() == [0.0, 0.0, 1.0]


def test_a_churn_dated_on_the_as_of_day_leaves_the_account_not_active_and_unlabelled(con):
    y = build_labels(con, ents(("a", "2024-01-20"), ("a", "2024-01-19")))
    # churned on the as-of day: not a customer being scored that day, so no label at all
    assert y.loc[0, label_names((30, 60, 90))].isna().all()
    # the day before, the churn is the first day of the horizon
    assert y.loc[1, "churn_30d"] == 1.0


def test_the_horizon_is_the_h_days_after_the_as_of_day(con):
    # b churns on 2024-03-15: the 30 days after 2024-02-14 are Feb 15 .. Mar 15
    y = build_labels(con, ents(("b", "2024-02-14"), ("b", "2024-02-13")))
    assert y["churn_30d"].tolist() == [1.0, 0.0]


def test_the_last_labelled_date_is_the_last_whose_window_the_data_covers(con):
    assert last_labelled_date(con, 30) == pd.Timestamp("2024-05-31")
    y = build_labels(con, ents(("c", "2024-05-31"), ("c", "2024-06-01")))
    assert y.loc[0, "churn_30d"] == 0.0 and np.isnan(y.loc[1, "churn_30d"])


def test_a_window_past_the_end_of_data_is_censored_not_zero(con):
    y = build_labels(con, ents(("c", "2024-05-15")))
    assert y.loc[0, "churn_30d"] == 0.0
    assert np.isnan(y.loc[0, "churn_60d"]) and np.isnan(y.loc[0, "churn_90d"])


def test_an_account_already_churned_gets_no_label(con):
    y = build_labels(con, ents(("d", "2024-01-01")))
    assert y[["churn_30d", "expansion_30d"]].isna().all(axis=None)


def test_expansion_labels_and_not_connected(con):
    y = build_labels(con, ents(("c", "2023-12-15")))
    assert y.loc[0, "expansion_30d"] == 1.0
    con.execute("drop table expansion_events")
    y = build_labels(con, ents(("c", "2023-12-15")))
    assert np.isnan(y.loc[0, "expansion_30d"])


def test_rows_keep_their_order(con):
    e = ents(("b", "2024-01-01"), ("a", "2024-01-01"), ("b", "2024-01-01"))
    y = build_labels(con, e)
    assert y["account_id"].tolist() == ["b", "a", "b"]
    assert y["churn_30d"].tolist() == [0.0, 1.0, 0.0]


def test_labels_work_on_a_connection_ibis_has_wrapped(con):
    import ibis

    ibis.duckdb.from_connection(con)  # switches off DuckDB's scan of Python locals
    y = build_labels(con, ents(("a", "2024-01-01")))
    assert y.loc[0, "churn_30d"] == 1.0
