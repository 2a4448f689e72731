"""A project without an MLproject file: run it with `reprun run DIR -e train.py -P lr=0.1`.

Every -P name=value arrives as --name value.
"""

import argparse
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

loss = 1.0
for epoch in range(args.epochs):
    loss *= 1 - args.lr
    print(f"epoch {epoch + 1}: loss {loss:.4f}")

out = Path(os.environ.get("REPRUN_OUTPUT_DIR", "."))
(out / "final.json").write_text(json.dumps({"lr": args.lr, "loss": round(loss, 6)}) + "\n")
