"""YAML in, plain data out — with the line of every key, so errors can say ``FILE:LINE``.

Documents are loaded with PyYAML's safe loader into ``Node`` (a ``dict`` that remembers the
line of each of its keys) and ``NodeList`` (a ``list`` that remembers the line of each item).
Everything downstream treats them as ordinary dicts and lists. Any YAML problem — syntax,
duplicate keys (Kubernetes' strict decoding rejects them), alias cycles — becomes a
``ConfigError`` here, at the edge; no ``yaml`` exception escapes this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotfish.errors import ConfigError, Problem

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Node(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys stand (1-based lines)."""

    __slots__ = ("line", "key_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class NodeList(list[Any]):
    """A YAML sequence that remembers the line of each item."""

    __slots__ = ("line", "item_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int) -> None:
        self.key, self.line = key, line


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Node:
    out = Node(node.start_mark.line + 1)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark
            )
        if key in out:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> NodeList:
    out = NodeList(node.start_mark.line + 1)
    for item in node.value:
        out.append(loader.construct_object(item, deep=True))
        out.item_lines.append(item.start_mark.line + 1)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


@dataclass(frozen=True, slots=True)
class RawDocument:
    """One YAML document of a file: its data (usually a ``Node``), where it came from, its index."""

    data: Any
    file: str
    line: int
    index: int


def parse_documents(text: str, file: str = "<input>") -> list[RawDocument]:
    """Parse every document of a multi-document YAML text. Empty documents are skipped."""
    docs: list[RawDocument] = []
    try:
        for index, data in enumerate(yaml.load_all(text, Loader=_Loader)):  # noqa: S506 - safe loader subclass
            if data is None:
                continue
            line = data.line if isinstance(data, Node | NodeList) else 1
            docs.append(RawDocument(data=data, file=file, line=line, index=index))
    except _DuplicateKey as exc:
        raise ConfigError([Problem(f"duplicate key {exc.key!r}", file=file, line=exc.line)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        reason = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Problem(f"invalid YAML: {reason}", file=file, line=line)]) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as exc:
        # ValueError/TypeError/OverflowError: PyYAML's scalar constructors (e.g. a timestamp
        # like 2020-13-45) raise them directly instead of a YAMLError.
        raise ConfigError([Problem(f"invalid YAML: {exc}", file=file, line=0)]) from None
    return docs


YAML_SUFFIXES = (".yaml", ".yml")


def iter_yaml_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Path]:
    """Every YAML file named or found (recursively, sorted) under the given paths."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
        else:
            yield path


def read_documents(path: Path) -> list[RawDocument]:
    """Read and parse one file; an unreadable file is a ``ConfigError`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(f"cannot read: {exc}", file=str(path), line=0)]) from None
    return parse_documents(text, str(path))


def line_at(data: Any, path: Sequence[str | int], default: int = 0) -> int:
    """The line of the deepest part of ``path`` that exists in ``data`` (walks camel/snake spellings)."""
    line = data.line if isinstance(data, Node | NodeList) else default
    node = data
    for seg in path:
        if isinstance(node, Node) and isinstance(seg, str):
            key = seg if seg in node else _other_spelling(seg, node)
            if key is None:
                break
            line = node.key_lines.get(key, line)
            node = node[key]
        elif isinstance(node, NodeList) and isinstance(seg, int) and 0 <= seg < len(node):
            line = node.item_lines[seg]
            node = node[seg]
        else:
            break
    return line


def _other_spelling(key: str, node: Node) -> str | None:
    from pilotfish.config.names import camel_to_snake, snake_to_camel

    for candidate in (camel_to_snake(key), snake_to_camel(key)):
        if candidate in node:
            return candidate
    return None


def to_plain(value: Any) -> Any:
    """Strip position information: ``Node``/``NodeList`` become dict/list (for storage, JSON)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value
