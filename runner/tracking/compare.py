"""``reprun runs compare``: runs side by side, parameters and metrics, the best value marked.

Which value of a metric is best comes, first that applies, from ``--better NAME:min|max``, from
the MLproject's ``metrics.better`` (kept in each record), or from the metric's name: lower is
better when a word of its last dotted part (split at ``_`` ``-`` ``/``) is one of `LOWER` (loss,
error, rmse, mae, ...), higher when one is in `HIGHER` (accuracy, r2, auc, f1, ...). Otherwise no
value is marked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from runner.errors import UsageError
from runner.record.types import RunRecord

Better = Literal["min", "max"]
LOWER = frozenset({
    "loss", "error", "err", "errors", "rmse", "mse", "mae", "mape", "smape", "rmsle", "msle",
    "nll", "perplexity", "ppl", "wer", "cer", "ter", "latency", "cost", "regret", "distance",
    "fpr", "fnr", "eer", "brier", "logloss", "hamming", "divergence", "kl",
})
HIGHER = frozenset({
    "accuracy", "acc", "r2", "auc", "roc", "f1", "fbeta", "precision", "recall", "score", "map",
    "ndcg", "mrr", "bleu", "rouge", "meteor", "iou", "miou", "dice", "reward", "return",
    "throughput", "psnr", "ssim", "top1", "top5", "kappa", "mcc", "sensitivity", "specificity",
    "tpr", "tnr", "hit", "hits", "coverage", "explained_variance",
})
_WORDS = re.compile(r"[_\-/\s]+")
Json = dict[str, Any]


def guess_better(name: str) -> Better | None:
    """min or max by the words of a metric's name (see the module); None when it does not say."""
    last = name.lower().rsplit(".", 1)[-1]
    words = set(_WORDS.split(last)) | {last}
    if words & LOWER:
        return "min"
    if words & HIGHER:
        return "max"
    return None


def parse_better(specs: Sequence[str]) -> dict[str, Better]:
    """``--better metrics.r2:max`` (repeatable, comma-separated) as metric name -> direction."""
    result: dict[str, Better] = {}
    for spec in specs:
        for item in filter(None, (i.strip() for i in spec.split(","))):
            name, _, way = item.rpartition(":")
            name = name.removeprefix("metrics.")
            if not name or way not in ("min", "max"):
                raise UsageError(f"--better '{item}' is not METRIC:min or METRIC:max",
                                 hint="e.g. --better metrics.r2:max")
            result[name] = "min" if way == "min" else "max"
    return result


def direction(name: str, records: Sequence[RunRecord],
              given: Mapping[str, Better]) -> tuple[Better | None, str]:
    """Which value of metric ``name`` is best, and why (flag, mlproject, name)."""
    if name in given:
        return given[name], "flag"
    declared = {r.metrics[name].better for r in records if name in r.metrics} - {None}
    if len(declared) == 1:
        way = declared.pop()
        return way, "mlproject"
    guessed = guess_better(name)
    return guessed, "name" if guessed else "none"


def compare(records: Sequence[RunRecord], given: Mapping[str, Better]) -> Json:
    """The comparison as data: one row per field, differing rows first."""
    rows = [_row(f"params.{n}", [r.parameters.get(n) for r in records], None, "none")
            for n in _names(r.parameters for r in records)]
    for name in _names(r.metrics for r in records):
        values = [r.metrics[name].last if name in r.metrics else None for r in records]
        way, why = direction(name, records, given)
        rows.append(_row(f"metrics.{name}", values, way, why))
    rows.sort(key=lambda row: row["same"])  # stable: differing rows first, order kept
    return {
        "runs": [{"run_id": r.run_id, "status": r.status.value, "entry_point": r.entry_point,
                  "project": r.project.name, "started_at": r.started_at.isoformat()}
                 for r in records],
        "rows": rows,
    }


def _names(mappings: Any) -> list[str]:
    return list(dict.fromkeys(name for mapping in mappings for name in mapping))


def _row(field: str, values: list[Any], way: Better | None, why: str) -> Json:
    present = [v for v in values if v is not None]
    best: list[int] = []
    if way is not None and present:
        target = min(present) if way == "min" else max(present)
        best = [i for i, v in enumerate(values) if v == target]
    return {"field": field, "values": values, "same": len(set(map(repr, values))) == 1,
            "better": way, "better_from": why, "best": best}


def render(result: Json) -> str:
    """Aligned text: a column per run, '*' after the best value, '~' before rows that differ."""
    runs = result["runs"]
    header = ["", *(r["run_id"][:12] for r in runs)]
    lines: list[list[str]] = [header, ["status", *(r["status"] for r in runs)],
                              ["entry point", *(r["entry_point"] for r in runs)]]
    for row in result["rows"]:
        label = ("~ " if not row["same"] else "  ") + row["field"]
        if row["better"]:
            label += f" ({row['better']})"
        cells = [_cell(v) + (" *" if i in row["best"] and not row["same"] else "")
                 for i, v in enumerate(row["values"])]
        lines.append([label, *cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
            for line in lines]
    text.append("~ differs between runs; * best value (min or max, from --better, the MLproject "
                "or the name)")
    return "\n".join(text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."
