"""The checks a tracking server makes on what a client logs, with MLflow's error answers.

An answer the client must raise on is an `ApiError`: an HTTP status and a JSON body
``{"error_code": ..., "message": ...}`` (the shape the MLflow client turns into its
``RestException``). 400 and 404 are never retried by the client; 5xx and 429 are, so reprun
never answers them for bad input.
"""

from __future__ import annotations

import math
import posixpath
import re
from typing import Any

MAX_PARAM_VALUE = 6000  # MLflow 3's limit on a parameter value
MAX_TAG_VALUE = 8000
MAX_KEY = 250
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS_TAGS = 100
MAX_BATCH_ENTITIES = 1000
MAX_POINTS = 1_000_000  # metric points one run may log (reprun's limit; documented)
MAX_JSON_BODY = 16 * 1024 * 1024  # a request's JSON body (a full log-batch is far smaller)
_KEY = re.compile(r"^[/\w.\- :]*$")


class ApiError(Exception):
    """An error answer: HTTP ``status`` with MLflow's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, str]:
        return {"error_code": self.code, "message": self.message}


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A string field of a request body (a missing required one is MLflow's 400)."""
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(f"Missing value for required parameter '{name}'.")
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for parameter '{name}': expected a string.")
    return value


def key(value: Any, what: str) -> str:
    """A metric, parameter or tag name MLflow accepts: the same characters, no path tricks."""
    if not isinstance(value, str):
        raise invalid(f"Invalid {what} name {value!r}: a name is a string.")
    if len(value) > MAX_KEY:
        raise invalid(f"Invalid {what} name '{value[:40]}...': longer than {MAX_KEY} characters.")
    if not _KEY.match(value):
        raise invalid(f"Invalid {what} name {value!r}: a name may hold letters, digits, "
                      "underscores, dashes, periods, spaces, colons and slashes only.")
    norm = posixpath.normpath(value)
    if norm != value or norm == "." or norm.startswith(("..", "/")):
        raise invalid(f"Invalid {what} name {value!r}: a name must not be a path that resolves "
                      f"to another one (it would be {norm!r}).")
    return value


def param_value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for parameter '{name}': values are strings.")
    if len(value) > MAX_PARAM_VALUE:
        raise invalid(f"Invalid value for parameter '{name}': {len(value)} characters, more "
                      f"than the {MAX_PARAM_VALUE} allowed.")
    return value


def tag_value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for tag '{name}': values are strings.")
    if len(value) > MAX_TAG_VALUE:
        raise invalid(f"Invalid value for tag '{name}': {len(value)} characters, more than "
                      f"the {MAX_TAG_VALUE} allowed.")
    return value


def metric(item: dict[str, Any]) -> tuple[str, float, int, int]:
    """Name, value, timestamp (ms) and step of a metric; NaN and infinities are kept, as MLflow
    keeps them (JSON ``NaN``, ``Infinity`` or the strings MLflow's protobuf JSON uses)."""
    name = key(item.get("key"), "metric")
    value = _number(item.get("value"))
    if value is None:
        raise invalid(f"Invalid value {item.get('value')!r} for metric '{name}': expected a "
                      "double (64-bit floating point).")
    timestamp = item.get("timestamp")
    if isinstance(timestamp, str) and timestamp.isdigit():
        timestamp = int(timestamp)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise invalid(f"Invalid timestamp {timestamp!r} for metric '{name}': a nonnegative "
                      "integer (ms) is expected.")
    step = item.get("step", 0)
    if isinstance(step, str) and step.lstrip("-").isdigit():
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, int):
        raise invalid(f"Invalid step {step!r} for metric '{name}': an integer is expected.")
    return name, value, timestamp, step


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return None


def batch_sizes(metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    """MLflow's limits on one log-batch."""
    if len(metrics) > MAX_BATCH_METRICS:
        raise invalid(f"A batch logging request can contain at most {MAX_BATCH_METRICS} "
                      f"metrics; got {len(metrics)}.")
    if len(params) > MAX_BATCH_PARAMS_TAGS or len(tags) > MAX_BATCH_PARAMS_TAGS:
        raise invalid(f"A batch logging request can contain at most {MAX_BATCH_PARAMS_TAGS} "
                      f"params and {MAX_BATCH_PARAMS_TAGS} tags; got {len(params)} and "
                      f"{len(tags)}.")
    if len(metrics) + len(params) + len(tags) > MAX_BATCH_ENTITIES:
        raise invalid(f"A batch logging request can contain at most {MAX_BATCH_ENTITIES} "
                      "metrics, params and tags in total.")


def items(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise invalid(f"Invalid value for parameter '{name}': a list of objects is expected.")
    return value


def relative_path_ok(path: str) -> bool:
    """Whether ``path`` stays inside its folder: not absolute, no '..', no empty part."""
    return not (not path or path.startswith("/") or "\\" in path or "\x00" in path
                or any(p in ("", ".", "..") for p in path.split("/")))


def relative_path(path: str) -> str:
    """An artifact path inside its folder, else MLflow's 400."""
    if not relative_path_ok(path):
        raise invalid(f"Invalid artifact path {path!r}: a relative path without '..' is "
                      "expected.")
    return path
