"""``--optimize``: Optuna chooses each trial's values (ask) from the results so far (tell).

The only module that imports optuna (the ``optuna`` extra). The study lives in the sweep's
directory (``optuna.journal``, Optuna's journal file storage), so that ``reprun sweep resume``
continues the same study. The space maps onto Optuna's distributions: a list (or ``choice()``)
is categorical, ``a..b`` and ``start:stop:step`` are int or float ranges with their step,
``uniform()`` and ``loguniform()`` are float (int for an int parameter) ranges, the latter on a
log scale. A parameter with one value is passed as it is. A trial that fails, is stopped, or
reports no value of the metric is told FAILED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.extras import needs_extra, require
from runner.record.types import Status
from runner.spec.types import EntryPoint
from runner.sweep.record import SweepRecord, TrialInfo
from runner.sweep.space import Axis, format_float
from runner.sweep.spec import axes_for

if TYPE_CHECKING:
    import optuna

FEATURE = "sweeps with --optimize"
JOURNAL = "optuna.journal"
USED = (Status.FINISHED, Status.FAILED, Status.UNKNOWN)  # count against --trials


def check_space(axes: Sequence[Axis]) -> None:
    """The extra is there (before anything runs); the space maps onto Optuna's."""
    require("optuna", FEATURE)
    del axes  # every axis parse_axis makes has a distribution (see `distribution`)


def distribution(axis: Axis) -> Any:
    """The Optuna distribution of a swept parameter."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if axis.distribution is not None:
        log = axis.distribution == "loguniform"
        if axis.integer:
            return IntDistribution(int(axis.low), int(axis.high), log=log)
        return FloatDistribution(axis.low, axis.high, log=log)
    if axis.step is not None and len(axis.values) > 1:
        low, high, step = axis.values[0], axis.values[-1], axis.step
        if all(_is_int(v) for v in (low, high, step)):
            return IntDistribution(int(low), int(high), step=int(step))
        return FloatDistribution(float(low), float(high), step=float(step))
    return CategoricalDistribution(list(axis.values))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    if isinstance(value, float):
        return format_float(value)
    return str(value)


class SearchSource:
    """A `runner.sweep.driver.TrialSource` that asks Optuna for each trial."""

    def __init__(self, study: optuna.Study, axes: Sequence[Axis], budget: int) -> None:
        self.study = study
        self.fixed = {a.name: a.values[0] for a in axes if a.finite and len(a.values) == 1}
        self.space = {a.name: distribution(a) for a in axes if a.name not in self.fixed}
        self.budget = budget  # trials still to ask for
        self._asked: dict[int, Any] = {}  # sweep trial index -> Optuna trial

    @classmethod
    def open(cls, record: SweepRecord, directory: Path, entry: EntryPoint) -> SearchSource:
        with needs_extra("optuna", FEATURE):
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        directory.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(directory / JOURNAL)))
        spec = record.spec
        study = optuna.create_study(
            study_name=record.sweep_id, storage=storage, load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=spec.seed),
            direction="maximize" if spec.goal == "max" else "minimize")
        specs = dict(p.partition("=")[::2] for p in spec.params)
        used = sum(1 for t in record.trials if t.status in USED)
        return cls(study, axes_for(entry, specs), max((spec.trials or 0) - used, 0))

    def next(self, record: SweepRecord) -> TrialInfo | None:
        if self.budget <= 0:
            return None
        self.budget -= 1
        trial = self.study.ask(dict(self.space))
        params = {**self.fixed, **{n: _text(v) for n, v in trial.params.items()}}
        index = len(record.trials)
        self._asked[index] = trial
        return TrialInfo(index=index, params=_ordered(params, record))

    def told(self, trial: TrialInfo) -> None:
        from optuna.trial import TrialState

        asked = self._asked.pop(trial.index, None)
        if asked is None:
            return
        if trial.status is Status.FINISHED and trial.value is not None:
            self.study.tell(asked, trial.value)
        else:
            self.study.tell(asked, state=TrialState.FAIL)
            if trial.status is Status.KILLED:
                self.budget += 1  # an interrupted trial is asked again (by a resume)


def _ordered(params: Mapping[str, str], record: SweepRecord) -> dict[str, str]:
    """The values in the order the -P options were given."""
    names = [p.partition("=")[0] for p in record.spec.params]
    return {n: params[n] for n in names if n in params}
