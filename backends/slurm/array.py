"""The trials of a sweep submitted as one Slurm job array (``sbatch --array=0-N%P``).

Each trial is staged as a single run is (`backends.slurm.stage`), and its submission joins a
batch of its sweep: the batch gathers the trials that arrive within `WINDOW_S` of each other,
then one ``sbatch`` submits them all, at most ``parallel`` running at once (``%P``). Task ``i``
runs ``WORKDIR/arrays/ARRAY/task-i.sh``, which sets the variables that differ from trial to
trial (the run id, its outputs and metrics files, its MLflow run), changes to the trial's code
and appends its output to the trial's own ``job.log``. Each trial is then followed and
recorded on its own, as the job ``ARRAYID_i``; squeue is asked once for all of them.
"""

from __future__ import annotations

import shlex
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from backends.base import ArraySlot
from backends.slurm import commands
from backends.slurm.settings import Settings
from backends.slurm.stage import Staged, submit_argv
from runner.fsutil import atomic_write_text

WINDOW_S = 1.0  # a batch is submitted once no trial joined it for this long
QUEUE_TTL_S = 0.5  # how long one squeue answer serves every trial of an array
PER_TRIAL = ("REPRUN_", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_NAME")


class _Batch:
    def __init__(self) -> None:
        self.members: list[tuple[Staged, dict[str, str]]] = []
        self.last = time.monotonic()
        self.done = threading.Event()
        self.job_id = ""
        self.argv: list[str] = []
        self.error: BaseException | None = None


_LOCK = threading.Lock()
_OPEN: dict[str, _Batch] = {}


def join(slot: ArraySlot, config: Settings, staged: Staged, env: Mapping[str, str],
         workdir: Path) -> tuple[str, int, list[str]]:
    """Submit ``staged`` with the other trials of its sweep: (array job id, task, sbatch argv)."""
    with _LOCK:
        batch = _OPEN.get(slot.group)
        opener = batch is None
        if batch is None:
            batch = _OPEN[slot.group] = _Batch()
        index = len(batch.members)
        batch.members.append((staged, dict(env)))
        batch.last = time.monotonic()
    if opener:
        while time.monotonic() - batch.last < WINDOW_S:
            time.sleep(0.05)
        with _LOCK:
            del _OPEN[slot.group]
        try:
            batch.argv, batch.job_id = _submit(batch, slot, config, workdir)
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            batch.done.set()
    batch.done.wait()
    if batch.error is not None:
        raise batch.error
    return batch.job_id, index, batch.argv


def _submit(batch: _Batch, slot: ArraySlot, config: Settings,
            workdir: Path) -> tuple[list[str], str]:
    root = workdir / "arrays" / uuid.uuid4().hex
    root.mkdir(parents=True)
    common = batch.members[0][1]
    cases = []
    for index, (staged, env) in enumerate(batch.members):
        task = root / f"task-{index}.sh"
        atomic_write_text(task, task_script(staged, env, common), durable=False)
        cases.append(f"{index}) exec bash {shlex.quote(str(task))} ;;")
    script = root / "array.sh"
    atomic_write_text(script, "#!/bin/bash\n# reprun: the trials of a sweep, one per task\n"
                      'case "$SLURM_ARRAY_TASK_ID" in\n' + "\n".join(cases) + "\nesac\n"
                      'echo "reprun: no task $SLURM_ARRAY_TASK_ID" >&2\nexit 1\n',
                      durable=False)
    last = len(batch.members) - 1
    argv = submit_argv(config, [f"--job-name=reprun-sweep-{slot.group[:12]}",
                                f"--output={root}/task-%a.out", f"--chdir={root}",
                                f"--array=0-{last}%{max(1, slot.parallel)}"], script)
    return argv, commands.submit(argv, common)


def task_script(staged: Staged, env: Mapping[str, str], common: Mapping[str, str]) -> str:
    """The trial's own variables (those of reprun and its MLflow run that differ from the
    array's environment), its code directory, its log."""
    lines = ["#!/bin/bash"]
    for name in sorted(set(env) | set(common)):
        if not name.startswith(PER_TRIAL) or env.get(name) == common.get(name):
            continue
        if name in env:
            lines.append(f"export {name}={shlex.quote(env[name])}")
        else:
            lines.append(f"unset {name}")
    lines += [f"cd {shlex.quote(str(staged.code))} || exit 1",
              f"exec bash {shlex.quote(str(staged.script))} >> {shlex.quote(str(staged.log))}"
              " 2>&1"]
    return "\n".join(lines) + "\n"


class ArrayQueue:
    """squeue asked once for every task of an array (``-r``: one line per task), shared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: dict[str, tuple[float, dict[str, commands.QueueState]]] = {}

    def state(self, job: str, env: Mapping[str, str]) -> commands.QueueState | None:
        array = job.partition("_")[0]
        with self._lock:
            asked = self._asked.get(array)
            if asked is None or time.monotonic() - asked[0] > QUEUE_TTL_S:
                asked = (time.monotonic(), commands.array_states(array, env))
                self._asked[array] = asked
        return asked[1].get(job)


QUEUE = ArrayQueue()
