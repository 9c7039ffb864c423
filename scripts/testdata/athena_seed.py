"""Queues grain query results on moto's Athena, as Athena itself would return them: a header row,
then the rows. moto writes each to the query's result location as CSV when the query starts.

Usage: athena_seed.py <moto url> <result.csv | - for a header-only result> [...]
Each argument after the URL is one result, taken by the next query started, in order.
"""
import csv
import json
import sys
import urllib.request

url = sys.argv[1].rstrip("/") + "/moto-api/static/athena/query-results"
header = None
results = []
for path in sys.argv[2:]:
    if path == "-":
        results.append(None)
        continue
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    results.append(rows)
body = []
for rows in results:
    rows = rows if rows is not None else [header]
    body.append({
        "rows": [{"Data": [{"VarCharValue": v} for v in row]} for row in rows],
        "column_info": [{"Name": h, "Type": "varchar"} for h in header],
    })
request = urllib.request.Request(url, data=json.dumps({"results": body}).encode(), headers={"Content-Type": "application/json"}, method="POST")
with urllib.request.urlopen(request) as response:
    assert response.status == 201, response.status
