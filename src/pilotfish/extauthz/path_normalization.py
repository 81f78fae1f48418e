"""The mesh's ``pathNormalization`` as Envoy's HTTP connection manager applies it (pure).

Envoy normalizes the path before routing and before any HTTP filter sees the request, so the
Check server always receives normalized paths; ``authz check`` reads a path as a client sent it
and must normalize it the same way first, or its answer differs from the data path's.

Istio's modes (``ProxyPathNormalization``) map to three HCM settings (``listeners.py``
``PATH_NORMALIZATION``), applied in Envoy's order (``http/conn_manager_utility.cc``
``maybeNormalizePath``):

1. ``path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`` (DECODE_AND_MERGE_SLASHES):
   ``%2F``/``%2f`` become ``/`` and ``%5C``/``%5c`` become ``\\``;
2. ``normalize_path`` (BASE and up; ``PathUtil::canonicalPath``, Chromium's URL path
   canonicalizer): ``\\`` becomes ``/``, percent-encoded unreserved characters (RFC 3986 §2.3)
   are decoded, and ``.``/``..`` segments are resolved (RFC 3986 §5.2.4; ``..`` never climbs
   above the root);
3. ``merge_slashes`` (MERGE_SLASHES and up): runs of ``/`` become one.

Only the path is touched; the query string is kept as sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_ESCAPED_SLASHES = re.compile(r"%(2[Ff]|5[Cc])")
_SLASHES = re.compile(r"/{2,}")


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0)


def _unescape_slashes(path: str) -> str:
    return _ESCAPED_SLASHES.sub(lambda m: "/" if m.group(1) in ("2F", "2f") else "\\", path)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def canonical_path(path: str) -> str:
    """Envoy ``normalize_path``: backslashes, unreserved escapes, dot segments."""
    return _remove_dot_segments(_PERCENT.sub(_decode_unreserved, path.replace("\\", "/")))


def _merge_slashes(path: str) -> str:
    return _SLASHES.sub("/", path)


# Mesh pathNormalization → the steps, in Envoy's order.
STEPS: Mapping[str, tuple[Callable[[str], str], ...]] = {
    "NONE": (),
    "DEFAULT": (canonical_path,),
    "BASE": (canonical_path,),
    "MERGE_SLASHES": (canonical_path, _merge_slashes),
    "DECODE_AND_MERGE_SLASHES": (_unescape_slashes, canonical_path, _merge_slashes),
}


def normalize_path(path: str, mode: str) -> str | None:
    """The path Envoy's filters see for ``path`` as a client sent it, or ``None`` when Envoy
    rejects the request (400) because the path is not absolute."""
    if mode == "NONE":
        return path
    bare, question, query = path.partition("?")
    if not bare.startswith("/"):
        return None
    for step in STEPS[mode]:
        bare = step(bare)
    return bare + question + query
