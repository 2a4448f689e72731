"""``reprun models``: register run outputs as versions of a named model, alias, show, get,
reproduce and serve them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli.common import EXIT_FAILURE, say
from runner.cli.common import store as open_store

if TYPE_CHECKING:
    from runner.models.store import ModelStore
    from runner.tracking.mlflow import TrackingOptions

TRACKING = click.option("--tracking-uri", default=None, metavar="URI",
                        help="Also make the change in this MLflow server's model registry "
                             "(default: env MLFLOW_TRACKING_URI).")


def model_store() -> ModelStore:
    from runner.models.store import ModelStore

    return ModelStore(open_store().home)


@click.group()
def models() -> None:
    """The model registry: named models whose versions are run outputs, with aliases such as
    production, and the lineage of each version (run, commit, lock, data)."""


@models.command("register")
@click.argument("name")
@click.argument("source", metavar="RUN[:PATH]")
@click.option("--description", default=None, metavar="TEXT", help="What this version is.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag; repeatable.")
@TRACKING
def register_cmd(name: str, source: str, description: str | None, tags: tuple[str, ...],
                 tracking_uri: str | None) -> int:
    """Register a run's output as the next version of NAME. PATH is a file or folder of the
    run's output directory; without it, the MLflow model the run wrote (a folder with an
    MLmodel file), else all of its outputs. The files are kept in the store by content."""
    from runner.models.names import check_name
    from runner.models.register import register

    check_name(name)
    tag_map = _tags(tags)
    run_id, _, path = source.partition(":")
    runs = open_store()
    record = runs.reconcile(runs.get(run_id))
    store = model_store()
    version, _new = register(store, name, record, path if ":" in source else None,
                             description, tag_map)
    say(f"registered {name} version {version.version} from run {record.run_id[:12]}"
        f"{' ' + version.path if version.path else ''} ({version.digest[:19]}, "
        f"{len(version.files)} file(s))")
    tracking = _tracking(tracking_uri)
    if tracking is not None:
        from runner.models.mirror import mirror_version

        version = mirror_version(store, version, record, tracking, dict(os.environ))
        if version.mlflow and version.mlflow.version:
            say(f"MLflow {version.mlflow.tracking_uri}: {name} version {version.mlflow.version}")
    return 0


def _tags(tags: tuple[str, ...]) -> dict[str, str]:
    from runner.errors import UsageError

    found = {}
    for tag in tags:
        key, eq, value = tag.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--tag '{tag}' is not KEY=VALUE", hint="e.g. --tag team=forecast")
        found[key.strip()] = value
    return found


def _tracking(uri: str | None) -> TrackingOptions | None:
    if not (uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return None
    from runner.tracking.mlflow import is_server, tracking_options

    options = tracking_options(os.environ, uri, None, None)
    return options if options.uri is not None and is_server(options.uri) else None


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(as_json: bool) -> int:
    """Every registered model: its versions, the latest, its aliases."""
    from runner.models.view import model_list

    rows = model_list(model_store())
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        say("no model registered yet: 'reprun models register NAME RUN'")
        return 0
    click.echo(f"{'NAME':<28} {'VERSIONS':>8} {'LATEST':>6}  {'UPDATED':<20} ALIASES")
    for row in rows:
        aliases = ", ".join(f"@{a}={v}" for a, v in sorted(row["aliases"].items()))
        click.echo(f"{row['name']:<28} {row['versions']:>8} {row['latest']:>6}  "
                   f"{row['updated_at'][:19]:<20} {aliases}")
    return 0


@models.command("show")
@click.argument("ref", metavar="NAME[:VERSION|@ALIAS]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_cmd(ref: str, as_json: bool) -> int:
    """A model's versions and aliases, or one version: its run, digest, files, metrics, MLflow
    flavors and signature, and lineage (commit, lock, input data and the runs that made it)."""
    from runner.models.names import parse_ref
    from runner.models.view import model_show, version_lines

    data = model_show(model_store(), parse_ref(ref))
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif "versions" in data:
        click.echo(f"model: {data['name']}")
        for row in data["versions"]:
            aliases = "".join(f" @{a}" for a in row["aliases"])
            click.echo(f"  {row['version']:>4}  {row['created_at'][:19]}  run "
                       f"{row['run_id'][:12]}  {row['digest'][:19]}{aliases}"
                       f"{'  ' + row['description'] if row['description'] else ''}")
        for move in data["alias_history"][-10:]:
            what = f"-> {move['version']}" if move["version"] is not None else "deleted"
            was = f" (was {move['previous']})" if move["previous"] is not None else ""
            click.echo(f"  alias @{move['alias']} {what}{was} by {move['by']} at "
                       f"{move['at'][:19]}")
    else:
        click.echo("\n".join(version_lines(data)))
    return 0


@models.command("alias")
@click.argument("name")
@click.argument("words", nargs=-1, required=True, metavar="VERSION ALIAS | ALIAS --delete")
@click.option("--delete", is_flag=True, help="Remove the alias (give no VERSION).")
@TRACKING
def alias_cmd(name: str, words: tuple[str, ...], delete: bool, tracking_uri: str | None) -> int:
    """Point ALIAS (e.g. production) at VERSION of NAME, moving it from where it was; each move
    is kept in the model's alias history (who, when, from which version)."""
    from runner.errors import UsageError
    from runner.models.names import Ref, check_alias
    from runner.models.register import who
    from runner.record.types import now

    if len(words) != (1 if delete else 2):
        raise UsageError("give VERSION ALIAS, or ALIAS --delete",
                         hint=f"e.g. 'reprun models alias {name} 3 production'")
    alias = words[-1]
    version = None if delete else _version_number(name, words[0])
    check_alias(alias)
    store = model_store()
    if version is not None:
        store.resolve(Ref(name, version=version))
    else:
        store.resolve(Ref(name))
    with store.writing(f"the alias '{alias}' was not changed"), store.locked(name):
        move = store.set_alias(name, alias, version, who(), now())
    was = f" (was version {move.previous})" if move.previous is not None else ""
    say(f"{name}@{alias} " + (f"-> version {version}{was}" if version else f"deleted{was}"))
    tracking = _tracking(tracking_uri)
    if tracking is not None:
        from runner.models.mirror import mirror_alias

        mirror_alias(store, name, alias, version, tracking, dict(os.environ))
    return 0


def _version_number(name: str, text: str) -> int:
    from runner.errors import UsageError
    from runner.models.names import shown

    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"version '{shown(text)}' of '{name}' is not a number from 1",
                         hint=f"e.g. 'reprun models alias {name} 3 production'")
    return int(text)


@models.command("get")
@click.argument("ref", metavar="NAME[:VERSION|@ALIAS]")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="The directory to copy the files into (created).")
def get_cmd(ref: str, output: Path) -> int:
    """Copy a version's files out of the store, each checked against its digest first."""
    from runner.models.fetch import get
    from runner.models.names import parse_ref

    store = model_store()
    version = store.resolve(parse_ref(ref))
    written = get(store, version, output)
    say(f"{version.name} version {version.version}: {len(written)} file(s) in {output} "
        f"(digests checked)")
    return 0


@models.command("reproduce")
@click.argument("ref", metavar="NAME[:VERSION|@ALIAS]")
@click.option("--check", is_flag=True, help="Only say whether it came out the same (the "
                                            "exit code); no output but the verdict.")
@click.option("--allow-drift", is_flag=True,
              help="If the recorded lock cannot be honoured, run anyway and record the drift.")
def reproduce_cmd(ref: str, check: bool, allow_drift: bool) -> int:
    """Run the run that made a version again and compare the model it makes: exit 0 when its
    digest is the version's, 1 when not (with how the metrics compare)."""
    from runner.models.again import reproduce_version
    from runner.models.names import parse_ref

    store = model_store()
    version = store.resolve(parse_ref(ref))
    result = reproduce_version(store, version, open_store(), allow_drift,
                               (lambda _m: None) if check else say,
                               echo=not check)
    for line in result.lines():
        say(line)
    return 0 if result.identical else EXIT_FAILURE


@models.command("serve")
@click.argument("ref", metavar="NAME[:VERSION|@ALIAS]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (the loopback unless told otherwise).")
@click.option("-p", "--port", default=5001, show_default=True, type=click.IntRange(0, 65535))
def serve_cmd(ref: str, host: str, port: int) -> int:
    """Serve an MLflow-format version with MLflow's own scoring server, run by the interpreter
    of the environment the model was made in (which must have mlflow)."""
    from runner.models.names import parse_ref
    from runner.models.serve import serve

    store = model_store()
    version = store.resolve(parse_ref(ref))
    return serve(store, version, host, port, dict(os.environ), say)
