"""The read side: an account's history, the listing, segment comparisons, the period report and
the export of stored scores.

Segment comparisons read the portfolio the one pipeline scored (today) or the stored scores of
another date; the rest reads the score store. Exports stream chunk by chunk, never the whole
table in memory.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from serving import schemas
from serving.convert import clean, number, override_out, score_row
from serving.errors import NotFound, PayloadError, Unavailable
from serving.ops_store import Alert, Override
from serving.state import ServiceState
from serving.store import DIMENSIONS, SCORE_FIELDS, HealthScoreRecord


def history(state: ServiceState, account_id: str, start: date | None, end: date | None
            ) -> dict[str, Any]:
    state.known(account_id)
    stmt = select(*[getattr(HealthScoreRecord, c) for c in SCORE_FIELDS]).where(
        HealthScoreRecord.account_id == account_id).order_by(HealthScoreRecord.as_of)
    if start:
        stmt = stmt.where(HealthScoreRecord.as_of >= start)
    if end:
        stmt = stmt.where(HealthScoreRecord.as_of <= end)
    with Session(state.db, expire_on_commit=False) as session:
        rows = [score_row(dict(zip(SCORE_FIELDS, r, strict=True)))
                for r in session.execute(stmt)]
        overrides = session.scalars(select(Override).where(
            Override.account_id == account_id).order_by(Override.id)).all()
        return {"accountId": account_id, "scores": rows,
                "overrides": [override_out(o) for o in overrides]}


def list_scores(state: ServiceState, *, as_of: date | None, band: str | None, status: str | None,
                grade: str | None, min_score: float | None, max_score: float | None,
                sort: str, order: str, page: int, page_size: int) -> schemas.ScorePage:
    R = HealthScoreRecord
    with Session(state.db, expire_on_commit=False) as session:
        when = as_of or state.default_as_of
        cond = [R.as_of == when]
        if band:
            cond.append(R.band == band)
        if status:
            cond.append(R.status == status)
        if grade:
            cond.append(R.grade == grade)
        if min_score is not None:
            cond.append(R.score >= min_score)
        if max_score is not None:
            cond.append(R.score <= max_score)
        total = session.scalar(select(func.count()).select_from(R).where(*cond)) or 0
        col = {"score": R.score, "accountId": R.account_id,
               "previousScore": R.previous_score, "grade": R.grade}[sort]
        ordered = col.desc() if order == "desc" else col.asc()
        stmt = (select(*[getattr(R, c) for c in SCORE_FIELDS]).where(*cond)
                .order_by(ordered, R.account_id).limit(page_size)
                .offset((page - 1) * page_size))
        items = [score_row(dict(zip(SCORE_FIELDS, r, strict=True)))
                 for r in session.execute(stmt)]
    return schemas.ScorePage(asOf=when, total=total, page=page, pageSize=page_size,
                             items=items)


def compare_segment(state: ServiceState, req: schemas.SegmentRequest
                    ) -> schemas.SegmentComparison:
    state.tick()
    portfolio = state.portfolio
    if portfolio is None:
        raise Unavailable("no warehouse scores to compare: run `healthscore ingest`")
    attrs = portfolio.features[["account_id", req.field]]
    if req.asOf is not None and req.asOf != portfolio.as_of:
        frame = state.store.load_scores(req.asOf)
        if frame.empty:
            raise NotFound(f"no stored scores as of {req.asOf}")
        frame = frame.merge(attrs, on="account_id", how="left")
        when = req.asOf
    else:
        frame = portfolio.scores.copy()
        frame[req.field] = attrs[req.field].to_numpy()
        when = portfolio.as_of
    inside = frame[req.field].astype("string") == req.value
    if not inside.any():
        known = sorted(frame[req.field].dropna().astype(str).unique())
        raise NotFound(f"no account with {req.field} = {req.value!r}; known: {known}")
    mask = inside.to_numpy()
    seg, rest = segment_stats(frame[mask]), segment_stats(frame[~mask])
    diffs = []
    for d in DIMENSIONS:
        a, b = seg.averageDimensions.get(d), rest.averageDimensions.get(d)
        if a is not None and b is not None:
            diffs.append({"dimension": d, "segment": a, "rest": b,
                          "difference": round(a - b, 2)})
    diffs.sort(key=lambda x: -abs(x["difference"]))
    return schemas.SegmentComparison(field=req.field, value=req.value, asOf=when, segment=seg,
                                 rest=rest, topFactors=diffs[:5])


def report(state: ServiceState, req: schemas.ReportRequest) -> schemas.Report:
    if req.end < req.start:
        raise PayloadError(["body", "end"], "must not be before start")
    R = HealthScoreRecord
    with Session(state.db, expire_on_commit=False) as session:
        dates = list(session.scalars(select(R.as_of).distinct().where(
            R.as_of >= req.start, R.as_of <= req.end).order_by(R.as_of)))
        start_dt = datetime.combine(req.start, datetime.min.time(), UTC)
        end_dt = datetime.combine(req.end + timedelta(days=1), datetime.min.time(), UTC)
        # Rule alerts carry the as-of date they were raised for; manual ones their time.
        in_period = or_(and_(Alert.as_of.is_not(None), Alert.as_of >= req.start,
                             Alert.as_of <= req.end),
                        and_(Alert.as_of.is_(None), Alert.created_at >= start_dt,
                             Alert.created_at < end_dt))
        raised = session.scalar(select(func.count()).select_from(Alert).where(
            in_period)) or 0
        resolved = session.scalar(select(func.count()).select_from(Alert).where(
            Alert.resolved_at >= start_dt, Alert.resolved_at < end_dt)) or 0
    empty = schemas.Report(start=req.start, end=req.end, asOf=None, scoredAccounts=0,
                       averageScore=None, bands={}, atRisk=0, champions=0, movements={},
                       alertsRaised=raised, alertsResolved=resolved)
    if not dates:
        return empty
    last = state.store.load_scores(dates[-1])
    first = state.store.load_scores(dates[0])
    top = max(state.rules.default.bands, key=lambda b: b.min).name
    moves = last[["account_id", "score", "band"]].merge(
        first[["account_id", "score", "band"]], on="account_id", suffixes=("", "_first"))
    delta = moves["score"] - moves["score_first"]
    dead = state.rules.trend_dead_band
    order = {b.name: b.min for b in state.rules.default.bands}
    up = moves["band"].map(order) > moves["band_first"].map(order)
    down = moves["band"].map(order) < moves["band_first"].map(order)
    return schemas.Report(
        start=req.start, end=req.end, asOf=dates[-1], scoredAccounts=len(last),
        averageScore=number(round(last["score"].mean(), 2)) if len(last) else None,
        bands={str(k): int(v) for k, v in last["band"].value_counts().items()},
        atRisk=int(last["status"].isin(["at-risk", "critical"]).sum()),
        champions=int((last["band"] == top).sum()),
        movements={"improved": int((delta > dead).sum()),
                   "declined": int((delta < -dead).sum()),
                   "stable": int((delta.abs() <= dead).sum()),
                   "bandUp": int(up.sum()), "bandDown": int(down.sum())},
        alertsRaised=raised, alertsResolved=resolved)


def export(state: ServiceState, fmt: str, start: date | None, end: date | None, chunk: int = 2000
           ) -> Iterator[bytes]:
    """Stored scores in a date range as CSV, JSON (an array) or Parquet, chunk by chunk."""
    R = HealthScoreRecord
    cols = [c for c in SCORE_FIELDS]
    stmt = select(*[getattr(R, c) for c in cols]).order_by(R.as_of, R.account_id)
    if start:
        stmt = stmt.where(R.as_of >= start)
    if end:
        stmt = stmt.where(R.as_of <= end)

    def frames() -> Iterator[pd.DataFrame]:
        with state.db.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk)\
                .execute(stmt)
            for part in result.partitions(chunk):
                frame = pd.DataFrame(part, columns=cols)
                for c in ("flags", "missing"):
                    frame[c] = [v if isinstance(v, str) else json.dumps(v, default=str)
                                for v in frame[c]]
                frame["as_of"] = frame["as_of"].astype(str)
                yield frame

    if fmt == "csv":
        first = True
        for frame in frames():
            yield frame.to_csv(index=False, header=first).encode()
            first = False
        if first:
            yield (",".join(cols) + "\n").encode()
    elif fmt == "json":
        yield b"["
        sep = b""
        for frame in frames():
            for rec in frame.to_dict("records"):
                rec["flags"], rec["missing"] = json.loads(rec["flags"]), \
                    json.loads(rec["missing"])
                yield sep + json.dumps(clean(rec), default=str).encode()
                sep = b","
        yield b"]"
    else:
        yield from parquet_chunks(frames(), cols)




def parquet_chunks(frames: Iterator[pd.DataFrame], cols: list[str]) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.pos = 0

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            data = bytes(b)
            self.parts.append(data)
            self.pos += len(data)
            return len(data)

        def tell(self) -> int:
            return self.pos

        def take(self) -> bytes:
            out = b"".join(self.parts)
            self.parts = []
            return out

    schema = pa.schema([(c, pa.float64()) if c in ("score", "previous_score", "coverage")
                        or c.startswith("dim_") else (c, pa.string()) for c in cols])
    sink = Sink()
    writer = pq.ParquetWriter(sink, schema)
    for frame in frames:
        writer.write_table(pa.Table.from_pandas(frame[cols], schema=schema,
                                                preserve_index=False))
        chunk = sink.take()
        if chunk:
            yield chunk
    writer.close()
    yield sink.take()


def segment_stats(frame: pd.DataFrame) -> schemas.SegmentStats:
    scores = pd.to_numeric(frame["score"], errors="coerce")
    buckets = (np.minimum(scores.dropna() // 10, 9) * 10).astype(int)
    dist = {f"{b}-{b + 9 if b < 90 else 100}": int(n)
            for b, n in buckets.value_counts().sort_index().items()}
    dims = {}
    for d in DIMENSIONS:
        col = pd.to_numeric(frame.get(f"dim_{d}"), errors="coerce") \
            if f"dim_{d}" in frame else pd.Series(dtype=float)
        dims[d] = None if col.dropna().empty else round(float(col.mean()), 2)
    return schemas.SegmentStats(
        accounts=len(frame),
        averageScore=None if scores.dropna().empty else round(float(scores.mean()), 2),
        medianScore=None if scores.dropna().empty else round(float(scores.median()), 2),
        bands={str(k): int(v) for k, v in frame["band"].value_counts().items()},
        distribution=dist, averageDimensions=dims)
