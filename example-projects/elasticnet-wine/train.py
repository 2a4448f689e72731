"""Elastic-net regression on a wine-quality data set (data/wine.csv), in pure Python.

Deterministic: the same parameters and data give byte-identical files in REPRUN_OUTPUT_DIR.
Usage: python train.py [alpha] [l1_ratio]
"""

import csv
import json
import math
import os
import sys
from pathlib import Path

FEATURES = [
    "fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
    "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol",
]
DATA = Path(__file__).parent / "data" / "wine.csv"
TRAIN_ROWS = 300


def read_data(path):
    """The feature rows and the quality column of the CSV file (a header line, then numbers)."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if header != FEATURES + ["quality"]:
            sys.exit(f"{path}: unexpected columns {header}")
        rows, target = [], []
        for line in reader:
            values = [float(v) for v in line]
            rows.append(values[:-1])
            target.append(values[-1])
    return rows, target


def soft_threshold(value, threshold):
    if value > threshold:
        return value - threshold
    if value < -threshold:
        return value + threshold
    return 0.0


def fit(rows, target, alpha, l1_ratio, iterations=200):
    """Coordinate descent for (1/2n)||y - Xw - b||^2 + alpha*(l1*|w| + (1-l1)/2*||w||^2)."""
    n, k = len(rows), len(rows[0])
    weights = [0.0] * k
    intercept = sum(target) / n
    residual = [y - intercept for y in target]
    norms = [sum(r[j] ** 2 for r in rows) / n for j in range(k)]
    for _ in range(iterations):
        for j in range(k):
            old = weights[j]
            rho = sum(rows[i][j] * (residual[i] + old * rows[i][j]) for i in range(n)) / n
            new = soft_threshold(rho, alpha * l1_ratio) / (norms[j] + alpha * (1 - l1_ratio))
            if new != old:
                for i in range(n):
                    residual[i] -= (new - old) * rows[i][j]
                weights[j] = new
    return weights, intercept


def evaluate(rows, target, weights, intercept):
    predictions = [intercept + sum(w * v for w, v in zip(weights, x)) for x in rows]
    errors = [p - y for p, y in zip(predictions, target)]
    mean = sum(target) / len(target)
    rmse = math.sqrt(sum(e * e for e in errors) / len(errors))
    mae = sum(abs(e) for e in errors) / len(errors)
    r2 = 1 - sum(e * e for e in errors) / sum((y - mean) ** 2 for y in target)
    return {"rmse": round(rmse, 6), "mae": round(mae, 6), "r2": round(r2, 6)}


def main():
    alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    rows, target = read_data(DATA)
    cut = TRAIN_ROWS
    train_x, test_x, train_y, test_y = rows[:cut], rows[cut:], target[:cut], target[cut:]
    weights, intercept = fit(train_x, train_y, alpha, l1_ratio)
    metrics = evaluate(test_x, test_y, weights, intercept)
    print(f"Elasticnet model (alpha={alpha:f}, l1_ratio={l1_ratio:f}):")
    print(f"  RMSE: {metrics['rmse']}")
    print(f"  MAE: {metrics['mae']}")
    print(f"  R2: {metrics['r2']}")
    out = Path(os.environ.get("REPRUN_OUTPUT_DIR", "."))
    model = {"features": FEATURES, "weights": [round(w, 8) for w in weights],
             "intercept": round(intercept, 8), "alpha": alpha, "l1_ratio": l1_ratio}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (out / "model.json").write_text(json.dumps(model, indent=2) + "\n")


if __name__ == "__main__":
    main()
