"""Reads the mounted data, greets, and writes a summary into REPRUN_OUTPUT_DIR (on the host)."""

import argparse
import csv
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, required=True)
args = parser.parse_args()

with Path("/data/cities.csv").open(newline="") as handle:
    rows = list(csv.DictReader(handle))[: args.rows]
mean = sum(float(r["temperature"]) for r in rows) / len(rows)
print(f"Hello, {os.environ['GREETING_NAME']} ({os.environ['MODE']}), from {os.getcwd()}")
print(f"mean temperature of {len(rows)} cities: {mean:.2f}")

out = Path(os.environ["REPRUN_OUTPUT_DIR"])
(out / "summary.json").write_text(json.dumps({"rows": len(rows), "mean": mean}, indent=2) + "\n")
