"""The fields of a run that ``reprun runs list`` shows, sorts and filters by, and ``--where``.

A field is a column of the run index (``status``, ``entry_point``, ``project``, ``backend``,
``started``, ``run_id``, ``exit_code``, ``duration``, ``sweep``, ``trial``, ``kind``, ``parent``:
`runner.record.index.RUN_FIELDS`, so a new
column there is a new field here), ``params.NAME`` or ``metrics.NAME`` (the last value).

``--where`` is a small language, parsed here and never evaluated as code::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | FIELD OP VALUE
    OP         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    VALUE      := a number | 'text' | "text" | a bare word (FINISHED, 2026-12-01)

A number compares as a number (``params.alpha >= 0.2`` compares the parameter's value as a
number), text as text; ``status`` ignores letter case. A run without the field matches no
comparison (nor its negation). The result is SQL with every value bound as an argument
(`runner.record.index.field_sql`); mistakes raise `UsageError` in one line.

Limits, checked before any SQL is made (SQLite's parser, its expression trees and its joins are
bounded, and so is Python's recursion): ``--where`` nests ``not`` and parentheses at most
`MAX_DEPTH` deep and holds at most `MAX_TERMS` comparisons; ``--sort`` names at most `MAX_SORT`
fields and ``-c`` at most `MAX_COLUMNS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.frozen import frozen
from runner.record.index import RUN_FIELDS, FieldSql, RunSummary

if TYPE_CHECKING:
    from runner.record.store import RunStore

OPERATORS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">",
             ">=": ">="}
NUMERIC_FIELDS = frozenset({"exit_code", "duration", "duration_s", "trial"})
SUMMARY_ATTRS = {"id": "run_id", "started": "started_at", "duration": "duration_s"}
KEYWORDS = frozenset({"and", "or", "not"})
_TOKEN = re.compile(r"""\s*(?:(?P<op><=|>=|==|!=|<>|=|<|>)|(?P<paren>[()])|"""
                    r"""(?P<str>'[^']*'|"[^"]*")|(?P<word>[\w.\-+:/@%]+)|(?P<bad>\S))""")
_NAME = re.compile(r"^(?:params|metrics)\.[^\s]+$")
MAX_DEPTH = 20  # `not` and parentheses, nested
MAX_TERMS = 100  # comparisons in one --where
MAX_SORT = 16  # fields of --sort (each a join)
MAX_COLUMNS = 200  # fields of -c


def check_field(name: str, what: str) -> str:
    """``name`` if it is a field of a run, else a one-line UsageError (``what`` is the option)."""
    if name in RUN_FIELDS or _NAME.match(name):
        return name
    known = ", ".join(sorted(set(RUN_FIELDS) - {"id", "started_at", "duration_s"}))
    raise UsageError(f"{what}: unknown field '{name}'",
                     hint=f"use params.NAME, metrics.NAME or one of {known}")


def field_value(summary: RunSummary, name: str) -> Any:
    """The value of a field in a summary made with details; None when the run has none."""
    kind, _, rest = name.partition(".")
    if kind == "params" and rest:
        return summary.params.get(rest)
    if kind == "metrics" and rest:
        return summary.metrics.get(rest)
    return getattr(summary, SUMMARY_ATTRS.get(name, name))


def parse_sort(specs: Sequence[str]) -> list[tuple[str, bool]]:
    """``--sort`` values (comma-separated, a leading ``-`` sorts descending) as (field,
    descending)."""
    keys = []
    for spec in specs:
        for part in spec.split(","):
            item = part.strip()
            descending = item.startswith("-")
            name = item.lstrip("-+")
            if not name:
                raise UsageError(f"--sort: empty field in '{spec}'",
                                 hint="give fields such as metrics.rmse or -metrics.r2")
            keys.append((check_field(name, "--sort"), descending))
    keys = list({name: (name, descending) for name, descending in reversed(keys)}.values())[::-1]
    if len(keys) > MAX_SORT:
        raise UsageError(f"--sort names {len(keys)} fields, more than the limit of {MAX_SORT}",
                         hint="sort by fewer fields")
    return keys


def parse_columns(specs: Sequence[str]) -> list[str]:
    """``-c`` values (comma-separated fields), in order, without repeats."""
    names = [item.strip() for spec in specs for item in spec.split(",")]
    if not all(names):
        raise UsageError("--columns: empty field name", hint="e.g. -c params.alpha,metrics.rmse")
    chosen = list(dict.fromkeys(check_field(n, "--columns") for n in names))
    if len(chosen) > MAX_COLUMNS:
        raise UsageError(f"--columns names {len(chosen)} fields, more than the limit of "
                         f"{MAX_COLUMNS}", hint="show fewer columns, or all with --json")
    return chosen


# -- listing: one model, two faces (``runs list --json|--csv`` and the web view) --------------

CSV_DEFAULT = ("status", "started", "duration", "exit_code", "project", "entry_point", "backend")


def list_runs(store: RunStore, where: str | None = None, sort: Sequence[str] = (),
              columns: Sequence[str] = (), limit: int | None = None,
              details: bool = True) -> tuple[list[RunSummary], list[str]]:
    """The runs ``where`` selects (the --where language), ordered by ``sort`` (--sort values),
    at most ``limit``, and the chosen ``columns`` (--columns values); UsageError for a mistake
    in any of them, in the CLI's words."""
    chosen = parse_columns(columns)
    order = parse_sort(sort)
    condition = where_known(store, where) if where is not None else None
    summaries = store.list(limit, where=condition, sort=order, details=details or bool(chosen),
                           fields=chosen or None)
    return summaries, chosen


def summary_json(summary: RunSummary, chosen: Sequence[str]) -> dict[str, Any]:
    """One run as ``runs list --json`` prints it: the chosen fields, or all of the summary."""
    if not chosen:
        row = summary._asdict()
        return {**row, "params": dict(summary.params), "metrics": dict(summary.metrics)}
    return {"run_id": summary.run_id, **{name: field_value(summary, name) for name in chosen}}


def write_csv(summaries: Sequence[RunSummary], chosen: Sequence[str], out: IO[str]) -> None:
    """The runs as ``runs list --csv`` prints them: a header, then a row per run."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run_id", *chosen])
    for s in summaries:
        writer.writerow([s.run_id, *(_csv_cell(field_value(s, name)) for name in chosen)])


def _csv_cell(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


# -- the --where language -----------------------------------------------------------------------

@frozen
class Compare:
    field: str
    op: str
    value: float | str

    def sql(self, resolve: FieldSql) -> tuple[str, list[Any]]:
        expr, args = resolve(self.field, isinstance(self.value, float))
        if self.field == "status":
            return f"UPPER({expr}) {self.op} UPPER(?)", [*args, self.value]
        return f"{expr} {self.op} ?", [*args, self.value]


@frozen
class Not:
    item: Condition

    def sql(self, resolve: FieldSql) -> tuple[str, list[Any]]:
        text, args = self.item.sql(resolve)
        return f"NOT ({text})", args


@frozen
class Junction:
    word: str  # AND or OR
    items: tuple[Condition, ...]

    def sql(self, resolve: FieldSql) -> tuple[str, list[Any]]:
        parts, args = [], []
        for item in self.items:
            text, item_args = item.sql(resolve)
            parts.append(f"({text})")
            args += item_args
        return f" {self.word} ".join(parts), args


Condition = Compare | Not | Junction


@frozen
class _Token:
    kind: str  # op, paren, str, word, end
    text: str
    at: int


def parse_where(text: str) -> Condition:
    """The condition ``text`` says; UsageError naming the place of the first mistake."""
    return _Parser(text).parse()


def where_known(store: RunStore, text: str) -> Condition:
    """``parse_where(text)``, and every params./metrics. name it compares is one some run of
    ``store`` has (else a UsageError with the nearest known names: a typo matches nothing)."""
    condition = parse_where(text)
    known = store.field_names()
    if not any(known.values()):
        return condition  # an empty store (or an unreadable index): nothing to compare with
    for name in _names(condition):
        kind, _, rest = name.partition(".")
        if kind in known and rest not in known[kind]:
            what = "parameter" if kind == "params" else "metric"
            raise UsageError(f"--where {text!r}: no run has the {what} '{rest}'",
                             hint=_nearest_hint(kind, rest, known[kind]))
    return condition


def _names(condition: Condition) -> list[str]:
    if isinstance(condition, Compare):
        return [condition.field]
    if isinstance(condition, Not):
        return _names(condition.item)
    return [name for item in condition.items for name in _names(item)]


def _nearest_hint(kind: str, name: str, known: Sequence[str]) -> str:
    from runner.spec.names import distance

    if not known:
        return f"no run has {kind} at all"
    closest = sorted(known, key=lambda k: (distance(name, k), k))[:3]
    return "nearest known: " + ", ".join(f"{kind}.{k}" for k in closest)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.depth = 0
        self.terms = 0

    def parse(self) -> Condition:
        if self.tokens[0].kind == "end":
            raise UsageError("--where is empty", hint="e.g. --where \"metrics.rmse < 0.8\"")
        condition = self._expr()
        if self._peek().kind != "end":
            self._fail("expected 'and', 'or' or the end", self._peek())
        return condition

    def _peek(self) -> _Token:
        return self.tokens[self.pos]

    def _next(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token.kind == "word" and token.text.lower() == word:
            self.pos += 1
            return True
        return False

    def _expr(self) -> Condition:
        return self._joined("or", self._term)

    def _term(self) -> Condition:
        return self._joined("and", self._factor)

    def _joined(self, word: str, part: Callable[[], Condition]) -> Condition:
        items = [part()]
        while self._keyword(word):
            items.append(part())
        return items[0] if len(items) == 1 else Junction(word.upper(), tuple(items))

    def _factor(self) -> Condition:
        token = self._peek()
        if self._keyword("not"):
            self._deeper(token)
            negated = Not(self._factor())
            self.depth -= 1
            return negated
        if token.kind == "paren" and token.text == "(":
            self.pos += 1
            self._deeper(token)
            inner = self._expr()
            closing = self._next()
            if closing.kind != "paren" or closing.text != ")":
                self._fail("expected ')'", closing)
            self.depth -= 1
            return inner
        return self._comparison()

    def _deeper(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self._fail(f"'not' and parentheses nest deeper than the limit of {MAX_DEPTH}",
                       token)

    def _comparison(self) -> Condition:
        token = self._next()
        self.terms += 1
        if self.terms > MAX_TERMS:
            self._fail(f"more than the limit of {MAX_TERMS} comparisons", token)
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            self._fail("expected a field such as metrics.rmse or status", token)
        try:
            name = check_field(token.text, "--where")
        except UsageError:
            self._fail(f"unknown field '{token.text}' (use params.NAME, metrics.NAME, status, "
                       "entry_point, project, backend, started, ...)", token)
        op = self._next()
        if op.kind != "op":
            self._fail(f"expected an operator (= != < <= > >=) after '{name}'", op)
        return Compare(name, OPERATORS[op.text], self._value(name, self._next()))

    def _value(self, name: str, token: _Token) -> float | str:
        if token.kind == "str":
            value: float | str = token.text[1:-1]
        elif token.kind == "word" and token.text.lower() not in KEYWORDS:
            value = _as_number(token.text)
        else:
            self._fail(f"expected a value to compare '{name}' with", token)
        numeric = name.startswith("metrics.") or name in NUMERIC_FIELDS
        if numeric and isinstance(value, str):
            self._fail(f"'{name}' is a number; compare it with a number, not {token.text}",
                       token)
        if not numeric and not name.startswith("params.") and isinstance(value, float):
            value = token.text  # a text field compares as text: started > 2026
        return value

    def _fail(self, message: str, token: _Token) -> Any:
        where = ("at the end" if token.kind == "end"
                 else f"at '{token.text}' (column {token.at + 1})")
        raise UsageError(f"--where {_shown(self.text)}: {message} {where}",
                         hint="e.g. --where \"metrics.rmse < 0.8 and params.alpha >= 0.2\"")


def _shown(text: str) -> str:
    """The expression as an error quotes it: a long one cut short."""
    return repr(text) if len(text) <= 120 else repr(text[:100]) + f"... ({len(text)} characters)"


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for found in _TOKEN.finditer(text):
        kind = found.lastgroup
        if kind is None:
            continue
        token = _Token(kind, found.group(kind), found.start(kind))
        if kind == "bad":
            where = f"at '{token.text}' (column {token.at + 1})"
            if token.text in "'\"":
                raise UsageError(f"--where {_shown(text)}: unclosed quote {where}",
                                 hint=f"end the text with {token.text}")
            raise UsageError(f"--where {_shown(text)}: unexpected character {where}",
                             hint="use and, or, not, parentheses and = != < <= > >=")
        tokens.append(token)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _as_number(word: str) -> float | str:
    try:
        number = float(word)
    except ValueError:
        return word
    return number if number - number == 0 else word  # nan and inf stay words
