"""The sweep value syntax and the expansion of trials: pure functions, no process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runner.errors import ParameterError, UsageError
from runner.spec.types import EntryPoint, ParameterSpec, ParamType
from runner.sweep.space import capped, draw, grid, parse_axis, split_list
from runner.sweep.spec import axes_for, check_trials, expand, probe


def values(spec: str, integer: bool = False) -> tuple[str, ...]:
    return parse_axis("p", spec, integer).values


def entry(**types: ParamType) -> EntryPoint:
    params = {n: ParameterSpec(type=t, default="1") for n, t in types.items()}
    return EntryPoint(command="true", parameters=params)


@pytest.mark.parametrize(("spec", "expected"), [
    ("0.1,0.5,1.0", ("0.1", "0.5", "1.0")),
    ("0:1:0.25", ("0", "0.25", "0.5", "0.75", "1")),
    ("0:1:0.1", tuple(str(x) for x in ("0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7",
                                       "0.8", "0.9", "1"))),
    ("1:10:4", ("1", "5", "9")),  # the stop is included only when a step lands on it
    ("3..8", ("3", "4", "5", "6", "7", "8")),
    ("-2..1", ("-2", "-1", "0", "1")),
    ("choice(adam,sgd)", ("adam", "sgd")),
    ("plain", ("plain",)),
    ("s3://bucket/key", ("s3://bucket/key",)),  # colons that are no range
    ("10:20", ("10:20",)),  # two parts are no range
    ("a:b:c", ("a:b:c",)),
    ("=a,b", ("a,b",)),  # the literal escape
    ("==x", ("=x",)),
    ("x\\,y,z", ("x,y", "z")),
    ("C:\\data", ("C:\\data",)),  # a backslash before anything else stays
    ("a\\\\,b", ("a\\", "b")),
    ("", ("",)),
])
def test_value_syntax(spec: str, expected: tuple[str, ...]) -> None:
    assert values(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("0:1:0", "the step must be above zero"),
    ("1:0:0.1", "the range ends before it starts"),
    ("8..3", "the range ends before it starts"),
    ("0..1000000", "too many for a sweep"),
    ("uniform(1)", "takes two numbers"),
    ("uniform(a,b)", "takes two numbers"),
    ("uniform(2,1)", "the low bound must be below the high one"),
    ("loguniform(0,1)", "needs bounds above zero"),
    ("choice()", "needs at least one value"),
])
def test_bad_specs_are_one_line_naming_the_parameter(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_axis("lr", spec)
    text = caught.value.render()
    assert message in text and f"-P lr={spec}" in text and "\n" not in text


def test_distributions() -> None:
    axis = parse_axis("lr", "loguniform(1e-4,1e-1)")
    assert (axis.distribution, axis.low, axis.high, axis.finite) == ("loguniform", 1e-4, 0.1,
                                                                      False)
    with pytest.raises(UsageError, match="must be whole numbers"):
        parse_axis("depth", "uniform(1.5,8)", integer=True)


def test_split_list_keeps_empty_items() -> None:
    assert split_list("a,,b") == ["a", "", "b"]


def test_grid_is_every_combination_first_parameter_slowest() -> None:
    axes = [parse_axis("a", "1,2"), parse_axis("b", "x,y,z"), parse_axis("c", "=k")]
    trials = grid(axes)
    assert len(trials) == 6
    assert trials[0] == {"a": "1", "b": "x", "c": "k"}
    assert trials[1] == {"a": "1", "b": "y", "c": "k"}
    assert trials[-1] == {"a": "2", "b": "z", "c": "k"}


def test_a_distribution_has_no_grid() -> None:
    with pytest.raises(UsageError) as caught:
        grid([parse_axis("lr", "uniform(0,1)")])
    assert caught.value.render() == ("-P lr=uniform(0,1): a distribution has no grid; add "
                                     "--random N to draw N trials, or --optimize METRIC:min "
                                     "--trials N to search")


def test_random_draws_are_reproducible_from_the_seed() -> None:
    axes = [parse_axis("lr", "loguniform(1e-4,1e-1)"), parse_axis("depth", "3..8", True),
            parse_axis("opt", "choice(adam,sgd)")]
    first = draw(axes, 20, seed=7)
    assert first == draw(axes, 20, seed=7)
    assert first != draw(axes, 20, seed=8)
    for trial in first:
        assert 1e-4 <= float(trial["lr"]) <= 1e-1
        assert trial["depth"] in {"3", "4", "5", "6", "7", "8"}
        assert trial["opt"] in {"adam", "sgd"}
    logs = [math.log10(float(t["lr"])) for t in draw(axes[:1], 400, seed=1)]
    assert sum(1 for x in logs if x < -2.5) > 100  # spread on a log scale, not bunched at 0.1


def test_int_distribution_draws_whole_numbers() -> None:
    axis = parse_axis("n", "loguniform(1,64)", integer=True)
    drawn = [int(t["n"]) for t in draw([axis], 200, seed=3)]
    assert min(drawn) >= 1 and max(drawn) <= 64


def test_random_sample_of_a_finite_space_has_no_repeats() -> None:
    axes = [parse_axis("a", "1..3"), parse_axis("b", "x,y")]
    trials = draw(axes, 10, seed=1)
    assert len(trials) == 6  # at most the whole space
    assert len({tuple(t.items()) for t in trials}) == 6


def test_max_trials_caps_a_grid_reproducibly_in_grid_order() -> None:
    trials = grid([parse_axis("a", "1..10"), parse_axis("b", "1..10")])
    kept = capped(trials, 5, seed=4)
    assert kept == capped(trials, 5, seed=4) and len(kept) == 5
    assert kept == sorted(kept, key=trials.index)
    assert capped(trials, 500, seed=4) == trials


def test_values_are_checked_against_declared_types(tmp_path: Path) -> None:
    point = entry(alpha=ParamType.FLOAT, n=ParamType.INT, data=ParamType.PATH)
    (tmp_path / "d.csv").write_text("x\n")
    good = expand(axes_for(point, {"alpha": "0:1:0.5", "n": "1..2", "data": "d.csv"}), "grid",
                  None, None, 0)
    check_trials(point, good, tmp_path)
    with pytest.raises(ParameterError, match=r"parameter 'n': '0\.5' is not a whole number"):
        check_trials(point, expand(axes_for(point, {"n": "0:1:0.5", "data": "d.csv"}), "grid",
                                   None, None, 0), tmp_path)
    with pytest.raises(ParameterError, match="parameter 'alpha': 'high' is not a number"):
        check_trials(point, [{"alpha": "0.1", "data": "d.csv"},
                             {"alpha": "high", "data": "d.csv"}], tmp_path)
    with pytest.raises(ParameterError, match="parameter 'data': no such file"):
        check_trials(point, [{"data": "d.csv"}, {"data": "missing.csv"}], tmp_path)


def test_distributions_only_on_numbers() -> None:
    point = entry(name=ParamType.STRING, n=ParamType.INT)
    with pytest.raises(UsageError, match="'name' is a string parameter"):
        axes_for(point, {"name": "uniform(0,1)"})
    with pytest.raises(UsageError, match="'other' is not declared"):
        axes_for(point, {"other": "uniform(0,1)"})
    (axis,) = axes_for(point, {"n": "uniform(1,5)"})
    assert axis.integer


def test_probe_takes_a_first_value() -> None:
    assert probe({"a": "3,4", "b": "loguniform(1,8)", "c": "uniform(0.5,1)"}) == {
        "a": "3", "b": "1", "c": "0.5"}
