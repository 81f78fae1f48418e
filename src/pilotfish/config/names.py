"""Field-name spellings. Istio's JSON parser takes the proto's JSON name (camelCase) and the
proto field name (snake_case); we accept both and always print camelCase."""

from __future__ import annotations

import re
from functools import cache

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@cache
def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@cache
def camel_to_snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()
