"""Raw activity sent with a request: checked against the input contract and loaded into an
in-memory DuckDB with the contract tables, so the one feature function (`build_features`) runs
on it exactly as on the warehouse.

Owns that check and load, and `PayloadError` (the field path of the first problem, in
FastAPI's 422 shape: body.activity.<table>[row].<column>). It computes no features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd

from features.contract.tables import TABLES_BY_NAME

SQL_TYPES = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN",
             "date": "DATE", "timestamp": "TIMESTAMP"}


class PayloadError(ValueError):
    """A payload the API cannot use: `loc` names the field (FastAPI's 422 shape)."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc = loc
        self.msg = msg


def load_payload(account_id: str, activity: Mapping[str, list[dict[str, Any]]]
                 ) -> tuple[duckdb.DuckDBPyConnection, Any]:
    """An in-memory DuckDB with the payload's rows in contract tables, and the latest timestamp.

    Every row is checked against the contract; an error names body.activity.<table>[row].<col>.
    """
    if "accounts" not in activity or not activity["accounts"]:
        raise PayloadError(["body", "activity", "accounts"],
                           "required: the account's row (account_id, name, segment, created_at)")
    ids = {str(r.get("account_id")) for r in activity["accounts"]}
    if ids != {account_id}:
        raise PayloadError(["body", "activity", "accounts"],
                           f"must hold exactly the row of account {account_id!r}, "
                           f"got {sorted(ids)}")
    con = duckdb.connect(":memory:")
    latest: Any = None
    try:
        for name, rows in activity.items():
            table = TABLES_BY_NAME[name]
            frame = _payload_frame(name, table, rows, account_id)
            cols = ", ".join(f'"{c.name}" {SQL_TYPES[c.type]}' for c in table.columns)
            extra = [c for c in frame.columns if c not in table.column_names]
            cols += "".join(f', "{c}" VARCHAR' for c in extra)
            con.execute(f'create table "{name}" ({cols})')
            if len(frame):
                con.register("_payload", frame)
                con.execute(f'insert into "{name}" by name select * from _payload')
                con.unregister("_payload")
            if table.time_column and len(frame):
                t = pd.to_datetime(frame[table.time_column]).max()
                latest = t if latest is None or t > latest else latest
    except Exception:
        con.close()
        raise
    if latest is None:
        latest = pd.Timestamp(datetime.now(UTC).date()) - pd.Timedelta(days=1)
    return con, latest


def _payload_frame(name: str, table: Any, rows: list[dict[str, Any]], account_id: str
                   ) -> pd.DataFrame:
    loc = ["body", "activity", name]
    known = set(table.column_names)
    for i, r in enumerate(rows):
        unknown = [k for k in r if k not in known]
        if unknown and not table.extra_columns_allowed:
            raise PayloadError([*loc, i, unknown[0]],
                               f"unknown column; {name} has {sorted(known)}")
        if str(r.get("account_id")) != account_id:
            raise PayloadError([*loc, i, "account_id"],
                               f"must be {account_id!r}: a payload scores one account")
    data: dict[str, Any] = {}
    for col in table.columns:
        values = [r.get(col.name) for r in rows]
        present = [r for r in rows if col.name in r]
        if col.required and rows and len(present) < len(rows):
            i = next(i for i, r in enumerate(rows) if col.name not in r)
            raise PayloadError([*loc, i, col.name], "field required")
        if not col.required and not present:
            values = [col.default] * len(rows)
        if not col.nullable and col.required:
            for i, v in enumerate(values):
                if v is None:
                    raise PayloadError([*loc, i, col.name], "must not be empty")
        data[col.name] = _convert(values, col, loc)
    frame = pd.DataFrame(data)
    for extra in sorted({k for r in rows for k in r} - known):
        frame[extra] = [None if r.get(extra) is None else str(r.get(extra)) for r in rows]
    return frame


def _convert(values: list[Any], col: Any, loc: list[str | int]) -> Any:
    out: list[Any] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            if col.type in ("timestamp", "date"):
                t = pd.Timestamp(v)
                if t is pd.NaT or t.tz is not None:
                    t = t.tz_convert("UTC").tz_localize(None) if t is not pd.NaT else t
                if t is pd.NaT:
                    raise ValueError("not a time")
                out.append(t)
            elif col.type == "int":
                if isinstance(v, bool) or float(v) != int(float(v)):
                    raise ValueError("not a whole number")
                out.append(int(float(v)))
            elif col.type == "float":
                if isinstance(v, bool):
                    raise ValueError("not a number")
                x = float(v)
                if not math.isfinite(x):
                    raise ValueError("not a finite number")
                out.append(x)
            elif col.type == "bool":
                if not isinstance(v, bool):
                    raise ValueError("not true or false")
                out.append(v)
            else:
                if not isinstance(v, str | int | float):
                    raise ValueError("not text")
                out.append(str(v))
        except (ValueError, TypeError, OverflowError) as exc:
            raise PayloadError([*loc, i, col.name], f"invalid {col.type}: {exc}") from None
        if col.allowed is not None and str(out[-1]) not in col.allowed:
            raise PayloadError([*loc, i, col.name], f"must be one of {list(col.allowed)}")
        if col.min is not None and col.type in ("int", "float") and out[-1] < col.min:
            raise PayloadError([*loc, i, col.name], f"must be >= {col.min}")
    if col.type in ("timestamp", "date"):
        return pd.Series(out, dtype="datetime64[us]")
    if col.type == "int":
        return pd.Series(out, dtype="Int64")
    if col.type == "float":
        return pd.Series(out, dtype="float64")
    if col.type == "bool":
        return pd.Series(out, dtype="boolean")
    return pd.Series(out, dtype=object)
