"""How much input pilotfish accepts wherever YAML or JSON enters (pure; no I/O).

Every edge that parses text an operator, a client or a token issuer wrote — ``--config DIR``,
``pilotfish validate``, the admin API (``/apis``, ``/registrations``), a JWT's header and
payload — bounds the work before it builds objects, so no input, however small on the wire,
can make the control plane allocate without end or recurse until the interpreter gives up:

=====================  ==========  ===================================================================
limit                  value       why this value
=====================  ==========  ===================================================================
``MAX_TEXT_BYTES``     3 MiB       the Kubernetes API server's request limit (3 MiB): a resource that
                                   applies to Kubernetes applies here
``MAX_DOCUMENTS``      1000        YAML documents in one file or request body
``MAX_YAML_NODES``     100,000     nodes that alias expansion may add to one document; counted on the
                                   composed node graph, before any object is built. Without aliases
                                   the size is bounded by the text itself, so only expansion (the
                                   "billion laughs": ~550 bytes → 10⁹ nodes) meets this limit
``MAX_NESTING``        100         levels of mappings/sequences (YAML) or objects/arrays (JSON):
                                   protobuf's JSON parser refuses deeper input (its default
                                   recursion limit is 100), so Envoy would refuse it too
=====================  ==========  ===================================================================
"""

from __future__ import annotations

import json
from typing import Any

MAX_TEXT_BYTES = 3 * 1024 * 1024
MAX_DOCUMENTS = 1000
MAX_YAML_NODES = 100_000
MAX_NESTING = 100


class InputTooLarge(ValueError):
    """The input exceeds one of the limits above; ``str()`` says which and by how much."""


def check_text_size(size: int, what: str = "the text") -> None:
    if size > MAX_TEXT_BYTES:
        raise InputTooLarge(f"{what} is {size} bytes; at most {MAX_TEXT_BYTES} are accepted")


def nesting_exceeds(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether ``value`` (plain dicts and lists) nests deeper than ``limit``. Iterative, so a
    deep value cannot exhaust the interpreter's stack while it is being measured."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads_json(text: str | bytes, what: str = "the JSON", limit: int = MAX_NESTING) -> Any:
    """``json.loads`` within the limits; ``ValueError`` (``InputTooLarge`` for a limit) otherwise.

    The standard parser raises ``RecursionError`` somewhere near the interpreter's recursion limit
    (depth ~1000, sooner when called from deep in a stack): that is turned into a clear error, and
    anything deeper than ``limit`` that did parse is refused as well.
    """
    check_text_size(len(text), what)
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputTooLarge(f"{what} nests deeper than {limit} levels") from None
    if nesting_exceeds(value, limit):
        raise InputTooLarge(f"{what} nests deeper than {limit} levels")
    return value
