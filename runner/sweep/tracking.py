"""The MLflow parent run of a sweep: every trial's MLflow run is its child (``mlflow.parentRunId``).

The parent is created when the sweep starts (``mlflow.runName`` the sweep id, the sweep's spec as
parameters), reopened by a resume, and ended FINISHED, FAILED or KILLED with the sweep, with the
best value of the sweep's metric. The sweep never depends on the server: a failure is one
warning, and the trials are then tracked without a parent.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Callable, Mapping

from runner.errors import TrackingError
from runner.record.types import Status
from runner.sweep.record import SweepRecord
from runner.tracking.mlflow import MlflowClient, Pair, TrackingOptions, is_server, ms

Say = Callable[[str], None]


def parent_tags(record: SweepRecord, run_name: str | None) -> list[Pair]:
    spec = record.spec
    return [("mlflow.user", getpass.getuser()), ("mlflow.source.type", "PROJECT"),
            ("mlflow.source.name", spec.uri), ("mlflow.project.entryPoint", spec.entry_point),
            ("mlflow.runName", run_name or f"sweep-{record.sweep_id}"),
            ("reprun.sweep_id", record.sweep_id), ("reprun.sweep.mode", spec.mode)]


def parent_params(record: SweepRecord) -> list[Pair]:
    """The sweep's spec as parameters: each -P as given, the mode, seed and metric."""
    spec = record.spec
    params: list[Pair] = [(f"sweep.{p.partition('=')[0]}", p.partition("=")[2])
                          for p in spec.params]
    params += [("sweep.mode", spec.mode), ("sweep.seed", str(spec.seed)),
               ("sweep.trials", str(len(record.trials) if spec.trials is None else spec.trials)),
               ("sweep.parallel", str(spec.parallel))]
    if spec.metric:
        params.append(("sweep.metric", f"{spec.metric}:{spec.goal}"))
    return params


@dataclasses.dataclass
class Parent:
    client: MlflowClient
    options: TrackingOptions
    run_id: str
    experiment_id: str
    say: Say

    @classmethod
    def begin(cls, options: TrackingOptions | None, env: Mapping[str, str],
              record: SweepRecord, say: Say) -> Parent | None:
        """The parent run (created, or the recorded one reopened); None without a server."""
        if options is None or not is_server(options.uri) or options.uri is None:
            return None
        client = MlflowClient(options.uri, env)
        try:
            if record.mlflow_run_id is not None:
                run = client.get_run(record.mlflow_run_id)
                experiment = str(run["info"]["experiment_id"])
                client.call("POST", "runs/update", {"run_id": record.mlflow_run_id,
                                                    "status": "RUNNING"})
                return cls(client, options, record.mlflow_run_id, experiment, say)
            experiment = options.experiment_id or (
                client.experiment_id(options.experiment_name)[0]
                if options.experiment_name else "0")
            info = client.create_run(experiment, parent_tags(record, options.run_name),
                                     ms(record.created_at.timestamp()),
                                     options.run_name or f"sweep-{record.sweep_id}")
            client.log_batch(info["run_id"], params=parent_params(record))
        except TrackingError as exc:
            say(f"warning: mlflow: no parent run for the sweep: {exc.render()}; the trials are "
                "tracked on their own")
            return None
        return cls(client, options, str(info["run_id"]), experiment, say)

    def trial_options(self) -> TrackingOptions:
        """What each trial's tracking is: in the parent's experiment, as its child."""
        return dataclasses.replace(self.options, experiment_id=self.experiment_id,
                                   experiment_name=None, parent_run_id=self.run_id,
                                   run_name=None)

    def end(self, record: SweepRecord) -> None:
        """The best value of the metric, and the sweep's status."""
        from runner.sweep.driver import best_trial

        status = record.status if record.status.done else Status.FAILED
        best = best_trial(record)
        try:
            if best is not None and best.value is not None and record.spec.metric:
                self.client.log_batch(self.run_id, metrics=[
                    {"key": f"best_{record.spec.metric}", "value": best.value,
                     "timestamp": ms(), "step": 0}],
                    tags=[("reprun.sweep.best_run_id", best.run_id or "")])
            self.client.update_run(self.run_id, status.value if status is not Status.UNKNOWN
                                   else "FAILED", ms())
        except TrackingError as exc:
            self.say(f"warning: mlflow: the sweep's parent run was not ended: {exc.render()}")
        finally:
            self.client.close()
