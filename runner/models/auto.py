"""The models an entry point declares (``models: {NAME: PATH}`` in MLproject), registered when a
run of it finishes: a new version, unless the files are the latest version's (the run is then
added to that version's runs). A model that cannot be registered is a warning: the run itself
finished."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from runner.errors import ReprunError
from runner.models.register import register
from runner.models.store import ModelStore
from runner.record.store import RunStore
from runner.record.types import RunRecord, Status

Notify = Callable[[str], None]


def register_declared(models: Mapping[str, str], record: RunRecord, runs: RunStore,
                      notify: Notify) -> None:
    if record.status is not Status.FINISHED:
        return
    store = ModelStore(runs.home)
    for name, path in models.items():
        try:
            version, new = register(store, name, record, path, same_as_latest=True)
        except ReprunError as exc:
            notify(f"warning: model '{name}' was not registered: {exc.render()}")
            continue
        if new:
            notify(f"registered {name} version {version.version} ({version.digest[:19]})")
        else:
            notify(f"{name}: the same files as version {version.version} "
                   f"({len(version.runs)} run(s) made them)")
