"""The web view's model registry: the JSON of ``models list --json`` and ``models show --json``
(`runner.models.view`), and the versions a run registered. A name from a URL is checked as the
CLI checks it (letters, digits, '.', '_', '-') before it is looked up."""

from __future__ import annotations

from urllib.parse import unquote

from runner.errors import UsageError
from runner.models.names import check_name, parse_ref
from runner.models.store import ModelStore
from runner.models.view import model_list, model_show, version_json
from runner.record.store import RunStore
from runner.ui.api import ApiError, Json, Query, run_id


def models(store: RunStore, _query: Query) -> Json:
    return model_list(ModelStore(store.home))


def model(store: RunStore, name: str, which: str, _query: Query) -> Json:
    """``/api/models/NAME`` (the model), ``/api/models/NAME/3`` or ``/api/models/NAME/@prod``
    (a version; ``@latest`` the newest)."""
    name = unquote(name)
    which = unquote(which)
    try:
        check_name(name)
        ref = name if not which else f"{name}@{which[1:]}" if which.startswith("@") else (
            f"{name}:{which}")
        parsed = parse_ref(ref)
    except UsageError as exc:
        raise ApiError(400, exc.render()) from None
    try:
        return model_show(ModelStore(store.home), parsed)
    except UsageError as exc:  # no such model, version or alias
        raise ApiError(404, exc.render()) from None


def run_models(store: RunStore, given: str, _query: Query) -> Json:
    """The versions registered from a run, as `version_json` gives them."""
    rid = run_id(store, given)
    registry = ModelStore(store.home)
    found = []
    for ref in registry.versions_from_runs([rid]).get(rid, []):
        name, _, number = ref.partition("@")
        if number.isdigit() and int(number) in registry.versions(name):
            found.append(version_json(registry, registry.version(name, int(number))))
    return found
