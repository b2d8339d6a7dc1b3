"""The data-contract page is the rendering of the code that enforces it, nothing else."""

from __future__ import annotations

from features.contract import doc as contract_doc
from features.contract.mapping import TableMapping
from features.contract.settings import IngestConfig
from features.contract.tables import TABLES


def test_the_docs_page_equals_the_rendered_contract():
    assert contract_doc.DOC_PATH.read_text() == contract_doc.render(), (
        "docs/data-contract.md is stale: run `python -m features.contract.doc`")


def test_every_table_and_column_is_documented():
    page = contract_doc.render()
    for table in TABLES:
        assert f"### `{table.name}`" in page
        for col in table.columns:
            assert f"| `{col.name}` | {col.type} |" in page
            assert col.description, f"{table.name}.{col.name} has no description"


def test_the_page_states_the_rules_of_the_folder():
    page = contract_doc.render()
    for fact in ("One file per table", "`<table>.csv` or `<table>.parquet`",
                 "Only `accounts` is required", "**not connected**",
                 "Extra columns of `accounts` are custom attributes", "CRLF",
                 "warehouse stays exactly as it was", "`ingest_log`"):
        assert fact in page


def test_every_ingest_policy_is_documented_with_its_default():
    docs = contract_doc.field_docs(IngestConfig)
    page = contract_doc.render()
    for name in IngestConfig.model_fields:
        assert docs.get(name), f"IngestConfig.{name} needs a docstring: it is rendered"
        assert f"| `ingest.{name}` | `{getattr(IngestConfig(), name)!r}` |" in page


def test_every_mapping_key_is_documented():
    docs = contract_doc.field_docs(TableMapping)
    assert set(docs) == set(TableMapping.model_fields)


def test_the_module_rewrites_the_page_and_check_reports_staleness(tmp_path, monkeypatch, capsys):
    page = tmp_path / "docs" / "data-contract.md"
    monkeypatch.setattr(contract_doc, "DOC_PATH", page)

    assert contract_doc.main(["--check"]) == 1
    assert contract_doc.main([]) == 0
    assert page.read_text() == contract_doc.render()
    assert contract_doc.main(["--check"]) == 0
    capsys.readouterr()
    assert contract_doc.main([]) == 0
    assert "up to date" in capsys.readouterr().out
