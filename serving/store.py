"""The score store: health scores written by `healthscore score`, read by summaries and trends.

Owns the SQLAlchemy 2 ORM model of the `health_scores` table, opening a store (the Alembic
migrations in `serving/migrations/` are applied on open, so a new file or database is ready to
use), and the two operations the rest of HealthScore needs: replace the scores of an as-of date in
one transaction (idempotent; a failure leaves the store as it was) and read scores back. It is a
SQLite file by default (`Settings.paths.store_url`) and PostgreSQL in production, separate from
the DuckDB warehouse. It computes no scores.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    String,
    create_engine,
    delete,
    insert,
    select,
    tuple_,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
DIMENSIONS = ("engagement", "adoption", "usage", "support", "satisfaction", "value",
              "relationship")


class Base(DeclarativeBase):
    pass


class HealthScoreRecord(Base):
    """One account's rules score as of one date (the row `score_frame` returns)."""

    __tablename__ = "health_scores"
    __table_args__ = (Index("ix_health_scores_as_of", "as_of"),)

    account_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    score: Mapped[float | None] = mapped_column(Float)
    grade: Mapped[str | None] = mapped_column(String(8))
    band: Mapped[str | None] = mapped_column(String(64))
    colour: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16))
    trend: Mapped[str | None] = mapped_column(String(16))
    previous_score: Mapped[float | None] = mapped_column(Float)
    dim_engagement: Mapped[float | None] = mapped_column(Float)
    dim_adoption: Mapped[float | None] = mapped_column(Float)
    dim_usage: Mapped[float | None] = mapped_column(Float)
    dim_support: Mapped[float | None] = mapped_column(Float)
    dim_satisfaction: Mapped[float | None] = mapped_column(Float)
    dim_value: Mapped[float | None] = mapped_column(Float)
    dim_relationship: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    missing: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    coverage: Mapped[float] = mapped_column(Float, nullable=False)
    profile: Mapped[str] = mapped_column(String(100), nullable=False)
    config_version: Mapped[str] = mapped_column(String(64), nullable=False)
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


SCORE_FIELDS: tuple[str, ...] = (
    "account_id", "as_of", "score", "grade", "band", "colour", "status", "trend",
    "previous_score", *(f"dim_{d}" for d in DIMENSIONS), "flags", "missing", "coverage",
    "profile", "config_version",
)


def upgrade(engine: Engine) -> None:
    """Apply the Alembic migrations up to head (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def _none(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _records(frame: pd.DataFrame, scored_at: datetime) -> list[dict[str, Any]]:
    absent = [c for c in SCORE_FIELDS if c not in frame.columns]
    if absent:
        raise ValueError(f"scores frame lacks columns {absent}: pass score_frame's output")
    data = frame[list(SCORE_FIELDS)].copy()
    data["as_of"] = pd.to_datetime(data["as_of"]).dt.date
    out = []
    for row in data.itertuples(index=False, name=None):
        rec = {k: _none(v) for k, v in zip(SCORE_FIELDS, row, strict=True)}
        rec["flags"] = list(rec["flags"] or [])
        rec["missing"] = [str(m) for m in (rec["missing"] or [])]
        rec["scored_at"] = scored_at
        out.append(rec)
    return out


class ScoreStore:
    """An open score store. Use `open_store(url)`; close with `close()` or a with-block."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def replace_scores(self, scores: pd.DataFrame, *, whole_dates: bool = True,
                       chunk: int = 5000) -> int:
        """Write `score_frame` output in one transaction and return the rows written.

        With `whole_dates` every stored score of the frame's as-of dates is replaced (a re-run of
        a date leaves exactly the new rows); otherwise only the frame's (account_id, as_of) pairs
        are. Any failure rolls everything back: the store is as it was before the call.
        """
        records = _records(scores, datetime.now(UTC))
        if not records:
            return 0
        dates = sorted({r["as_of"] for r in records})
        with Session(self.engine) as session, session.begin():
            if whole_dates:
                session.execute(delete(HealthScoreRecord)
                                .where(HealthScoreRecord.as_of.in_(dates)))
            else:
                keys = [(r["account_id"], r["as_of"]) for r in records]
                for start in range(0, len(keys), chunk):
                    part = keys[start:start + chunk]
                    session.execute(delete(HealthScoreRecord).where(
                        tuple_(HealthScoreRecord.account_id, HealthScoreRecord.as_of).in_(part)))
            for start in range(0, len(records), chunk):
                session.execute(insert(HealthScoreRecord), records[start:start + chunk])
        logger.info("stored %d scores for %s", len(records), [str(d) for d in dates])
        return len(records)

    def load_scores(self, as_of: date | str | None = None,
                    account_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Stored scores (all dates when `as_of` is None) as a frame with SCORE_FIELDS."""
        stmt = select(*[getattr(HealthScoreRecord, c) for c in SCORE_FIELDS],
                      HealthScoreRecord.scored_at)
        if as_of is not None:
            stmt = stmt.where(HealthScoreRecord.as_of == pd.Timestamp(as_of).date())
        if account_ids is not None:
            stmt = stmt.where(HealthScoreRecord.account_id.in_(list(account_ids)))
        stmt = stmt.order_by(HealthScoreRecord.as_of, HealthScoreRecord.account_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        frame = pd.DataFrame(rows, columns=[*SCORE_FIELDS, "scored_at"])
        frame["as_of"] = pd.to_datetime(frame["as_of"])
        for col in ("flags", "missing"):
            # Some drivers hand JSON back as text.
            frame[col] = [json.loads(v) if isinstance(v, str) else v for v in frame[col]]
        for col in ("score", "previous_score", "coverage", *(f"dim_{d}" for d in DIMENSIONS)):
            frame[col] = pd.to_numeric(frame[col]).astype(float)
        return frame

    def dates(self) -> list[date]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(HealthScoreRecord.as_of).distinct()
                                     .order_by(HealthScoreRecord.as_of)).scalars())

    def latest_date(self, account_id: str) -> date | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(HealthScoreRecord.as_of)
                .where(HealthScoreRecord.account_id == account_id)
                .order_by(HealthScoreRecord.as_of.desc()).limit(1)
            ).scalar_one_or_none()

    def count(self, as_of: date | str | None = None) -> int:
        from sqlalchemy import func

        stmt = select(func.count()).select_from(HealthScoreRecord)
        if as_of is not None:
            stmt = stmt.where(HealthScoreRecord.as_of == pd.Timestamp(as_of).date())
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())


def open_store(url: str, *, migrate: bool = True, **engine_kw: Any) -> ScoreStore:
    """Open (creating when needed) the store at a SQLAlchemy URL and bring its schema to head.

    A relative SQLite path is relative to the working directory; its folder is created.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", None):
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, **engine_kw)
    if migrate:
        upgrade(engine)
    return ScoreStore(engine)


def previous_from_store(store: ScoreStore, as_of: date | str, days: int,
                        account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Stored scores dated `days` before `as_of` (account_id, as_of, score)."""
    when = (pd.Timestamp(as_of) - pd.Timedelta(days=days)).date()
    frame = store.load_scores(when, account_ids)
    return frame[["account_id", "as_of", "score"]]
