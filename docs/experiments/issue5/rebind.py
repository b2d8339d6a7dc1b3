import time

import duckdb

con = duckdb.connect()
con.execute("create table a as select range id, range % 100 g, random() x from range(100000)")
sub = " union all ".join(f"select g, sum(x) s{i} from a where g < {i} group by g" for i in range(40))
sql = f"select count(*) from ({sub})"
def t(f, n=10):
    ts=[]
    for _ in range(n):
        s=time.perf_counter(); f(); ts.append((time.perf_counter()-s)*1000)
    return sorted(ts)[n//2]
print("direct", t(lambda: con.execute(sql).fetchall()))
con.execute("PREPARE p AS " + sql)
print("EXECUTE", t(lambda: con.execute("EXECUTE p").fetchall()))
print("explain", t(lambda: con.execute("EXPLAIN " + sql).fetchall()))
print("trivial", t(lambda: con.execute("select 1").fetchall()))
# pure binding: a query with 40 subqueries over an empty table
con.execute("create table e (g int, x double)")
sub2 = sub.replace(" a ", " e ")
sql2 = f"select count(*) from ({sub2})"
print("direct empty", t(lambda: con.execute(sql2).fetchall()))
con.execute("PREPARE q AS " + sql2)
print("EXECUTE empty", t(lambda: con.execute("EXECUTE q").fetchall()))
print(duckdb.__version__)
