"""The one typed configuration object.

Defaults live in `features/defaults.yaml`; a user file (`--config FILE` or `HEALTHSCORE_CONFIG`)
overrides them, and `HEALTHSCORE_<SECTION>__<FIELD>` environment variables override both.
Build it once at an entry point (`load_settings()`) and pass the section a function needs:
nothing here runs at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")

Policy = Literal["drop", "keep", "fail"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    data_dir: Path = Path("data/raw")
    """Folder of input tables (one file per table)."""
    warehouse: Path = Path("data/warehouse.duckdb")
    store_url: str = "sqlite:///data/scores.db"
    """SQLAlchemy URL of the score store (scores, alerts, events)."""
    mlflow_uri: str = "sqlite:///mlruns.db"
    mlflow_artifacts: Path = Path("mlruns")
    models_dir: Path = Path("models")


class IngestConfig(_Section):
    duplicates: Policy = "drop"
    """Rows whose key repeats: keep the first (drop), keep all, or refuse the load."""
    events_before_signup: Policy = "keep"
    churn_flag_mismatch: Policy = "keep"
    max_examples: int = 5
    """Examples shown per problem in a validation report."""


class FeatureConfig(_Section):
    windows: tuple[int, ...] = (7, 30, 90)
    attribute_prefix: str = "attr_"


class HealthConfig(_Section):
    rules_file: Path | None = None
    """YAML of rules profiles; None means the packaged default."""
    trend_days: int = 7
    trend_dead_band: float = 3.0


class TrainingConfig(_Section):
    horizons: tuple[int, ...] = (30, 60, 90)
    seed: int = 42
    as_of_frequency: str = "MS"
    """pandas offset alias for training as-of dates (month start)."""
    n_folds: int = 3
    promotion_margin: float = 0.005
    """ROC AUC a challenger must gain over the champion to take the alias."""


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 3000
    top_k_factors: int = 5


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HEALTHSCORE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    paths: PathsConfig = Field(default_factory=PathsConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

    @field_validator("training")
    @classmethod
    def _horizons_sorted(cls, v: TrainingConfig) -> TrainingConfig:
        if list(v.horizons) != sorted(set(v.horizons)) or not v.horizons:
            raise ValueError("training.horizons must be distinct and ascending")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments > environment > YAML files (user over defaults).
        return (init_settings, env_settings)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: packaged defaults, then the user file, then environment, then overrides.

    Environment variables win over the YAML files because pydantic-settings reads them for any
    field not passed explicitly; so the YAML values are merged first and only the sections the
    environment does not touch are passed in.
    """
    data = _read_yaml(DEFAULTS_FILE)
    user = config_file or (Path(os.environ["HEALTHSCORE_CONFIG"])
                           if os.environ.get("HEALTHSCORE_CONFIG") else None)
    if user is not None:
        data = _deep_merge(data, _read_yaml(Path(user)))
    data = _deep_merge(data, overrides)
    env = {k[len("HEALTHSCORE_"):].lower(): v for k, v in os.environ.items()
           if k.startswith("HEALTHSCORE_") and k != "HEALTHSCORE_CONFIG"}
    for key, value in env.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = yaml.safe_load(value)
    return Settings(**data)
