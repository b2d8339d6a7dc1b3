"""Column mappings: a customer's own export is mapped onto the contract by a declarative YAML of
DuckDB expressions; a bad mapping is refused before anything runs, naming the YAML key."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.contract.ingest import IngestRefused, IngestReport, ingest_folder
from features.contract.mapping import MAPPINGS_DIR, MappingError, load_mapping, parse_mapping
from features.contract.settings import IngestConfig
from features.contract.warehouse import connect
from tests.support.ingest_frames import NOW, write_csv

RAVENSTACK = Path(__file__).resolve().parents[1] / "data" / "ravenstack"


# --- RavenStack --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ravenstack(tmp_path_factory) -> tuple[IngestReport, Path]:
    wh = tmp_path_factory.mktemp("rs") / "warehouse.duckdb"
    report = ingest_folder(RAVENSTACK, wh, IngestConfig(),
                           mapping=MAPPINGS_DIR / "ravenstack.yaml", now=NOW)
    return report, wh


def test_ravenstack_loads_the_tables_it_has_and_leaves_the_rest_not_connected(ravenstack):
    report, _ = ravenstack
    assert report.loaded
    assert report.row_counts() == {
        "accounts": 500, "subscriptions": 5000,
        "usage_events": 24979,  # 25,000 rows less the 21 repeated usage_id
        "tickets": 2000, "churn_events": 599, "expansion_events": 246,
    }
    assert report.not_connected == ["surveys", "touchpoints", "invoices"]


def test_ravenstack_data_quality_problems_are_reported_and_counted(ravenstack):
    report, _ = ravenstack
    counts = {(p.table, p.column, p.problem, p.action): p.count for p in report.problems}
    assert counts[("usage_events", "usage_id", "duplicate key", "dropped")] == 21
    assert counts[("churn_events", "account_id, churned_at", "duplicate key", "dropped")] == 1
    assert counts[("usage_events", "ts", "usage before the account's first subscription start",
                   "kept")] == 14203
    assert counts[("tickets", "created_at", "dated before the account's signup (created_at)",
                   "kept")] == 1077
    assert counts[("accounts", "churn_flag", "churn flag disagrees with churn_events",
                   "kept")] == 312
    assert not report.refused


def test_ravenstack_problem_examples_point_at_lines_of_the_export(ravenstack):
    report, _ = ravenstack
    (dup,) = [p for p in report.problems if p.column == "usage_id"]
    first = dup.examples[0]
    assert first.file == "ravenstack_feature_usage.csv"
    line = (RAVENSTACK / first.file).read_text().splitlines()[first.row - 1]
    assert line.startswith(first.value.split(" ")[0] + ",")
    assert "(first on row 770)" in first.value


def test_ravenstack_columns_are_mapped_onto_the_contract(ravenstack):
    _, wh = ravenstack
    con = connect(wh, read_only=True)
    try:
        account = con.execute(
            "select name, segment, region, plan, created_at, owner, referral_source, is_trial, "
            "churn_flag from accounts where account_id = 'A-2e4581'").fetchall()[0]
        segments = {r[0] for r in con.execute("select distinct segment from accounts").fetchall()}
        priorities = {r[0] for r in con.execute("select distinct priority from tickets"
                                                ).fetchall()}
        statuses = {r[0] for r in con.execute("select distinct status from subscriptions"
                                              ).fetchall()}
        placeholder = con.execute(
            "select count(*) from usage_events where not starts_with(user_id, 'S-')"
        ).fetchall()[0][0]
        arr = con.execute("select arr from accounts where account_id = 'A-3c1a3f'").fetchall()
        types = dict(con.execute("select column_name, data_type from information_schema.columns"
                                 " where table_name = 'accounts'").fetchall())
    finally:
        con.close()
    assert account[:4] == ("Company_0", "smb", "US", "Basic")
    assert str(account[4]) == "2024-10-16 00:00:00" and account[5] is None
    assert account[6:] == ("partner", False, False)
    assert segments == {"enterprise", "mid-market", "smb"}
    assert priorities == {"low", "normal", "high", "urgent"}  # medium -> normal
    assert statuses == {"active", "cancelled", "trial"}
    assert placeholder == 0  # user_id is the subscription id (RavenStack has no user id)
    assert arr == [(1596.0,)]  # ARR of the account's latest subscription (2024-10-26)
    assert types["is_trial"] == "BOOLEAN" and types["referral_source"] == "VARCHAR"


def test_the_packaged_mapping_is_found_by_name():
    assert load_mapping("ravenstack").tables["accounts"].source == "rs_accounts"


# --- a small export of our own -----------------------------------------------------------------
def _export(folder: Path) -> Path:
    folder.mkdir()
    write_csv(pd.DataFrame({
        "Customer ID": ["0042", "0043", "9999"],
        "Company": ["Acme", "Globex", "Internal test"],
        "Tier": ["Enterprise", "SMB", "SMB"],
        "Since": ["2023-01-01", "2023-02-01", "2023-03-01"],
        "is_test": ["no", "no", "yes"],
    }), folder / "crm.csv")
    for month, rows in (("01", [("0042", "2024-01-05", "P1")]),
                        ("02", [("0043", "2024-02-07", "P3"), ("0042", "2024-02-09", "P2")])):
        write_csv(pd.DataFrame(rows, columns=["cust", "opened", "prio"])
                  .assign(id=lambda d, m=month: [f"{m}-{i}" for i in range(len(d))]),
                  folder / f"tickets_2024_{month}.csv")
    return folder


EXPORT_MAPPING = {
    "sources": {
        "crm": {"file": "crm.csv", "types": {"Customer ID": "VARCHAR"}},
        "tix": "tickets_2024_*.csv",
    },
    "tables": {
        "accounts": {
            "source": "crm",
            "where": "NOT is_test",
            "columns": {"account_id": '"Customer ID"', "name": "Company",
                        "segment": "lower(Tier)", "created_at": "Since"},
            "defaults": {"industry": None, "region": "EU", "plan": None, "seats": None,
                         "arr": None, "owner": None},
        },
        "tickets": {
            "source": "tix",
            "columns": {"account_id": "cust", "ticket_id": "id", "created_at": "opened",
                        "resolved_at": None, "priority": "prio"},
            "values": {"priority": {"P1": "urgent", "P2": "high", "P3": "normal"}},
        },
    },
}


def test_a_mapping_with_glob_value_map_defaults_and_row_filter(tmp_path):
    folder = _export(tmp_path / "export")
    wh = tmp_path / "wh.duckdb"

    report = ingest_folder(folder, wh, IngestConfig(), mapping=parse_mapping(EXPORT_MAPPING),
                           now=NOW)

    assert report.row_counts() == {"accounts": 2, "tickets": 3}
    assert report.tables["tickets"].files == ("tickets_2024_01.csv", "tickets_2024_02.csv")
    con = connect(wh, read_only=True)
    accounts = con.execute("select account_id, segment, region from accounts order by 1"
                           ).fetchall()
    tickets = con.execute("select ticket_id, account_id, priority from tickets order by 1"
                          ).fetchall()
    con.close()
    assert accounts == [("0042", "enterprise", "EU"), ("0043", "smb", "EU")]  # zeros kept
    assert tickets == [("01-0", "0042", "urgent"), ("02-0", "0043", "normal"),
                       ("02-1", "0042", "high")]


def test_a_mapped_row_with_a_bad_value_is_reported_at_its_line_in_its_file(tmp_path):
    folder = _export(tmp_path / "export")
    (folder / "tickets_2024_02.csv").write_text(
        "cust,opened,prio,id\r\n0043,2024-02-07,P3,02-0\r\n0042,2024-02-31,P2,02-1\r\n")

    with pytest.raises(IngestRefused) as info:
        ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(),
                      mapping=parse_mapping(EXPORT_MAPPING), now=NOW)

    (p,) = [p for p in info.value.report.problems if p.fatal]
    assert (p.table, p.column, p.problem) == ("tickets", "created_at", "not a timestamp")
    assert (p.examples[0].file, p.examples[0].row, p.examples[0].value) == \
        ("tickets_2024_02.csv", 3, "2024-02-31")


def test_a_file_the_mapping_does_not_use_is_reported_not_fatal(tmp_path):
    folder = _export(tmp_path / "export")
    (folder / "readme.txt").write_text("export of 2024")
    report = ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(),
                           mapping=parse_mapping(EXPORT_MAPPING), now=NOW)
    (p,) = [p for p in report.problems if p.action == "ignored"]
    assert p.examples[0].file == "readme.txt"


def test_mapping_sources_may_name_files_outside_the_data_folder(tmp_path):
    folder = _export(tmp_path / "export")
    outside = tmp_path / "exports"
    outside.mkdir()
    for f in folder.glob("tickets_*.csv"):
        f.rename(outside / f.name)
    crm = tmp_path / "crm" / "crm.csv"
    crm.parent.mkdir()
    (folder / "crm.csv").rename(crm)
    mapping = _with("sources.tix", "../exports/tickets_2024_*.csv")
    mapping["sources"]["crm"]["file"] = str(crm)

    report = ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(),
                           mapping=parse_mapping(mapping), now=NOW)

    assert report.row_counts() == {"accounts": 2, "tickets": 3}
    assert report.tables["accounts"].files == (crm.resolve().as_posix(),)
    # The unused-file check is about the data folder: nothing in it is left unread.
    assert not [p for p in report.problems if p.action == "ignored"]


def test_a_bad_row_in_a_file_outside_the_data_folder_names_that_file(tmp_path):
    folder = _export(tmp_path / "export")
    outside = tmp_path / "exports"
    outside.mkdir()
    (folder / "tickets_2024_01.csv").rename(outside / "tickets_2024_01.csv")
    (folder / "tickets_2024_02.csv").unlink()
    (outside / "tickets_2024_01.csv").write_text(
        "cust,opened,prio,id\r\n0042,2024-13-01,P1,01-0\r\n")
    mapping = parse_mapping(_with("sources.tix", "../exports/tickets_2024_*.csv"))

    with pytest.raises(IngestRefused) as info:
        ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(), mapping=mapping, now=NOW)

    (p,) = [p for p in info.value.report.problems if p.fatal]
    assert (p.table, p.column) == ("tickets", "created_at")
    assert p.examples[0].file == (outside / "tickets_2024_01.csv").resolve().as_posix()
    assert p.examples[0].row == 2


def test_a_missing_file_outside_the_data_folder_is_named(tmp_path):
    folder = _export(tmp_path / "export")
    mapping = parse_mapping(_with("sources.tix", "../nowhere/tickets.csv"))
    with pytest.raises(IngestRefused) as info:
        ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(), mapping=mapping, now=NOW)
    (p,) = [p for p in info.value.report.problems if p.fatal]
    assert "../nowhere/tickets.csv" in p.problem


# --- the mapping file itself -------------------------------------------------------------------
def _with(path: str, value) -> dict:
    """EXPORT_MAPPING with one key (dotted path) replaced."""
    data = yaml.safe_load(yaml.safe_dump(EXPORT_MAPPING))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize("path, value, message", [
    ("tables.tickets.columns.priorty", "prio", "tables.tickets.columns.priorty: not a column"),
    ("tables.tickets.source", "tickets", "tables.tickets.source: unknown source 'tickets'"),
    ("tables.tickets.columns", {"account_id": "cust"},
     "tables.tickets.columns.ticket_id: required by the contract but not mapped"),
    ("tables.tickets.attributes", {"x": "y"}, "tables.tickets.attributes: only accounts"),
    ("tables.tickets.colums", {}, "tables.tickets.colums: Extra inputs are not permitted"),
    ("tables.tickts", {"source": "tix"}, "tables.tickts: not a contract table"),
    ("sources.crm.file", " ", "sources.crm.file: empty file name"),
    ("tables.tickets.values.priority", ["P1"], "tables.tickets.values.priority"),
])
def test_an_invalid_mapping_is_refused_naming_the_yaml_key(path, value, message):
    with pytest.raises(MappingError) as info:
        parse_mapping(_with(path, value), "m.yaml")
    assert message in str(info.value)
    assert "m.yaml" in str(info.value)


def test_a_failing_expression_names_its_yaml_key(tmp_path):
    folder = _export(tmp_path / "export")
    mapping = parse_mapping(_with("tables.accounts.columns.name", "Compnay"))
    with pytest.raises(MappingError, match=r"tables\.accounts\.columns\.name: .*Compnay"):
        ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(), mapping=mapping, now=NOW)
    assert not (tmp_path / "wh.duckdb").exists()


def test_an_expression_cannot_smuggle_another_statement(tmp_path):
    folder = _export(tmp_path / "export")
    mapping = parse_mapping(_with("tables.accounts.columns.name",
                                  "Company); DROP TABLE crm; SELECT (1"))
    with pytest.raises(MappingError, match="tables.accounts"):
        ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(), mapping=mapping, now=NOW)


def test_a_source_without_files_is_refused(tmp_path):
    folder = _export(tmp_path / "export")
    mapping = parse_mapping(_with("sources.tix", "support_*.csv"))
    with pytest.raises(IngestRefused) as info:
        ingest_folder(folder, tmp_path / "wh.duckdb", IngestConfig(), mapping=mapping, now=NOW)
    (p,) = [p for p in info.value.report.problems if p.fatal]
    assert p.table == "tix" and "support_*.csv" in p.problem


def test_a_mapping_file_that_is_not_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(bad)
    with pytest.raises(MappingError, match="not found"):
        load_mapping(tmp_path / "missing.yaml")
