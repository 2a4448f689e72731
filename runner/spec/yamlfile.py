"""Read a YAML file and remember on which line every key stands, for error messages.

YAML files come from repositories anyone may write, so reading one is bounded: at most
:data:`MAX_BYTES` bytes, :data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` values once
aliases are expanded (a "billion laughs" file is refused before anything walks it). A key given
twice in one mapping is an error (YAML forbids it; PyYAML would silently keep the last one).
Each refusal is a :class:`SpecError` naming the file, the line and the limit that was hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import Problem, SpecError

KeyPath = tuple[str | int, ...]
MAX_BYTES = 4 << 20
MAX_DEPTH = 100
MAX_NODES = 200_000


class YamlLimitError(Exception):
    """A YAML text goes beyond one of the limits, or repeats a key; ``line`` is 1-based."""

    def __init__(self, message: str, line: int | None, hint: str) -> None:
        super().__init__(message)
        self.message, self.line, self.hint = message, line, hint


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with limits on nesting and on expanded size, and no duplicate keys."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}
        self._open: set[int] = set()
        self._composing: list[str | None] = []  # anchors of the values being composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._composing:
                raise YamlLimitError(f"alias *{event.anchor} refers to a value that contains it",
                                     _line(event.start_mark), "remove the recursive alias")
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._count(self._expanded(target, event.start_mark), event.start_mark)
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        self._composing.append(anchor)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels",
                                 event.start_mark.line + 1, "flatten the file")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._composing.pop()
        self._count(1, event.start_mark)
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node)
        return node

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise YamlLimitError(
                f"holds more than {MAX_NODES} values once its aliases are expanded",
                mark.line + 1, "use fewer aliases (*name) or a smaller file")

    def _expanded(self, node: yaml.Node, mark: Any) -> int:
        """How many values ``node`` stands for with every alias in it expanded."""
        key = id(node)
        if key in self._sizes:
            return self._sizes[key]
        if key in self._open or self._depth > MAX_DEPTH:
            raise YamlLimitError("an alias refers to a value that contains it",
                                 mark.line + 1, "remove the recursive alias")
        self._open.add(key)
        self._depth += 1
        try:
            size = 1
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    size += self._expanded(k, mark) + self._expanded(v, mark)
                    if size > MAX_NODES:
                        break
            elif isinstance(node, yaml.SequenceNode):
                for item in node.value:
                    size += self._expanded(item, mark)
                    if size > MAX_NODES:
                        break
        finally:
            self._open.discard(key)
            self._depth -= 1
        self._sizes[key] = size
        return size


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _check_unique_keys(node: yaml.MappingNode) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise YamlLimitError(
                f"key '{_one_line(key_node.value)[:80]}' is given twice (first on line "
                f"{seen[key_node.value]})", line, "keep one of them")
        seen[key_node.value] = line


def parse_yaml(text: str | bytes) -> tuple[yaml.Node | None, Any]:
    """The root node and the data of one YAML document, within the limits.

    Raises :class:`YamlLimitError`, ``yaml.YAMLError`` (syntax) or ``ValueError`` (a value of
    a type YAML knows that Python cannot hold, such as the date 2024-13-45).
    """
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"is larger than {MAX_BYTES >> 20} MiB", None,
                             "a project file this large is not one reprun reads")
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except (OverflowError, TypeError, RecursionError) as exc:
        raise ValueError(str(exc)) from exc
    finally:
        loader.dispose()
    return node, data


@dataclass
class YamlDoc:
    """The parsed data of one YAML file and the line of each key path in it."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, keypath: KeyPath) -> int | None:
        """The line of ``keypath``, or of its nearest ancestor that has one."""
        for end in range(len(keypath), -1, -1):
            line = self.lines.get(keypath[:end])
            if line is not None:
                return line
        return None

    def problem(self, keypath: KeyPath, message: str, hint: str = "") -> Problem:
        return Problem(
            file=self.path,
            key=dotted(keypath),
            message=message,
            line=self.line_of(keypath),
            hint=hint,
        )


def dotted(keypath: KeyPath) -> str:
    parts: list[str] = []
    for part in keypath:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts)


def load_yaml(path: Path) -> YamlDoc:
    """Parse ``path``; a syntax error or a limit hit becomes a SpecError naming the line."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                                 hint="save the file as UTF-8")]) from None
    except OSError as exc:
        raise SpecError([Problem(path, "", f"cannot be read: {exc.strerror}")]) from None
    try:
        node, data = parse_yaml(raw if len(raw) > MAX_BYTES else text)
    except YamlLimitError as exc:
        raise SpecError([Problem(path, "", exc.message, exc.line, exc.hint)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = _one_line(exc.problem or exc.context or "invalid YAML")
        raise SpecError(
            [Problem(path, "", f"YAML syntax error: {reason}", line, "fix the YAML syntax")]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(path, "", f"YAML error: {_one_line(str(exc))}",
                                 hint="fix the YAML syntax")]) from None
    except ValueError as exc:
        raise SpecError([Problem(path, "", f"YAML value error: {_one_line(str(exc))}",
                                 hint="quote the value to keep it as text")]) from None
    doc = YamlDoc(path=path, data=data)
    if node is not None:
        _record_lines(node, (), doc.lines)
    return doc


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "invalid YAML"
    return " ".join(first.split())[:200]


def _record_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            keypath = (*prefix, str(key_node.value))
            lines[keypath] = key_node.start_mark.line + 1
            _record_lines(value_node, keypath, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*prefix, index), lines)
