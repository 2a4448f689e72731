"""Elastic-net regression of wine quality with scikit-learn, as in MLflow's example.

MLflow's example downloads the UCI red-wine CSV; this one makes a seeded, synthetic table with
the same columns, so that it runs offline and gives byte-identical outputs for the same
parameters. Metrics and the model's coefficients go to REPRUN_OUTPUT_DIR; when
MLFLOW_TRACKING_URI is set they are also logged to that MLflow server, as the original does.
Usage: python train.py [alpha] [l1_ratio]
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

FEATURES = [
    "fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
    "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol",
]
TRUE_WEIGHTS = [0.05, -1.1, -0.2, 0.02, -1.8, 0.004, -0.003, -0.5, -0.4, 0.9, 0.3]


def wine_data(rows=1599, seed=40):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, len(FEATURES)))
    quality = 5.6 + features @ np.array(TRUE_WEIGHTS) + rng.normal(scale=0.6, size=rows)
    data = pd.DataFrame(features, columns=FEATURES)
    data["quality"] = quality
    return data


def eval_metrics(actual, pred):
    rmse = float(np.sqrt(mean_squared_error(actual, pred)))
    return {"rmse": round(rmse, 6), "mae": round(float(mean_absolute_error(actual, pred)), 6),
            "r2": round(float(r2_score(actual, pred)), 6)}


def main():
    alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    train, test = train_test_split(wine_data(), random_state=42)
    train_x, test_x = train.drop(["quality"], axis=1), test.drop(["quality"], axis=1)
    train_y, test_y = train[["quality"]], test[["quality"]]

    model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
    model.fit(train_x, train_y)
    metrics = eval_metrics(test_y, model.predict(test_x))

    print(f"Elasticnet model (alpha={alpha:f}, l1_ratio={l1_ratio:f}):")
    print(f"  RMSE: {metrics['rmse']}")
    print(f"  MAE: {metrics['mae']}")
    print(f"  R2: {metrics['r2']}")
    out = Path(os.environ.get("REPRUN_OUTPUT_DIR", "."))
    coefficients = {name: round(float(w), 8) for name, w in zip(FEATURES, model.coef_)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (out / "model.json").write_text(json.dumps(
        {"coefficients": coefficients, "intercept": round(float(model.intercept_[0]), 8),
         "alpha": alpha, "l1_ratio": l1_ratio}, indent=2) + "\n")

    if os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow
        import mlflow.sklearn

        with mlflow.start_run():
            mlflow.log_param("alpha", alpha)
            mlflow.log_param("l1_ratio", l1_ratio)
            mlflow.log_metrics(metrics)
            mlflow.sklearn.log_model(model, name="model")


if __name__ == "__main__":
    main()
