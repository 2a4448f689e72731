"""Pipelines: graphs of steps over the entry points of one project, each step an ordinary run,
reused when its code, environment, parameters and inputs are unchanged.

- `graph`: the order of the steps and which may start (pure).
- `steps`: a step's values ({name}, {STEP.outputs} replaced) and run options; where a finished
  step's outputs are read.
- `lock`: one step with the same inputs at a time, across processes.
- `start`: the pipeline run's record; run a pipeline, or resume a recorded one.
- `driver`: the steps in threads through the backends' handles; signals.
- `tracking`: the pipeline run as the MLflow parent run of its steps' runs.
"""

from runner.pipeline.start import Policy, resume_pipeline, run_pipeline

__all__ = ["Policy", "resume_pipeline", "run_pipeline"]
