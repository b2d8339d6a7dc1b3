"""Bench: the contract's per-cell checks, hand-written vs pandera, one check kind at a time.

The project prefers a kept library to hand-written code unless the library is slower by more than
~20 % or words the problems worse; this measures where pandera (pinned in pyproject.toml) stands,
so the choice in `features/contract/validate.py` can be re-checked (`contract_pandera.py` holds
the pandera version, generated from the contract). Input is the demo world as ingest reads it
(bench_ingest's cached Parquet and CSV copies, read by `read_folder` + `run_mapping`), so the
rows, dtypes and provenance columns are the real ones. Each kind runs over every table it applies
to and ends in report problems (counts and examples); both sides get the same frames and must
report the same problems ("same" column). "all per-cell checks" is what validate runs per table:
the parse, then every per-cell check (pandera: one schema per table).

    .venv/bin/python bench/bench_contract_checks.py            # 1,500 accounts x 730 days
    .venv/bin/python bench/bench_contract_checks.py --small    # 300 accounts x 365 days
    .venv/bin/python bench/bench_contract_checks.py --broken 0.05 --markdown

"clean" is the world as generated (a load that passes); "broken" breaks a fraction of the rows
of every checked column (a load that is refused, or deduplicated for keys). usage_events gets a
`__key:usage_id` column, unique per row, standing for the key a mapping may declare (RavenStack's
usage_id), so that uniqueness is measured on the big table too. Times are best-of runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from rich.console import Console
from rich.table import Table as RichTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import contract_pandera as cp  # noqa: E402
from bench_ingest import NOW, world  # noqa: E402

from features.contract import validate as v  # noqa: E402
from features.contract.ingest import read_folder  # noqa: E402
from features.contract.mapping import run_mapping  # noqa: E402
from features.contract.settings import IngestConfig  # noqa: E402
from features.contract.tables import TABLES_BY_NAME, Table  # noqa: E402

NOW_TS = v._naive_utc(NOW)
USAGE_KEY = v.KEY_PREFIX + "usage_id"
PROVENANCE = (v.FILE_COL, v.ROW_COL)
Frames = dict[str, pd.DataFrame]
Check = Callable[[Table, pd.DataFrame, pd.DataFrame, v._Collector], None]


# --- input -----------------------------------------------------------------------------------
def raw_frames(folder: Path) -> Frames:
    """The frames `validate_tables` receives from an ingest of `folder`, with provenance."""
    con = duckdb.connect()
    try:
        mapping, infos, _ = read_folder(con, folder, IngestConfig(), None)
        frames = run_mapping(con, mapping, infos)
    finally:
        con.close()
    return {n: v._with_provenance(n, f) for n, f in frames.items()}


def typed_frames(raw: Frames) -> tuple[Frames, dict[str, dict[str, np.ndarray]]]:
    """The parse's output (allowed-value columns lower-cased, as validate holds them)."""
    typed, unparsed = {}, {}
    for name, frame in raw.items():
        spec = TABLES_BY_NAME[name]
        cols, bad = {}, {}
        for col in spec.columns:
            if col.name in frame:
                values, bad[col.name] = v.parse_column(frame[col.name], col)
                if col.allowed is not None:
                    values = values.astype("str").str.strip().str.lower().where(values.notna())
                cols[col.name] = values
        typed[name] = pd.DataFrame(cols, index=frame.index)
        unparsed[name] = {c: b.to_numpy() for c, b in bad.items()}
    return typed, unparsed


def with_usage_key(raw: Frames, typed: Frames) -> None:
    ids = pd.Series(np.arange(len(raw["usage_events"])).astype(str), dtype="str")
    raw["usage_events"][USAGE_KEY] = ids
    typed["usage_events"][USAGE_KEY] = ids


def broken(typed: Frames, fraction: float, seed: int = 7) -> Frames:
    """A copy where `fraction` of the rows of every checked column fail their check."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, frame in typed.items():
        frame, spec = frame.copy(), TABLES_BY_NAME[name]
        n = max(1, int(len(frame) * fraction))

        def rows() -> np.ndarray:
            return rng.choice(len(frame), size=n, replace=False)  # noqa: B023
        for col in spec.columns:
            if col.name not in frame:
                continue
            if col.allowed is not None:
                frame.loc[rows(), col.name] = "bogus"
            elif col.type in ("int", "float") and (col.min is not None or col.max is not None):
                frame.loc[rows(), col.name] = col.min - 1 if col.min is not None else col.max + 1
            elif col.type in ("date", "timestamp") and (name, col.name) not in v.FUTURE_ALLOWED:
                frame.loc[rows(), col.name] = NOW_TS + timedelta(days=1)
            elif not col.nullable:
                frame.loc[rows(), col.name] = None
        for key in _keys(spec, frame):
            frame.loc[rows(), key] = frame[key].iloc[0].to_numpy()
        if "account_id" in frame and spec.references_accounts:
            frame.loc[rows(), "account_id"] = "NOPE"
        out[name] = frame
    return out


def _keys(spec: Table, frame: pd.DataFrame) -> list[list[str]]:
    keys = [list(spec.key)] if spec.key else []
    return keys + ([[USAGE_KEY]] if USAGE_KEY in frame else [])


# --- the check kinds: hand-written, as validate.py has or had them ---------------------------
def hand_dtype(spec: Table, raw: pd.DataFrame, _: pd.DataFrame, out: v._Collector) -> None:
    for col in spec.columns:
        if col.name in raw:
            _, bad = v.parse_column(raw[col.name], col)
            out.add(spec.name, col.name, v._TYPE_PROBLEMS.get(col.type, "invalid"), "refused",
                    raw, bad, raw[col.name])


def hand_empty(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector,
               unparsed: dict[str, np.ndarray]) -> None:
    for col in spec.columns:
        if col.name in typed and not col.nullable:
            out.add(spec.name, col.name, cp.EMPTY, "refused", raw,
                    typed[col.name].isna().to_numpy() & ~unparsed[col.name])


def hand_allowed(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector) -> None:
    for col in spec.columns:
        if col.name in typed and col.allowed is not None:
            text = typed[col.name]
            outside = text.notna() & ~text.isin({a.lower() for a in col.allowed})
            out.add(spec.name, col.name, cp.allowed_problem(col), "refused", raw, outside,
                    raw[col.name])


def hand_range(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector) -> None:
    for col in spec.columns:
        if col.name not in typed or col.type not in ("int", "float"):
            continue
        vals = typed[col.name].astype("float64")
        if col.min is not None:
            out.add(spec.name, col.name, f"below minimum {col.min:g}", "refused", raw,
                    (vals < col.min).fillna(False), raw[col.name])
        if col.max is not None:
            out.add(spec.name, col.name, f"above maximum {col.max:g}", "refused", raw,
                    (vals > col.max).fillna(False), raw[col.name])


def hand_future(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector) -> None:
    for col in spec.columns:
        if col.name in typed and cp.may_not_lie_ahead(spec.name, col):
            out.add(spec.name, col.name, cp.future_problem(NOW_TS), "refused", raw,
                    (typed[col.name] > NOW_TS).fillna(False), raw[col.name])


def hand_unique(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector) -> None:
    """What ingest runs: the key columns staged in DuckDB, repeated keys found in SQL."""
    keys = _keys(spec, typed)
    if not keys:
        return
    con = duckdb.connect()
    try:
        run = v.Validation(IngestConfig(duplicates="drop"), NOW, con)
        run._cells = out
        run._keys[spec.name] = keys
        cols = list(dict.fromkeys(k for key in keys for k in key))
        frame = typed[cols].assign(**{v.FILE_COL: raw[v.FILE_COL].astype(str),
                                      v.ROW_COL: raw[v.ROW_COL].to_numpy(dtype=np.int64),
                                      v.SEQ_COL: np.arange(len(raw), dtype=np.int64)})
        run._stage(spec.name, spec, frame)
        run._duplicates(spec.name)
    finally:
        con.close()


def _describe_duplicates(frame: pd.DataFrame, source: pd.DataFrame, key: list[str],
                         positions: np.ndarray) -> list[str]:
    """The duplicate rows at `positions` worded as validate words them ("<key> (first on row
    N)"), for pandera's failure cases."""
    groups = source.groupby(key, dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(source))).groupby(groups).transform("min").to_numpy()
    lines = frame[v.ROW_COL].to_numpy()
    texts = [v._as_text(source[c].iloc[positions]).astype(str).to_numpy() for c in key]
    return [" | ".join(str(col[k]) for col in texts) + f" (first on row {int(lines[first[i]])})"
            for k, i in enumerate(positions)]


def hand_known(known: pd.Index) -> Check:
    def check(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector) -> None:
        ids = typed["account_id"]
        out.add(spec.name, "account_id", "unknown account_id (not in accounts)", "refused", raw,
                ids.notna() & ~ids.isin(known), raw["account_id"])
    return check


# --- the same kinds by pandera, schemas generated from the contract --------------------------
_PANDERA_DTYPES = {"string": pd.StringDtype(na_value=np.nan), "int": "Int64", "float": "float64",
                   "bool": "boolean", "date": pandas_engine.DateTime(tz="UTC"),
                   "timestamp": pandas_engine.DateTime(
                       tz="UTC", to_datetime_kwargs={"format": "ISO8601"})}


def _report(spec: Table, raw: pd.DataFrame, found: dict[tuple[str, str], np.ndarray],
            out: v._Collector, problem: Callable[[str], str] | None = None) -> None:
    for (column, check), rows in found.items():
        cp.add_rows(out, spec.name, column, problem(column) if problem else check, raw, rows,
                    None if check == cp.EMPTY else raw[column])


def pandera_dtype(spec: Table, raw: pd.DataFrame, _: pd.DataFrame, out: v._Collector) -> None:
    cols = {c.name: pa.Column(_PANDERA_DTYPES[c.type], coerce=True, nullable=True)
            for c in spec.columns if c.name in raw}
    try:
        pa.DataFrameSchema(cols).validate(raw[list(cols)], lazy=True)
        found = {}
    except pa.errors.SchemaErrors as exc:
        # The cells that did not coerce; the rows without an index say the column's dtype.
        cases = exc.failure_cases.dropna(subset=["index"])
        found = {(str(c), "coerce"): np.unique(g["index"].to_numpy(dtype=np.int64))
                 for c, g in cases.groupby("column", sort=False)}
    _report(spec, raw, found, out, lambda c: v._TYPE_PROBLEMS.get(spec.column(c).type, "invalid"))


@lru_cache
def _schema(table: str, columns: tuple[str, ...], kind: str) -> pa.DataFrameSchema:
    """Built once per run, outside the timing: pandera at its best (building all nine costs
    ~2 ms, which a product would pay per ingest for the clock-bound future check)."""
    return cp.table_schema(TABLES_BY_NAME[table], NOW_TS, columns, {kind})


def pandera_kind(kind: str) -> Callable[..., None]:
    def check(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector,
              unparsed: dict[str, np.ndarray] | None = None) -> None:
        found = cp.failures(_schema(spec.name, tuple(typed.columns), kind), typed)
        if unparsed is not None:
            found = {k: r[~unparsed[k[0]][r]] for k, r in found.items()}
        _report(spec, raw, found, out)
    return check


def pandera_unique(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame,
                   out: v._Collector) -> None:
    for key in _keys(spec, typed):
        dup = pa.DataFrameSchema(unique=key, report_duplicates="exclude_first")
        found = cp.failures(dup, typed[key])
        rows = np.unique(np.concatenate(list(found.values()))) if found else np.empty(0, int)

        def describe(positions: np.ndarray, k: list[str] = key) -> list[str]:
            return _describe_duplicates(raw, typed, k, positions)
        label = ", ".join(k.removeprefix(v.KEY_PREFIX) for k in key)
        cp.add_rows(out, spec.name, label, "duplicate key", raw, rows, action="dropped",
                    describe=describe)


def pandera_known(known: pd.Index) -> Check:
    ref = pa.DataFrameSchema({"account_id": pa.Column(
        checks=pa.Check.isin(known, error="unknown account_id (not in accounts)"),
        nullable=True)})

    def check(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, out: v._Collector) -> None:
        _report(spec, raw, cp.failures(ref, typed[["account_id"]]), out)
    return check


def hand_all(spec: Table, raw: pd.DataFrame, _: pd.DataFrame, out: v._Collector) -> None:
    """What validate runs per table: the parse and every per-cell check, hand-written."""
    v._check_columns(spec, raw, pd.DataFrame(index=raw.index), NOW_TS, out, [spec.name])


def pandera_all(spec: Table, raw: pd.DataFrame, _: pd.DataFrame, out: v._Collector) -> None:
    """The same with one pandera schema per table (built per call: it holds the clock)."""
    cp.check_columns(spec, raw, pd.DataFrame(index=raw.index), NOW_TS, out, [spec.name])


# --- measuring -------------------------------------------------------------------------------
def run(check: Callable[..., None], tables: list[str], raw: Frames, typed: Frames,
        unparsed: dict[str, dict[str, np.ndarray]] | None, repeat: int,
        ) -> tuple[float, list[tuple]]:
    """Best time of at least `repeat` runs (more for checks of milliseconds: up to a second of
    runs, at most 30, so that one scheduler hiccup does not decide a ratio), and the problems."""
    best, problems, runs, spent = float("inf"), [], 0, 0.0
    while runs < repeat or (spent < 1.0 and runs < 30):
        out = v._Collector(5, 5)
        start = time.perf_counter()
        for name in tables:
            args = (TABLES_BY_NAME[name], raw[name], typed[name], out)
            check(*args, unparsed[name]) if unparsed is not None else check(*args)
        took = time.perf_counter() - start
        best, runs, spent = min(best, took), runs + 1, spent + took
        problems = sorted((p.table, p.column, p.problem, p.count,
                           tuple((e.file, e.row, e.value) for e in p.examples))
                          for p in out.problems)
    return best, problems


def applies(kind: str, spec: Table, frame: pd.DataFrame) -> bool:
    cols = [c for c in spec.columns if c.name in frame]
    return {
        "dtype": bool(cols),
        "empty": any(not c.nullable for c in cols),
        "allowed": any(c.allowed is not None for c in cols),
        "range": any(c.type in ("int", "float") and (c.min, c.max) != (None, None)
                     for c in cols),
        "future": any(cp.may_not_lie_ahead(spec.name, c) for c in cols),
        "unique": bool(_keys(spec, frame)),
        "known": spec.references_accounts and "account_id" in frame,
    }[kind]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="300 accounts x 365 days")
    parser.add_argument("--broken", type=float, default=0.01,
                        help="fraction of rows broken per checked column (0: clean only)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV (text) parse")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    n, days = (300, 365) if args.small else (1500, 730)
    console = Console()
    with console.status("reading the world"):
        inputs = {"parquet": raw_frames(world(n, days, "parquet", False))}
        if not args.no_csv:
            inputs["csv"] = raw_frames(world(n, days, "csv", False))
        raw = inputs["parquet"]
        typed, unparsed = typed_frames(raw)
        with_usage_key(raw, typed)
        known = pd.Index(typed["accounts"]["account_id"].dropna().unique())
    kinds: list[tuple[str, str, Callable[..., None], Callable[..., None], bool]] = [
        ("empty", "empty (nullable=False)", hand_empty, pandera_kind("empty"), True),
        ("allowed", "allowed values (isin)", hand_allowed, pandera_kind("allowed"), False),
        ("range", "ranges (ge / le)", hand_range, pandera_kind("range"), False),
        ("future", "future timestamps (le now)", hand_future, pandera_kind("future"), False),
        ("unique", "unique keys", hand_unique, pandera_unique, False),
        ("known", "account_id in accounts (isin)", hand_known(known), pandera_known(known),
         False),
    ]
    scenarios = [("clean", typed)] + ([(f"broken {args.broken:.0%}",
                                        broken(typed, args.broken))] if args.broken else [])
    rows: list[tuple[str, ...]] = []
    whole = [(f"clean, {fmt}", frames) for fmt, frames in inputs.items()]
    if args.broken:
        # The broken typed frames as input (the parse passes typed values through).
        whole.append((scenarios[1][0], {n: f.assign(**{c: raw[n][c] for c in PROVENANCE})
                                        for n, f in scenarios[1][1].items()}))
    with console.status("measuring"):
        for fmt, frames in inputs.items():
            rows.append(_row("dtype / coercion", f"clean, {fmt}", frames, list(frames),
                             *(run(c, list(frames), frames, frames, None, args.repeat)
                               for c in (hand_dtype, pandera_dtype))))
        for scenario, frames in whole:
            rows.append(_row("all per-cell checks", scenario, frames, list(frames),
                             *(run(c, list(frames), frames, frames, None, args.repeat)
                               for c in (hand_all, pandera_all))))
        for kind, label, hand, lib, needs_unparsed in kinds:
            for scenario, frames in scenarios:
                tables = [t for t in frames if applies(kind, TABLES_BY_NAME[t], frames[t])]
                extra = unparsed if needs_unparsed else None
                rows.append(_row(label, scenario, frames, tables,
                                 run(hand, tables, raw, frames, extra, args.repeat),
                                 run(lib, tables, raw, frames, extra, args.repeat)))
    table = RichTable(title=f"contract checks: hand-written vs pandera {version('pandera')}, "
                            f"world {n:,} accounts x {days} days")
    for col in HEADERS:
        table.add_column(col, justify="left" if col in ("check", "data", "same") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if args.markdown:
        print("| " + " | ".join(HEADERS) + " |")
        print("|" + "---|" * len(HEADERS))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    return 0


HEADERS = ("check", "data", "rows", "hand s", "hand rows/s", "pandera s", "pandera rows/s",
           "pandera/hand", "same")


def _row(label: str, scenario: str, frames: Frames, tables: list[str],
         hand: tuple[float, list], lib: tuple[float, list]) -> tuple[str, ...]:
    rows = sum(len(frames[t]) for t in tables)
    found, lib_found = (sum(p[3] for p in side[1]) for side in (hand, lib))
    same = "yes" if hand[1] == lib[1] else "NO"
    found_text = f"{found:,} found" + ("" if lib_found == found else f", pandera {lib_found:,}")
    return (label, f"{scenario} ({found_text})", f"{rows:,}", f"{hand[0]:.3f}",
            f"{rows / hand[0]:,.0f}", f"{lib[0]:.3f}", f"{rows / lib[0]:,.0f}",
            f"{lib[0] / hand[0]:.2f}x", same)


if __name__ == "__main__":
    raise SystemExit(main())
