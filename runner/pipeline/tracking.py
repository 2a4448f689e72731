"""The MLflow parent run of a pipeline run: every step's MLflow run is its child
(``mlflow.parentRunId``), as a sweep's trials are (`runner.sweep.tracking`).

The parent is created when the pipeline run starts (named after it, the pipeline's parameters as
parameters) and ended with it, with each step's metrics as ``STEP.NAME``. The pipeline never
depends on the server: a failure is one warning, and the steps are then tracked on their own.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Callable, Mapping

from runner.errors import TrackingError
from runner.record.types import RunRecord, Status
from runner.tracking.mlflow import MlflowClient, Pair, TrackingOptions, is_server, ms

Say = Callable[[str], None]


@dataclasses.dataclass
class PipelineParent:
    client: MlflowClient
    options: TrackingOptions
    run_id: str
    experiment_id: str
    say: Say

    @classmethod
    def begin(cls, options: TrackingOptions | None, env: Mapping[str, str], record: RunRecord,
              say: Say) -> PipelineParent | None:
        """The parent run on the server; None without a server (or when it fails)."""
        if options is None or options.uri is None or not is_server(options.uri):
            return None
        client = MlflowClient(options.uri, env)
        name = options.run_name or f"{record.entry_point}-{record.run_id[:8]}"
        tags: list[Pair] = [
            ("mlflow.user", getpass.getuser()), ("mlflow.source.type", "PROJECT"),
            ("mlflow.source.name", record.project.uri),
            ("mlflow.project.entryPoint", record.entry_point), ("mlflow.runName", name),
            ("reprun.run_id", record.run_id), ("reprun.kind", "pipeline")]
        try:
            experiment = options.experiment_id or (
                client.experiment_id(options.experiment_name)[0]
                if options.experiment_name else "0")
            info = client.create_run(experiment, tags, ms(record.started_at.timestamp()), name)
            client.log_batch(info["run_id"], params=list(record.parameters.items()))
        except TrackingError as exc:
            say(f"warning: mlflow: no parent run for the pipeline: {exc.render()}; the steps "
                "are tracked on their own")
            client.close()
            return None
        return cls(client, options, str(info["run_id"]), experiment, say)

    def step_options(self) -> TrackingOptions:
        """Each step's tracking: in the parent's experiment, as its child."""
        return dataclasses.replace(self.options, experiment_id=self.experiment_id,
                                   experiment_name=None, parent_run_id=self.run_id,
                                   run_name=None)

    def end(self, record: RunRecord) -> None:
        """The steps' metrics, and the pipeline run's status."""
        status = record.status if record.status.done else Status.FAILED
        try:
            metrics = [{"key": k, "value": m.last, "timestamp": ms(), "step": 0}
                       for k, m in record.metrics.items()]
            if metrics:
                self.client.log_batch(self.run_id, metrics=metrics)
            self.client.update_run(self.run_id, status.value if status is not Status.UNKNOWN
                                   else "FAILED", ms())
        except TrackingError as exc:
            self.say(f"warning: mlflow: the pipeline's parent run was not ended: "
                     f"{exc.render()}")
        finally:
            self.client.close()
