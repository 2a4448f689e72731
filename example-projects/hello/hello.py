"""Greets, and writes what it did into REPRUN_OUTPUT_DIR so that the run record lists it."""

import argparse
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float, required=True)
parser.add_argument("--name", required=True)
parser.add_argument("--times", type=int, default=1)
parser.add_argument("--shout", choices=["true", "false", "True", "False"], default="false")
parser.add_argument("--color", default="green")
args = parser.parse_args()

greeting = f"Hello, {args.name}!"
if args.shout.lower() == "true":
    greeting = greeting.upper()
for _ in range(args.times):
    print(greeting)
print(f"alpha={args.alpha} color={args.color}")

out = Path(os.environ.get("REPRUN_OUTPUT_DIR", "."))
summary = {"greeting": greeting, "alpha": args.alpha, "times": args.times, "color": args.color}
(out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
