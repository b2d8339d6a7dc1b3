"""Settings of the service: bind address, workers, keys, caches, events, alerts, webhooks."""

from __future__ import annotations

import ipaddress
from datetime import time

from pydantic import Field, SecretStr, field_validator

from features.settings import Section


class ServingConfig(Section):
    host: str = "127.0.0.1"
    port: int = 3000
    top_k_factors: int = 5
    workers: int = Field(1, ge=1)
    """`bentoml serve` worker processes."""
    request_timeout_seconds: float = Field(10.0, gt=0)
    """A request that has not started its response by then gets 504 (BentoML's traffic
    timeout). Keep it short: BentoML holds every request's timer until the timeout passes even
    when the request is long answered, so under load memory rises for this long before it
    levels off, by an amount proportional to the timeout (bench/RESULTS.md)."""
    tracing: bool = False
    """OpenTelemetry spans for API requests. Off, BentoML's tracing middleware skips `/v1`:
    with no exporter it builds unsampled spans for nothing, a large share of a `predict`'s
    CPU (bench/RESULTS.md). On, BentoML's own `tracing` settings (sample rate, exporter)
    apply."""
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
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest request body accepted; a larger one gets 413 before it is read (a declared
    Content-Length over the limit is refused at once, a streamed body when it passes it)."""
    rate_limit: str | None = None
    """Requests each API key may make, in the `limits` package's notation (`"20/second"`,
    `"100/second;3000/minute"`); over it a request gets 429 with `Retry-After`. Counted per
    worker process. None (the default, and the demo's): no limit."""
    idempotency_hours: float = Field(24.0, gt=0)
    """How long a POST's `Idempotency-Key` and its stored response are kept: a client retrying
    within this time gets the first answer again instead of a second change."""
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_backoff_seconds: float = Field(2.0, ge=0)
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    delivery_poll_seconds: float = Field(0.5, gt=0)
    webhook_allow_hosts: tuple[str, ...] = ()
    """Host names, addresses or CIDR blocks a webhook may reach although they are loopback,
    private, link-local or otherwise not public (serving.webhook_targets), e.g.
    `HEALTHSCORE_SERVING__WEBHOOK_ALLOW_HOSTS='["127.0.0.1", "10.1.0.0/16"]'`. Empty: webhooks
    reach public hosts only."""
    webhook_lease_seconds: float = Field(60.0, gt=0)
    """A claimed delivery becomes another worker's to retry after this long: what a worker
    killed mid-delivery delays its claims by."""

    session_secret: SecretStr | None = None
    """Key that signs the dashboard's session cookies (HEALTHSCORE_SERVING__SESSION_SECRET);
    every worker must share it. Unset: a random key kept in `session.key` beside the warehouse,
    made on first start (so sign-ins survive a restart and work across workers)."""
    session_hours: float = Field(8.0, gt=0)
    """A dashboard sign-in lasts this long; then the API key is asked again."""
    session_secure_cookie: bool = False
    """Mark the session cookie Secure (only sent over HTTPS): on behind a TLS proxy."""
    dashboard_page_size: int = Field(50, ge=5, le=500)
    """Accounts per page of the portfolio table."""
    dashboard_timeline_days: int = Field(90, ge=7, le=730)
    """How far back an account's engagement timeline reaches."""
    daily_schedule: bool = True
    """Run the daily scoring inside the service at `daily_at` (one worker of all of them runs
    it: a store-level lock). Off for a deployment that runs `healthscore score` from cron."""
    daily_at: time = time(4, 0)
    """UTC time of day of the daily scoring."""
    daily_poll_seconds: float = Field(30.0, gt=0)
    """How often a worker looks whether the daily run is due (and tasks have fallen due)."""
    daily_lock_minutes: float = Field(120.0, gt=0)
    """Lease of the daily run's lock: a worker killed mid-run leaves it to another after this."""
    monitor_psi: float = Field(0.2, gt=0)
    """A feature's or score's PSI against the training reference above this raises an alert."""
    monitor_min_auc: float = Field(0.6, gt=0, le=1)
    """A realised ROC AUC (matured labels) below this raises an alert."""
    monitor_bins: int = Field(10, ge=2, le=100)
    """Quantile bins of the training reference the PSI is measured over."""
    monitor_min_rows: int = Field(200, ge=1)
    """Fewest rows (of a segment, or of matured labels) a PSI or an AUC is reported for: over
    10 bins a PSI of n rows has a noise floor near 10/n, so fewer rows would raise alerts on
    noise alone."""

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _allow_entries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for entry in v:
            text = entry.strip().strip("[]")
            if _network(text):
                continue
            if not text or any(c.isspace() or c in "/:@" for c in text):
                raise ValueError(f"webhook_allow_hosts: {entry!r} is neither a host name nor "
                                 "an address or CIDR block")
        return v


def _network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True
