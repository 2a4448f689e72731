"""reprun from Python: run a project (an entry point or a pipeline) and read the run store.

    import reprun

    run = reprun.run("example-projects/multistep", entry_point="train",
                     parameters={"data": "clean.csv", "alpha": 0.3})
    print(run.run_id, run.status, run.metrics, run.outputs)
    for past in reprun.runs(where="metrics.mse < 0.1", sort=["metrics.mse"]):
        print(past.run_id, past.metrics)

The same store as the command line (REPRUN_HOME), the same checks and the same exceptions
(`ReprunError` and its subclasses; the CLI maps `USER_ERRORS` to exit code 2). Called from inside
a run that reprun started (REPRUN_RUN_ID is set for its command), a new run records that run as
its ``parent``. See docs/python-api.md.
"""

from reprun.api import Run, run, runs, sweep
from runner import __version__
from runner.errors import (
    USER_ERRORS,
    BackendError,
    EnvBuildError,
    NotSupportedError,
    ParameterError,
    ProjectNotFoundError,
    ReprunError,
    RunNotFoundError,
    SourceError,
    SpecError,
    StepError,
    StoreError,
    UsageError,
)

__all__ = [
    "USER_ERRORS", "BackendError", "EnvBuildError", "NotSupportedError", "ParameterError",
    "ProjectNotFoundError", "ReprunError", "Run", "RunNotFoundError", "SourceError",
    "SpecError", "StepError", "StoreError", "UsageError", "__version__", "run", "runs",
    "sweep",
]
