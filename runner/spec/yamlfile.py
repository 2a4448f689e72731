"""Read a YAML file and remember on which line every key stands, for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import Problem, SpecError

KeyPath = tuple[str | int, ...]


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
    """Parse ``path``; a syntax error becomes a SpecError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(path, "", f"not UTF-8 text ({exc.reason})")]) from exc
    except OSError as exc:
        raise SpecError([Problem(path, "", f"cannot be read: {exc.strerror}")]) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            [Problem(path, "", f"YAML syntax error: {reason}", line, "fix the YAML syntax")]
        ) from exc
    except yaml.YAMLError as exc:
        raise SpecError([Problem(path, "", f"YAML error: {exc}")]) from exc
    finally:
        loader.dispose()
    doc = YamlDoc(path=path, data=data)
    if node is not None:
        _record_lines(node, (), doc.lines)
    return doc


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
