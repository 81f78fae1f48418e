"""YAML in, plain data out — with the line of every key, so errors can say ``FILE:LINE``.

Documents are loaded with PyYAML's safe loader into ``Node`` (a ``dict`` that remembers the
line of each of its keys) and ``NodeList`` (a ``list`` that remembers the line of each item).
Everything downstream treats them as ordinary dicts and lists. Any YAML problem — syntax,
duplicate keys (Kubernetes' strict decoding rejects them), alias cycles — becomes a
``ConfigError`` here, at the edge; no ``yaml`` exception escapes this module.

The input limits of ``pilotfish.limits`` hold here, for every caller (``--config DIR``,
``pilotfish validate``, the admin API): the text's size and its document count, and, for each
document, its nesting and its size once aliases are expanded. The last two are measured on the
composed node graph — where an alias is a second reference to the anchored node, so composing
costs no more than the text — before a single object is built: a 537-byte "billion laughs" is
refused in microseconds instead of growing into gigabytes downstream.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotfish.errors import ConfigError, Problem
from pilotfish.limits import MAX_DOCUMENTS, MAX_NESTING, MAX_YAML_NODES, InputTooLarge, check_text_size

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


class _OverLimit(Exception):
    def __init__(self, message: str, line: int) -> None:
        self.message, self.line = message, line


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    def get_data(self) -> Any:
        """One document: composed, measured (``_check_graph``), and only then constructed."""
        if self.check_node():
            node = self.get_node()
            _check_graph(node)
            return self.construct_document(node)
        return None


_SIZE_CAP = 10**12


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(root: yaml.Node) -> None:
    """Refuse a document that aliases grow by more than ``MAX_YAML_NODES`` nodes, that nests
    deeper than ``MAX_NESTING``, or that contains itself. One post-order walk of the node *graph*
    (each node once, however many aliases name it) computes every node's expanded size and depth.

    A subtree whose expanded size exceeds the number of distinct nodes seen so far by more than
    the limit proves the whole document grows by more than that (each distinct node outside it
    appears at least once more), so the walk stops at the first such collection and names its
    line; a large document without aliases is never refused here (its text bounds it)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            children = _children(node)
            # Capped so the sums stay machine-sized whatever the expansion factor.
            size[key] = min(1 + sum(size[id(c)] for c in children), _SIZE_CAP)
            nested = isinstance(node, yaml.CollectionNode)
            depth[key] = max((depth[id(c)] for c in children), default=0) + nested
            line = node.start_mark.line + 1
            if size[key] - len(size) > MAX_YAML_NODES:
                raise _OverLimit(
                    f"YAML aliases expand this document by more than {MAX_YAML_NODES} nodes "
                    "(the collection starting here passes the limit); refused",
                    line,
                )
            if depth[key] > MAX_NESTING:
                raise _OverLimit(f"nested deeper than {MAX_NESTING} levels; refused", line)
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _OverLimit(
                    "a YAML alias refers to a collection that contains it; refused", child.start_mark.line + 1
                )
            if id(child) not in size:
                stack.append((child, False))


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
        check_text_size(len(text.encode("utf-8", "surrogatepass")))
        for index, data in enumerate(yaml.load_all(text, Loader=_Loader)):  # noqa: S506 - safe loader subclass
            if index >= MAX_DOCUMENTS:
                raise _OverLimit(f"more than {MAX_DOCUMENTS} YAML documents; refused", 0)
            if data is None:
                continue
            line = data.line if isinstance(data, Node | NodeList) else 1
            docs.append(RawDocument(data=data, file=file, line=line, index=index))
    except InputTooLarge as exc:
        raise ConfigError([Problem(f"{exc}; refused", file=file, line=0)]) from None
    except _OverLimit as exc:
        raise ConfigError([Problem(exc.message, file=file, line=exc.line)]) from None
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
