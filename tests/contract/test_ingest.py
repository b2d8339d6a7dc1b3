"""Ingestion: a folder of contract files is validated and loaded into DuckDB in one transaction;
bad input is refused with a report naming file, row, column, problem and value, and leaves the
warehouse exactly as it was."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import ingest as ingest_module
from features.contract.ingest import IngestRefused, ingest_folder
from features.contract.settings import IngestConfig
from features.contract.sources import csv_record_lines
from features.contract.validate import validate_tables
from features.contract.warehouse import connect, connected_tables, row_counts
from tests.support.ingest_frames import NOW, good_tables, table_contents, write_csv, write_folder

CFG = IngestConfig()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "good", good_tables())


@pytest.fixture
def wh(tmp_path: Path) -> Path:
    return tmp_path / "wh" / "warehouse.duckdb"


def _types(path: Path, table: str) -> dict[str, str]:
    con = connect(path, read_only=True)
    try:
        return {r[0]: r[1] for r in con.execute(f'describe "{table}"').fetchall()}
    finally:
        con.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refusal(folder: Path, wh: Path, cfg: IngestConfig = CFG) -> IngestRefused:
    with pytest.raises(IngestRefused) as info:
        ingest_folder(folder, wh, cfg, now=NOW)
    return info.value


# --- a good folder -----------------------------------------------------------------------------
def test_a_good_folder_loads_with_contract_types(folder, wh):
    report = ingest_folder(folder, wh, CFG, now=NOW)

    assert report.loaded and not report.refused
    assert report.row_counts() == {"accounts": 3, "subscriptions": 3, "usage_events": 5,
                                   "tickets": 4, "churn_events": 1}
    con = connect(wh, read_only=True)
    assert row_counts(con) == report.row_counts()
    con.close()
    assert _types(wh, "accounts")["account_id"] == "VARCHAR"
    assert _types(wh, "accounts")["created_at"] == "TIMESTAMP"
    assert _types(wh, "accounts")["seats"] == "BIGINT"
    assert _types(wh, "usage_events")["ts"] == "TIMESTAMP"
    assert _types(wh, "usage_events")["quantity"] == "DOUBLE"
    assert _types(wh, "tickets")["escalated"] == "BOOLEAN"
    assert _types(wh, "subscriptions")["end_date"] == "TIMESTAMP"


def test_csv_crlf_and_boolean_spellings_are_read(folder, wh):
    ingest_folder(folder, wh, CFG, now=NOW)
    con = connect(wh, read_only=True)
    escalated = dict(con.execute("select ticket_id, escalated from tickets").fetchall())
    reopened = {r[0] for r in con.execute("select distinct reopened from tickets").fetchall()}
    ts = con.execute("select max(ts) from usage_events").fetchone()[0]
    con.close()
    assert escalated == {"T1": True, "T2": False, "T3": True, "T4": True}
    assert reopened == {False}  # an absent optional column takes the contract default
    assert str(ts) == "2024-03-04 08:00:00"  # "Z" read as UTC


def test_ingest_log_records_when_what_and_how_many(folder, wh):
    ingest_folder(folder, wh, CFG, now=NOW)
    con = connect(wh, read_only=True)
    folder_col, counts, not_connected = con.execute(
        "select folder, row_counts, not_connected from ingest_log").fetchone()
    con.close()
    assert folder_col == str(folder.resolve())
    assert json.loads(counts)["tickets"] == 4
    assert set(json.loads(not_connected)) == {"surveys", "touchpoints", "invoices",
                                              "expansion_events"}


def test_reingesting_the_same_folder_is_idempotent(folder, wh):
    ingest_folder(folder, wh, CFG, now=NOW)
    first = table_contents(wh)
    ingest_folder(folder, wh, CFG, now=NOW)
    second = table_contents(wh)

    assert {k: v for k, v in first.items() if k != "ingest_log"} == \
        {k: v for k, v in second.items() if k != "ingest_log"}
    assert len(second["ingest_log"]) == 2


def test_a_missing_optional_table_is_not_connected(folder, wh):
    ingest_folder(folder, wh, CFG, now=NOW)
    (folder / "tickets.csv").unlink()

    report = ingest_folder(folder, wh, CFG, now=NOW)

    assert "tickets" in report.not_connected
    con = connect(wh, read_only=True)
    assert "tickets" not in connected_tables(con)
    assert "usage_events" in connected_tables(con)
    con.close()


def test_extra_account_columns_are_kept_as_typed_custom_attributes(tmp_path, wh):
    tables = good_tables()
    tables["accounts"]["nps_target"] = ["9", "7", ""]
    tables["accounts"]["is_strategic"] = ["yes", "no", "Yes"]
    tables["usage_events"]["browser"] = "firefox"
    folder = write_folder(tmp_path / "f", tables)

    report = ingest_folder(folder, wh, CFG, now=NOW)

    types = _types(wh, "accounts")
    assert types["csm_tier"] == "VARCHAR"
    assert types["nps_target"] == "BIGINT"
    assert types["is_strategic"] == "BOOLEAN"
    ignored = [p for p in report.problems if p.table == "usage_events"]
    assert [(p.column, p.action) for p in ignored] == [("browser", "ignored")]
    con = connect(wh, read_only=True)
    assert con.execute("select is_strategic from accounts where account_id = 'A3'"
                       ).fetchone() == (True,)
    con.close()


def test_unknown_files_are_reported_and_ignored(folder, wh):
    (folder / "notes.txt").write_text("hello")
    pd.DataFrame({"x": [1]}).to_parquet(folder / "truth.parquet")

    report = ingest_folder(folder, wh, CFG, now=NOW)

    unknown = [p for p in report.problems if p.action == "ignored"]
    assert len(unknown) == 1 and unknown[0].count == 2
    assert {e.file for e in unknown[0].examples} == {"notes.txt", "truth.parquet"}
    assert report.loaded


# --- refusals ----------------------------------------------------------------------------------
def test_bad_date_unknown_account_and_negative_quantity_are_refused_with_where(tmp_path, wh):
    good = write_folder(tmp_path / "good", good_tables(), parquet=())
    ingest_folder(good, wh, CFG, now=NOW)
    before, digest = table_contents(wh), _digest(wh)

    tables = good_tables()
    usage = tables["usage_events"]
    usage.loc[1, "ts"] = "2024-02-30 10:00:00"   # line 3 of the CSV
    usage.loc[2, "account_id"] = "A-404"         # line 4
    usage.loc[3, "quantity"] = -2                # line 5
    bad = write_folder(tmp_path / "bad", tables, parquet=())

    refused = _refusal(bad, wh)

    found = {(p.table, p.column, p.problem.split(" (")[0]): p for p in refused.report.problems
             if p.fatal}
    date_p = found[("usage_events", "ts", "not a timestamp")]
    account_p = found[("usage_events", "account_id", "unknown account_id")]
    qty_p = found[("usage_events", "quantity", "below minimum 0")]
    assert [(e.file, e.row, e.value) for e in date_p.examples] == \
        [("usage_events.csv", 3, "2024-02-30 10:00:00")]
    assert [(e.file, e.row, e.value) for e in account_p.examples] == \
        [("usage_events.csv", 4, "A-404")]
    assert [(e.file, e.row, e.value) for e in qty_p.examples] == [("usage_events.csv", 5, "-2")]
    assert len(found) == 3
    assert table_contents(wh) == before and _digest(wh) == digest
    assert "usage_events.csv row 3" in str(refused)


def test_a_refused_first_load_creates_no_warehouse(tmp_path, wh):
    tables = good_tables()
    tables["accounts"].loc[0, "created_at"] = "yesterday"
    _refusal(write_folder(tmp_path / "bad", tables), wh)
    assert not wh.exists()


def test_accounts_are_required(tmp_path, wh):
    tables = good_tables()
    del tables["accounts"]
    refused = _refusal(write_folder(tmp_path / "f", tables), wh)
    assert [p.problem for p in refused.report.problems if p.fatal] == ["missing required table"]


def test_a_missing_required_column_is_refused(tmp_path, wh):
    tables = good_tables()
    tables["tickets"] = tables["tickets"].drop(columns="priority")
    refused = _refusal(write_folder(tmp_path / "f", tables), wh)
    (p,) = [p for p in refused.report.problems if p.fatal]
    assert (p.table, p.column, p.problem) == ("tickets", "priority", "missing required column")
    assert p.examples[0].file == "tickets.csv"


def test_two_files_for_one_table_are_refused(folder, wh):
    write_csv(good_tables()["usage_events"], folder / "usage_events.csv")
    refused = _refusal(folder, wh)
    assert any("several files" in p.problem for p in refused.report.problems if p.fatal)


def test_values_outside_allowed_set_range_or_emptiness_are_refused(tmp_path, wh):
    tables = good_tables()
    tables["tickets"].loc[0, "priority"] = "P1"
    tables["tickets"].loc[1, "csat"] = 9
    tables["accounts"].loc[2, "segment"] = "  "
    refused = _refusal(write_folder(tmp_path / "f", tables), wh)
    fatal = {(p.table, p.column, p.problem, p.examples[0].row) for p in refused.report.problems
             if p.fatal}
    assert fatal == {
        ("tickets", "priority", "not one of low, normal, high, urgent", 2),
        ("tickets", "csat", "above maximum 5", 3),
        ("accounts", "segment", "empty value", 4),
    }


def test_an_account_without_a_name_is_named_by_its_id(tmp_path, wh):
    tables = good_tables()
    tables["accounts"].loc[1, "name"] = " "
    ingest_folder(write_folder(tmp_path / "f", tables), wh, CFG, now=NOW)
    con = connect(wh, read_only=True)
    assert con.execute("select name from accounts order by account_id").fetchall() == [
        ("Acme",), ("A2",), ("Initech",)]
    con.close()

    tables["accounts"] = tables["accounts"].drop(columns="name")
    ingest_folder(write_folder(tmp_path / "g", tables), wh, CFG, now=NOW)
    con = connect(wh, read_only=True)
    assert con.execute("select name from accounts order by account_id").fetchall() == [
        ("A1",), ("A2",), ("A3",)]
    con.close()


def test_subscriptions_without_a_status_and_usage_without_users_load(tmp_path, wh):
    tables = good_tables()
    tables["subscriptions"] = tables["subscriptions"].drop(columns="status")
    tables["usage_events"] = tables["usage_events"].drop(columns="user_id")
    report = ingest_folder(write_folder(tmp_path / "f", tables), wh, CFG, now=NOW)
    assert report.loaded and not report.refused
    con = connect(wh, read_only=True)
    assert con.execute("select count(*) from subscriptions where status is null"
                       ).fetchall() == [(3,)]
    assert con.execute("select count(*) from usage_events where user_id is null"
                       ).fetchall() == [(5,)]
    con.close()


def test_timestamps_in_the_future_are_refused_but_contract_ends_may_lie_ahead(tmp_path, wh):
    tables = good_tables()
    tables["tickets"].loc[0, "created_at"] = "2025-03-01"
    refused = _refusal(write_folder(tmp_path / "f", tables), wh)
    (p,) = [p for p in refused.report.problems if p.fatal]
    assert (p.table, p.column, p.examples[0].row) == ("tickets", "created_at", 2)
    assert p.problem.startswith("in the future")


def test_line_numbers_count_quoted_line_breaks_and_blank_lines(tmp_path, wh):
    tables = good_tables()
    folder = write_folder(tmp_path / "f", {k: v for k, v in tables.items() if k != "tickets"})
    (folder / "tickets.csv").write_text(
        "account_id,ticket_id,created_at,resolved_at,priority\r\n"
        'A1,T1,2024-04-01,,"high"\r\n'
        '"A1","T2","2024-04-02",,"urgent"\r\n'
        "\r\n"
        'A2,"T3\r\nsecond line of an id",2024-04-03,,low\r\n'
        "A3,T4,2024-13-01,,normal\r\n")

    refused = _refusal(folder, wh)

    (p,) = [p for p in refused.report.problems if p.fatal]
    assert (p.column, p.examples[0].row, p.examples[0].value) == ("created_at", 7, "2024-13-01")
    assert list(csv_record_lines(folder / "tickets.csv")) == [2, 3, 5, 7]


def test_an_unreadable_csv_names_the_line(folder, wh):
    (folder / "tickets.csv").write_text("account_id,ticket_id\nA1,T1\nA1,T2,extra\n")
    refused = _refusal(folder, wh)
    (p,) = [p for p in refused.report.problems if p.fatal]
    assert p.table == "tickets" and "line 3" in p.problem


# --- policies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("policy, loaded", [("drop", 4), ("keep", 5), ("fail", None)])
def test_duplicate_keys_follow_the_policy(tmp_path, wh, policy, loaded):
    tables = good_tables()
    tickets = tables["tickets"]
    tables["tickets"] = pd.concat([tickets, tickets.iloc[[1]]], ignore_index=True)
    folder = write_folder(tmp_path / "f", tables)
    cfg = IngestConfig(duplicates=policy)

    if loaded is None:
        refused = _refusal(folder, wh, cfg)
        (p,) = [p for p in refused.report.problems if p.fatal]
    else:
        report = ingest_folder(folder, wh, cfg, now=NOW)
        assert report.row_counts()["tickets"] == loaded
        (p,) = [p for p in report.problems if p.problem == "duplicate key"]
    assert (p.table, p.column, p.count, p.examples[0].row) == ("tickets", "ticket_id", 1, 6)
    assert "first on row 3" in p.examples[0].value


def test_events_before_signup_and_usage_before_subscription_can_be_dropped(tmp_path, wh):
    tables = good_tables()
    tables["tickets"].loc[0, "created_at"] = "2022-12-31"     # A1 signed up 2023-01-15
    tables["subscriptions"].loc[2, "start_date"] = "2024-03-04"  # A3's usage starts 03-03
    folder = write_folder(tmp_path / "f", tables)
    cfg = IngestConfig(events_before_signup="drop", usage_before_subscription="drop")

    report = ingest_folder(folder, wh, cfg, now=NOW)

    counts = report.problem_counts()
    assert counts["tickets.created_at: dated before the account's signup (created_at) "
                  "(dropped)"] == 1
    assert counts["usage_events.ts: usage before the account's first subscription start "
                  "(dropped)"] == 1
    assert report.row_counts()["tickets"] == 3
    assert report.row_counts()["usage_events"] == 4


def test_events_before_signup_can_fail_the_load(tmp_path, wh):
    tables = good_tables()
    tables["tickets"].loc[0, "created_at"] = "2022-12-31"
    _refusal(write_folder(tmp_path / "f", tables), wh, IngestConfig(events_before_signup="fail"))


@pytest.mark.parametrize("policy", ["keep", "drop", "fail"])
def test_a_churn_flag_disagreeing_with_churn_events_follows_the_policy(tmp_path, wh, policy):
    tables = good_tables()
    tables["accounts"]["churn_flag"] = ["True", "False", "False"]  # A1 never churned, A2 did
    folder = write_folder(tmp_path / "f", tables)
    cfg = IngestConfig(churn_flag_mismatch=policy)
    if policy == "fail":
        _refusal(folder, wh, cfg)
        return

    report = ingest_folder(folder, wh, cfg, now=NOW)

    (p,) = [p for p in report.problems if p.column == "churn_flag"]
    assert p.count == 2 and [e.row for e in p.examples] == [2, 3]
    con = connect(wh, read_only=True)
    flags = dict(con.execute("select account_id, churn_flag from accounts").fetchall())
    con.close()
    expected = {"A1": True, "A2": False, "A3": False} if policy == "keep" else \
        {"A1": None, "A2": None, "A3": False}
    assert flags == expected


# --- atomicity ---------------------------------------------------------------------------------
def test_a_crash_mid_load_leaves_the_warehouse_unchanged(tmp_path, folder, wh, monkeypatch):
    ingest_folder(folder, wh, CFG, now=NOW)
    before = table_contents(wh)
    tables = good_tables()
    del tables["churn_events"]  # a successful load would drop it
    tables["tickets"].loc[0, "priority"] = "low"
    second = write_folder(tmp_path / "second", tables)
    real, written = ingest_module._write_table, []

    def flaky(con, spec, frame):
        if len(written) == 2:
            raise RuntimeError("disk full")
        real(con, spec, frame)
        written.append(spec.name)

    monkeypatch.setattr(ingest_module, "_write_table", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_folder(second, wh, CFG, now=NOW)

    assert written == ["accounts", "subscriptions"]
    assert table_contents(wh) == before


def test_a_crash_during_a_first_load_leaves_no_warehouse(folder, wh, monkeypatch):
    def boom(con, spec, frame):
        raise RuntimeError("boom")

    monkeypatch.setattr(ingest_module, "_write_table", boom)
    with pytest.raises(RuntimeError):
        ingest_folder(folder, wh, CFG, now=NOW)
    assert not wh.exists()


# --- pure validation ---------------------------------------------------------------------------
def test_validate_tables_is_pure_and_works_on_hand_made_frames():
    tables = good_tables()
    tables["usage_events"]["quantity"] = ["many", "1", "2", "3", "4"]
    result = validate_tables(tables, CFG, now=NOW)

    (p,) = [p for p in result.report.problems if p.fatal]
    assert (p.table, p.column, p.problem) == ("usage_events", "quantity", "not a number")
    assert (p.examples[0].file, p.examples[0].row, p.examples[0].value) == \
        ("usage_events", 1, "many")
    assert str(result.tables["accounts"]["created_at"].dtype) == "datetime64[us]"


def test_max_examples_caps_examples_but_not_counts(tmp_path, wh):
    tables = good_tables()
    tables["usage_events"]["quantity"] = -1
    refused = _refusal(write_folder(tmp_path / "f", tables), wh, IngestConfig(max_examples=2))
    (p,) = [p for p in refused.report.problems if p.fatal]
    assert p.count == 5 and [e.row for e in p.examples] == [1, 2]  # Parquet: 1-based rows


# --- command line ------------------------------------------------------------------------------
def test_cli_ingest_loads_and_prints_row_counts(folder, wh):
    from healthscore.cli import app

    result = CliRunner().invoke(app, ["ingest", str(folder), "--warehouse", str(wh)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "usage_events" in result.output and "not connected" in result.output
    assert wh.exists()


def test_cli_ingest_refuses_bad_input_with_exit_code_1(tmp_path, wh):
    from healthscore.cli import app

    tables = good_tables()
    tables["usage_events"].loc[0, "account_id"] = "A-404"
    folder = write_folder(tmp_path / "f", tables, parquet=())
    result = CliRunner().invoke(app, ["ingest", str(folder), "--warehouse", str(wh)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "usage_events.csv:2" in result.output and "refused" in result.output
    assert not wh.exists()


# --- the generated world ------------------------------------------------------------------------
def test_a_corrupted_generated_world_is_refused(tmp_path, wh):
    generate = pytest.importorskip("features.synth.generate")
    world = generate.generate_world(40, date(2024, 1, 1), 90, seed=3)
    folder = tmp_path / "world"
    generate.write_world(world, folder)
    report = ingest_folder(folder, wh, CFG, now=NOW)
    assert report.loaded and report.row_counts()["usage_events"] == len(
        world.tables["usage_events"])
    before = table_contents(wh)

    usage = world.tables["usage_events"].copy()
    usage["ts"] = usage["ts"].astype(str)
    usage.loc[3, "ts"] = "2024-02-30 12:00:00"
    usage.loc[5, "account_id"] = "ACC-NOPE"
    usage.loc[7, "quantity"] = -3.0
    usage.to_parquet(folder / "usage_events.parquet", index=False)

    refused = _refusal(folder, wh)

    fatal = {(p.column, p.problem.split(" (")[0], p.examples[0].row)
             for p in refused.report.problems if p.fatal}
    assert fatal == {("ts", "not a timestamp", 4), ("account_id", "unknown account_id", 6),
                     ("quantity", "below minimum 0", 8)}
    assert table_contents(wh) == before


def test_warehouse_file_is_readable_by_duckdb_after_load(folder, wh):
    ingest_folder(folder, wh, CFG, now=NOW)
    con = duckdb.connect(str(wh), read_only=True)
    assert con.execute("select count(*) from accounts").fetchone() == (3,)
    con.close()
