"""The one typed configuration object.

Defaults live in `features/defaults.yaml`; a user file (`--config FILE` or `HEALTHSCORE_CONFIG`)
overrides them, and `HEALTHSCORE_<SECTION>__<FIELD>` environment variables override both.
Build it once at an entry point (`load_settings()`) and pass the section a function needs:
nothing here runs at import.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
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
    """Event rows dated before the day of their account's created_at: drop, keep, or refuse."""
    usage_before_subscription: Policy = "keep"
    """usage_events rows dated before the account's first subscription start."""
    churn_flag_mismatch: Policy = "keep"
    """An accounts churn-flag attribute that disagrees with churn_events: drop blanks the
    disagreeing flags (the attribute stays, those cells become empty), keep, or refuse."""
    churn_flag_column: str = "churn_flag"
    """Name of the accounts custom attribute checked against churn_events ("" for none)."""
    max_examples: int = Field(default=5, ge=0)
    """Examples shown per problem in a validation report."""


class FeatureConfig(_Section):
    windows: tuple[int, ...] = (7, 30, 90)
    attribute_prefix: str = "attr_"
    online_max_entities: int = Field(100, ge=0)
    """Up to this many distinct entity rows (the online path), fetch the entities' rows and run
    the definitions on SQLite, compiled once per warehouse schema (features/sqlite_engine.py;
    measured: one account 25-30 ms, 100 accounts half the batch path's time); beyond it, run
    them in DuckDB, compiled per call with the entities' time range as literal bounds."""
    online_row_index_max_rows: int = Field(10_000_000, ge=0)
    """For a read-only warehouse (the service's snapshot) of up to this many rows in the tables
    the definitions read, hold them in memory by account (features/account_rows.py): the
    online path then slices an account's rows instead of running a DuckDB statement per table.
    Costs the rows' memory, ~65 MB a million rows (measured); 0 turns it off."""
    literal_account_filter_max: int = Field(1000, ge=0)
    """Up to this many entity accounts, sources are filtered with a literal IN list (pushed into
    the scan: a one-account build reads little); beyond it, with a semi join on the entities."""


class HealthConfig(_Section):
    rules_file: Path | None = None
    """YAML of rules profiles; None means the packaged default."""
    trend_days: int = 7
    trend_dead_band: float = 3.0
    validation_warmup_days: int = Field(90, ge=0)
    """validate-score: first as-of date this many days after the first activity in the data."""
    weights_fit_share: float = Field(0.6, gt=0, lt=1)
    """validate-score: share of the as-of dates used to fit suggested weights; the later rest
    (after a gap of the horizon) measures their AUC gain over the current weights."""


class TrainingConfig(_Section):
    horizons: tuple[int, ...] = (30, 60, 90)
    seed: int = 42
    as_of_frequency: str = "MS"
    """pandas offset alias for training as-of dates (month start). The time splits are carved
    from these dates: the early-stopping, calibration and test windows hold only them."""
    train_as_of_frequency: str | None = None
    """Extra as-of dates (a pandas offset alias, e.g. W-MON) for the training window only: more
    snapshots of the same accounts to fit on, while the later windows keep `as_of_frequency`'s
    dates. None: training uses the same dates as the other windows. (W-MON on the demo world:
    see tests/test_train_world.py for what it changed.)"""
    n_folds: int = 3
    promotion_margin: float = 0.005
    """ROC AUC a challenger must gain over the champion to take the alias."""
    as_of_start: date | None = None
    """First training as-of date; None: the start of the data plus the longest feature window."""
    as_of_end: date | None = None
    """Last training as-of date; None: the last date the shortest horizon can still label."""
    targets: tuple[Literal["churn", "expansion"], ...] = ("churn", "expansion")
    # LightGBM: small trees and a tree cap keep per-row SHAP cheap at serving time.
    num_leaves: int | tuple[int, ...] = (4, 8, 16)
    """Leaves per tree: one value, or candidates of which each model keeps the one with the
    lowest log loss on its own early-stopping window (each candidate early-stopped there), so
    the choice never sees the calibration or test rows (`training.model.fit_booster`). The
    default grid was set before measuring: today's 4, doubled twice; 16 bounds the serving
    SHAP cost (linear in leaves)."""
    learning_rate: float = Field(0.05, gt=0)
    max_trees: int = Field(300, ge=1)
    min_child_samples: int = Field(40, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(30, ge=1)
    monotone_churn: bool = True
    """Constrain churn models to the registry's direction: risk never rises with a feature whose
    `higher_is_healthier` is True, nor falls with one where it is False (neutral features free).
    On by default (issue 4 measurements): a CSM never sees a model that calls fewer logins
    safer."""
    monotone_method: Literal["basic", "intermediate", "advanced"] = "intermediate"
    """LightGBM `monotone_constraints_method` (stricter to looser, cheaper to dearer). LightGBM
    documents `basic` as over-constraining and `intermediate` as much less so. With `basic`, a
    usage-cut account's usage factors often did not lead its explanation
    (docs/experiments/README.md); bench_train measured no slowdown."""
    num_threads: int = Field(1, ge=1)
    """Fixed so a seed reproduces the same trees. One thread is also the fastest on a shared
    2-core machine (OpenMP threads spin while the cores are busy); raise it on a dedicated one."""
    # Chronological windows, in as-of dates, carved from the end of the labelled dates.
    valid_dates: int = Field(2, ge=1)
    """Early-stopping window."""
    calib_dates: int = Field(2, ge=1)
    """Calibration window (its own, after the early-stopping one)."""
    test_dates: int = Field(2, ge=1)
    """Held-out window of each backtest fold."""
    isotonic_min_positives: int = Field(100, ge=1)
    """Positives the calibration window needs for isotonic calibration; fewer: sigmoid."""
    min_auc: float = 0.55
    """Backtest ROC AUC a model needs before it can be champion at all."""
    cv_folds: int = Field(5, ge=2)
    """Bring-your-own-table mode without a time column: stratified folds."""
    leakage_auc: float = Field(0.98, gt=0.5, le=1)
    """A single feature ranking the label better than this is reported as likely leakage."""
    experiment: str = "healthscore"
    """MLflow experiment name."""
    shap_rows: int = Field(2000, ge=10)
    """Rows sampled from the test window for the SHAP summary plot."""

    @field_validator("num_leaves")
    @classmethod
    def _leaf_candidates(cls, v: int | tuple[int, ...]) -> int | tuple[int, ...]:
        values = (v,) if isinstance(v, int) else v
        if not values or min(values) < 2 or len(set(values)) != len(values):
            raise ValueError("training.num_leaves: one value or distinct values, each >= 2")
        return v

    @property
    def leaf_candidates(self) -> tuple[int, ...]:
        """`num_leaves` as candidates (one for a single value)."""
        # A config copied with `model_copy(update=...)` (a champion's logged params, a test's
        # variant) is not validated again: accept an int or any sequence (a JSON list).
        v = self.num_leaves
        return (int(v),) if isinstance(v, int) else tuple(int(x) for x in v)


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 3000
    top_k_factors: int = 5
    workers: int = Field(1, ge=1)
    """`bentoml serve` worker processes."""
    request_timeout_seconds: float = Field(10.0, gt=0)
    """A request that has not started its response by then gets 504 (BentoML's traffic
    timeout). Keep it short: BentoML holds every request's timer, ~0.7 kB, until the timeout
    passes even when the request is long answered, so memory rises for this long under load
    (1,500 requests/s x 10 s: ~10 MB) before it levels off (measured; 120 s grew ~90 MB)."""
    tracing: bool = False
    """OpenTelemetry spans for API requests. Off, BentoML's tracing middleware skips `/v1`:
    with no exporter it builds unsampled spans for nothing, a third of a `predict`'s CPU
    (profiled). On, BentoML's own `tracing` settings (sample rate, exporter) apply."""
    admin_key: SecretStr | None = None
    """Bootstrap admin API key (set HEALTHSCORE_SERVING__ADMIN_KEY); stored hashed on start."""
    key_cache_seconds: float = Field(5.0, ge=0)
    """How long a checked API key is trusted before the store is asked again."""
    precompute: bool = True
    """Score every warehouse account at start-up and on each new snapshot (fast lookups)."""
    feature_cache_size: int = Field(2048, ge=0)
    warehouse_check_seconds: float = Field(1.0, ge=0)
    """How often a worker looks for a changed warehouse file or rules version."""
    score_change_points: float = Field(5.0, gt=0)
    """Score.declined / Score.improved fire on a move of at least this many points."""
    risk_increase_points: float = Field(10.0, gt=0)
    """Risk.increased fires when the churn probability rises this many percentage points."""
    alert_drop_points: float = Field(10.0, gt=0)
    alert_churn_probability: float = Field(0.5, gt=0, le=1)
    alert_cooldown_hours: float = Field(24.0, ge=0)
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_backoff_seconds: float = Field(2.0, ge=0)
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    delivery_poll_seconds: float = Field(0.5, gt=0)


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
