from pathlib import Path

import pytest

from healthscore.settings import load_settings


def test_defaults_load_from_the_packaged_yaml():
    s = load_settings()
    assert s.paths.warehouse == Path("data/warehouse.duckdb")
    assert s.training.horizons == (30, 60, 90)


def test_environment_overrides_yaml(monkeypatch):
    monkeypatch.setenv("HEALTHSCORE_SERVING__PORT", "4100")
    assert load_settings().serving.port == 4100


def test_user_file_overrides_defaults(tmp_path):
    f = tmp_path / "hs.yaml"
    f.write_text("paths:\n  warehouse: /tmp/x.duckdb\n")
    assert load_settings(f).paths.warehouse == Path("/tmp/x.duckdb")


def test_unknown_field_is_a_clear_error(tmp_path):
    f = tmp_path / "hs.yaml"
    f.write_text("paths:\n  wharehouse: /tmp/x.duckdb\n")
    with pytest.raises(Exception, match="wharehouse"):
        load_settings(f)


def test_horizons_must_ascend():
    with pytest.raises(Exception, match="ascending"):
        load_settings(training={"horizons": [90, 30]})
