"""The three steps of the multistep example, standard library only.

prep drops the rows that are not two numbers; train fits y = a*x + b by ridge-shrunk least
squares (alpha pulls the slope toward 0); evaluate reports the mean squared error. Each writes into
REPRUN_OUTPUT_DIR (the current directory without reprun) and prints its metrics as 'name: value'.
"""

import argparse
import csv
import json
import os
from pathlib import Path


def out_dir() -> Path:
    path = Path(os.environ.get("REPRUN_OUTPUT_DIR", "."))
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_rows(path: str) -> list[tuple[float, float]]:
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                rows.append((float(row["x"]), float(row["y"])))
            except (TypeError, ValueError):
                continue
    return rows


def prep(raw: str) -> None:
    rows = read_rows(raw)
    with open(out_dir() / "clean.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y"])
        writer.writerows(rows)
    print(f"rows: {len(rows)}")


def train(data: str, alpha: float) -> None:
    rows = read_rows(data)
    n = len(rows)
    mean_x = sum(x for x, _ in rows) / n
    mean_y = sum(y for _, y in rows) / n
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in rows)
    sxx = sum((x - mean_x) ** 2 for x, _ in rows)
    slope = sxy / (sxx + alpha)
    model = {"slope": slope, "intercept": mean_y - slope * mean_x}
    (out_dir() / "model.json").write_text(json.dumps(model), encoding="utf-8")
    print(f"slope: {slope:.6f}")


def evaluate(model_path: str, data: str) -> None:
    model = json.loads(Path(model_path).read_text(encoding="utf-8"))
    rows = read_rows(data)
    mse = sum((model["slope"] * x + model["intercept"] - y) ** 2 for x, y in rows) / len(rows)
    (out_dir() / "report.json").write_text(json.dumps({"mse": mse}), encoding="utf-8")
    print(f"mse: {mse:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["prep", "train", "evaluate"])
    parser.add_argument("--raw")
    parser.add_argument("--data")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--model")
    args = parser.parse_args()
    if args.step == "prep":
        prep(args.raw)
    elif args.step == "train":
        train(args.data, args.alpha)
    else:
        evaluate(args.model, args.data)


if __name__ == "__main__":
    main()
