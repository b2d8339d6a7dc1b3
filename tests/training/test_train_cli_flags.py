"""`healthscore train` has a flag for every training setting: a flag overrides the config file,
which overrides the defaults, and an invalid value is reported against its flag."""

import pytest
import typer
from typer.testing import CliRunner

from healthscore.cli import app
from training.settings import TrainingConfig, flag_name


def _train_options() -> set[str]:
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def test_every_training_setting_has_a_flag():
    options = _train_options()
    missing = [f for f in TrainingConfig.model_fields if flag_name(f) not in options]
    assert missing == []
    # a switch for each bool, both ways
    for name, info in TrainingConfig.model_fields.items():
        if info.annotation is bool:
            assert f"--no-{flag_name(name)[2:]}" in options


def test_every_flag_has_help_from_its_setting():
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    for p in command.params:
        if p.name in TrainingConfig.model_fields:
            assert p.help and "Default:" in p.help, p.name


@pytest.fixture
def captured(monkeypatch):
    """The training settings a `train` run would use (the job itself is not run)."""
    seen = {}

    def fake_job(settings, **kwargs):
        seen["training"] = settings.training
        raise typer.Exit(0)

    monkeypatch.setattr("training.pipeline.run_training_job", fake_job)
    return seen


def test_a_flag_overrides_the_config_file_which_overrides_the_defaults(captured, tmp_path):
    config = tmp_path / "hs.yaml"
    config.write_text("training:\n  valid_dates: 3\n  n_folds: 2\n  horizons: [30, 60]\n")
    result = CliRunner().invoke(app, [
        "--config", str(config), "train", "--truth", str(tmp_path / "none.parquet"),
        "--valid-dates", "1", "--horizons", "30", "--num-leaves", "4,8",
        "--no-monotone-churn", "--as-of-start", "2024-04-01", "--targets", "churn"])
    assert result.exit_code == 0, result.output
    cfg = captured["training"]
    assert cfg.valid_dates == 1 and cfg.horizons == (30,)  # flags
    assert cfg.n_folds == 2  # the config file
    assert cfg.calib_dates == TrainingConfig().calib_dates  # the default
    assert cfg.num_leaves == (4, 8) and cfg.monotone_churn is False
    assert str(cfg.as_of_start) == "2024-04-01" and cfg.targets == ("churn",)


@pytest.mark.parametrize(("flag", "value"), [("--valid-dates", "0"), ("--horizons", "60,30"),
                                             ("--learning-rate", "fast"),
                                             ("--as-of-end", "May")])
def test_an_invalid_value_names_its_flag(captured, flag, value):
    result = CliRunner().invoke(app, ["train", flag, value])
    assert result.exit_code == 2
    assert flag in result.output and "training" not in captured
