import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import duckdb
import pandas as pd
from bench_explain import build_world
from features.config import load_settings

from features.build import ALL_STEPS, ENTITY_VIEW, _prepared_sql, _shape, build_features

con, as_of = build_world(800, 600, 3)
cfg = load_settings().features
accs = [r[0] for r in con.execute("select account_id from accounts limit 40").fetchall()]
sql = _prepared_sql(_shape(con), cfg.attribute_prefix, ALL_STEPS)
ent = "(SELECT unnest($1::BIGINT[]) AS _eid, unnest($2::VARCHAR[]) AS account_id, unnest($3::TIMESTAMP[]) AS as_of)"
psql = sql.replace(f'"{ENTITY_VIEW}"', ent)
cur = con.cursor()
cur.execute("PREPARE s AS " + psql)
ok = 0
for th in (2, 1, 2, 1):
    con.execute(f"SET threads={th}")
    ts=[]; cs=[]
    for a in accs:
        t=time.perf_counter(); c=time.process_time()
        r = cur.execute(f"EXECUTE s([0, 1], ['{a}', '{a}'], [TIMESTAMP '{as_of}', TIMESTAMP '{as_of - pd.Timedelta(days=30)}'])").df().sort_values("_eid", ignore_index=True)
        ts.append((time.perf_counter()-t)*1000); cs.append((time.process_time()-c)*1000)
        if th == 2 and len(ts) < 4:
            ref = build_features(con, pd.DataFrame({"account_id": [a, a], "as_of": [as_of, as_of - pd.Timedelta(days=30)]}), cfg)
            cols = [c for c in r.columns if c in ref.columns and c not in ("account_id", "as_of")]
            bad=[c for c in cols if not ((r[c].astype("float64", errors="ignore")==ref[c].astype("float64", errors="ignore"))|(r[c].isna()&ref[c].isna())).all()]; print("diff cols", bad) if bad else None; 0 and pd.testing.assert_frame_equal(r[cols].reset_index(drop=True).astype("float64", errors="ignore"), ref[cols].astype("float64", errors="ignore"), check_dtype=False, check_categorical=False)
            ok += 1
    print(duckdb.__version__, "threads", th, "wall", sorted(ts)[20], "cpu", sorted(cs)[20], "checked", ok)
