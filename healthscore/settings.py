"""The one typed settings object, composed of each part's own section.

Defaults live in `healthscore/defaults.yaml`; a user file (`--config FILE` or `HEALTHSCORE_CONFIG`)
overrides them, and `HEALTHSCORE_<SECTION>__<FIELD>` environment variables override both.
An entry point (the CLI, the service) builds it once with `load_settings()` and passes each
function the section it needs: nothing here runs at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from features.contract.settings import IngestConfig
from features.settings import FeatureConfig, PathsConfig, SparkConfig
from scoring.portfolio.settings import PortfolioConfig
from scoring.settings import HealthConfig
from serving.settings import ServingConfig
from training.settings import TrainingConfig

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HEALTHSCORE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    paths: PathsConfig = PathsConfig()
    ingest: IngestConfig = IngestConfig()
    features: FeatureConfig = FeatureConfig()
    health: HealthConfig = HealthConfig()
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    spark: SparkConfig = SparkConfig()

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
