import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import ibis
import pandas as pd
import polars as pl
import polars_rules  # noqa: F401  registers the lag-over-window rule

sys.path.insert(0, str(ROOT / "bench"))
from bench_explain import build_world
from features.config import load_settings
from features.warehouse import connected_tables

from features import definitions as d
from features.build import _side_by_side, _steps, build_features
from features.contract import table as contract_table

con, as_of = build_world(800, 600, 3)
cfg = load_settings().features
acc = con.execute("select account_id from accounts limit 1 offset 17").fetchone()[0]
ents = pd.DataFrame({"account_id": [acc], "as_of": [as_of]})
for _ in range(3):
    t = time.perf_counter(); ref = build_features(con, ents, cfg); print("duckdb", (time.perf_counter()-t)*1000)

connected = connected_tables(con)
lookback = {s.table: s.lookback_days for s in d.SOURCES}
def fetch(table):
    tc = contract_table(table).time_column
    sql = f"select * from {table} where account_id = $1"
    params = [acc]
    if tc:
        sql += f" and {tc} < $2"; params.append(as_of.to_pydatetime())
        lb = lookback.get(table)
        if lb:
            sql += f" and {tc} >= $3"; params.append((as_of - pd.Timedelta(days=lb)).to_pydatetime())
    return pl.from_arrow(con.execute(sql, params).to_arrow_table())

pcon = ibis.polars.connect()
for _ in range(3):
    t = time.perf_counter()
    frames = {tb: fetch(tb) for tb in connected}
    t1 = time.perf_counter()
    keys = pd.DataFrame({d.ENTITY_KEY: [0], "account_id": [acc], "as_of": [as_of]})
    for tb, f in frames.items():
        pcon.create_table(tb, f, overwrite=True)
    pcon.create_table("_ent", pl.from_pandas(keys), overwrite=True)
    ent = pcon.table("_ent")
    def source(table, older=False):
        return d.restrict(pcon.table(table), ent, None, time_column=contract_table(table).time_column,
                          lookback_days=lookback.get(table), before_lookback=older)
    builds = dict(_steps(frozenset(frames), cfg.attribute_prefix))
    expr = _side_by_side(ent, source, builds)
    t2 = time.perf_counter()
    lf = pcon.compile(expr)
    t3 = time.perf_counter()
    out = lf.collect()
    t4 = time.perf_counter()
    print(f"fetch {1000*(t1-t):.1f} build {1000*(t2-t1):.1f} compile {1000*(t3-t2):.1f} collect {1000*(t4-t3):.1f}")
o = out.to_pandas()
print(o.T.head(80))
print(ref.T.head(80))
import time

for name, kw in [("default", {}), ("no_opt", {"optimizations": pl.QueryOptFlags.none()})]:
    ts=[]
    for _ in range(7):
        t=time.perf_counter(); lf.collect(**kw); ts.append((time.perf_counter()-t)*1000)
    print(name, sorted(ts)[3])
