"""Runs a grain query (`finops sql --dialect duckdb`) in DuckDB and writes its result as CSV,
the form Athena writes its result object in: a header row, then one row per grain row.

Usage: duckdb_grain.py <query.sql> <result.csv>   (prints the seconds the query took)
"""
import sys
import time

import duckdb

sql = open(sys.argv[1], encoding="utf-8").read()
started = time.perf_counter()
duckdb.sql(f"COPY ({sql}) TO '{sys.argv[2]}' (FORMAT csv, HEADER true)")
print(f"{time.perf_counter() - started:.3f}")
