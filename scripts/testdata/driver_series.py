"""Writes OpenMetrics for the Prometheus driver tests: table sizes of the shared orders database,
one gauge per team, every 5 minutes from 2025-09-25 to 2025-11-05 (covering October whole).
Constant per team, so the period average is known exactly: orders 800e9, payments 300e9, search 100e9.
Usage: python3 driver_series.py OUT_FILE"""
import sys
from datetime import datetime, timezone

start = int(datetime(2025, 9, 25, tzinfo=timezone.utc).timestamp())
end = int(datetime(2025, 11, 5, tzinfo=timezone.utc).timestamp())
sizes = {"orders": 800e9, "payments": 300e9, "search": 100e9}
with open(sys.argv[1], "w") as out:
    out.write("# HELP pg_table_size_bytes Size of a team's tables in the shared database.\n")
    out.write("# TYPE pg_table_size_bytes gauge\n")
    for team, size in sizes.items():
        for t in range(start, end, 300):
            out.write(f'pg_table_size_bytes{{db="orders",team="{team}"}} {size:.0f} {t}\n')
    out.write("# EOF\n")
