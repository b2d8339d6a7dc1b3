import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import duckdb
from bench_explain import build_world
from features.config import load_settings

from features.build import ALL_STEPS, ENTITY_VIEW, _prepared_sql, _shape

con, as_of = build_world(800, 600, 3)
cfg = load_settings().features
accs = [r[0] for r in con.execute("select account_id from accounts limit 40").fetchall()]
sql = _prepared_sql(_shape(con), cfg.attribute_prefix, ALL_STEPS)
cur = con.cursor()
cur.execute(f"CREATE TEMP TABLE {ENTITY_VIEW} (_eid BIGINT, account_id VARCHAR, as_of TIMESTAMP)")
for th in (2, 1, 2, 1):
    con.execute(f"SET threads={th}")
    ts=[]; cs=[]
    for a in accs:
        t=time.perf_counter(); c=time.process_time()
        cur.execute(f"DELETE FROM {ENTITY_VIEW}")
        cur.execute(f"INSERT INTO {ENTITY_VIEW} VALUES (0, '{a}', TIMESTAMP '{as_of}')")
        cur.execute(sql).df()
        ts.append((time.perf_counter()-t)*1000); cs.append((time.process_time()-c)*1000)
    print(duckdb.__version__, "threads", th, "wall", round(sorted(ts)[20],1), "cpu", round(sorted(cs)[20],1))
