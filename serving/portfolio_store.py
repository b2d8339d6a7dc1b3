"""Store tables of portfolio intelligence, on the score store's `Base`: the lifecycle journey
(one row per change of an account's stage, with its date and cause) and the usage anomalies the
daily job detected (one row per account, metric and as-of date, with its evidence and the alert
it belongs to). Created by migration 0004. The rows are decided elsewhere (scoring.portfolio,
scoring.anomalies); writing them with their events and alerts is serving.portfolio.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from serving.store import Base


class JourneyEntry(Base):
    """An account entered `stage` on `as_of` (from `from_stage`, None for its first entry)."""

    __tablename__ = "lifecycle_journey"
    __table_args__ = (UniqueConstraint("account_id", "as_of", name="uq_journey_account_day"),
                      Index("ix_lifecycle_journey_as_of", "as_of"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(200), nullable=False)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    stage: Mapped[str] = mapped_column(String(32), nullable=False)
    from_stage: Mapped[str | None] = mapped_column(String(32))
    cause: Mapped[str] = mapped_column(Text, nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class UsageAnomaly(Base):
    """A window of an account's usage metric far from its weekday pattern, judged on `as_of`."""

    __tablename__ = "usage_anomalies"
    __table_args__ = (UniqueConstraint("account_id", "metric", "as_of",
                                       name="uq_anomaly_account_metric_day"),
                      Index("ix_usage_anomalies_as_of", "as_of"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(200), nullable=False)
    metric: Mapped[str] = mapped_column(String(64), nullable=False)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    window_start: Mapped[date] = mapped_column(Date, nullable=False)
    window_end: Mapped[date] = mapped_column(Date, nullable=False)
    expected: Mapped[float] = mapped_column(Float, nullable=False)
    observed: Mapped[float] = mapped_column(Float, nullable=False)
    change: Mapped[float] = mapped_column(Float, nullable=False)
    """(observed - expected) / expected."""
    z: Mapped[float] = mapped_column(Float, nullable=False)
    direction: Mapped[str] = mapped_column(String(8), nullable=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    """Per-day expected and observed values and the portfolio's common factor."""
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    """The alert it raised or that was already open for it; None in the cool-down."""
    notified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    """It raised a new alert and an `anomaly.detected` event (not a repeat of an open one)."""
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
