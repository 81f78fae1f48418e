"""The cross-site request forgery rules of the admin port (``admin.csrf``), as pure decisions."""

from __future__ import annotations

import pytest

from pilotfish.admin.csrf import content_type_problem, origin_problem


@pytest.mark.parametrize(
    ("origin", "host", "tokens", "refused"),
    [
        (None, "127.0.0.1:15014", False, False),  # the CLI, curl: no Origin
        ("http://127.0.0.1:15014", "127.0.0.1:15014", False, False),
        ("http://localhost:15014", "localhost:15014", False, False),
        ("http://[::1]:15014", "[::1]:15014", False, False),
        ("http://evil.example", "127.0.0.1:15014", False, True),
        ("null", "127.0.0.1:15014", False, True),
        ("http://127.0.0.1:8080", "127.0.0.1:15014", False, True),  # another port is another origin
        ("https://127.0.0.1:15014", "127.0.0.1:15014", False, True),
        ("http://rebound.example:15014", "rebound.example:15014", False, True),  # DNS rebinding
        (
            "http://pilotfish.internal:15014",
            "pilotfish.internal:15014",
            True,
            False,
        ),  # tokens: a name is fine
        ("http://evil.example", "pilotfish.internal:15014", True, True),
    ],
)
def test_origin(origin: str | None, host: str, tokens: bool, refused: bool) -> None:
    assert (origin_problem(origin, "http", host, tokens=tokens) is not None) is refused


@pytest.mark.parametrize(
    ("content_type", "has_body", "refused"),
    [
        ("application/json", True, False),
        ("application/yaml", True, False),
        ("APPLICATION/JSON", True, False),
        ("text/plain", True, True),
        ("application/x-www-form-urlencoded", True, True),
        ("multipart/form-data", True, True),
        ("", True, True),
        ("", False, False),  # a heartbeat or a DELETE has no body
    ],
)
def test_content_type(content_type: str, has_body: bool, refused: bool) -> None:
    assert (content_type_problem(content_type, has_body) is not None) is refused
