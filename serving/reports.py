"""Shapes of the read-side answers: segment statistics and the Parquet stream of an export.

Pure helpers over frames of stored scores; the engine queries the store and calls them. No I/O
beyond writing Parquet bytes into memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from serving import api
from serving.store import DIMENSIONS


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


def segment_stats(frame: pd.DataFrame) -> api.SegmentStats:
    scores = pd.to_numeric(frame["score"], errors="coerce")
    buckets = (np.minimum(scores.dropna() // 10, 9) * 10).astype(int)
    dist = {f"{b}-{b + 9 if b < 90 else 100}": int(n)
            for b, n in buckets.value_counts().sort_index().items()}
    dims = {}
    for d in DIMENSIONS:
        col = pd.to_numeric(frame.get(f"dim_{d}"), errors="coerce") \
            if f"dim_{d}" in frame else pd.Series(dtype=float)
        dims[d] = None if col.dropna().empty else round(float(col.mean()), 2)
    return api.SegmentStats(
        accounts=len(frame),
        averageScore=None if scores.dropna().empty else round(float(scores.mean()), 2),
        medianScore=None if scores.dropna().empty else round(float(scores.median()), 2),
        bands={str(k): int(v) for k, v in frame["band"].value_counts().items()},
        distribution=dist, averageDimensions=dims)
