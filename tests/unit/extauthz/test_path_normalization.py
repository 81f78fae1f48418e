"""The mesh's pathNormalization as Envoy's connection manager applies it (``authz check`` uses
it; the data path's behaviour is checked through real Envoy in the differential e2e suite)."""

from __future__ import annotations

import pytest

from pilotfish.extauthz.path_normalization import normalize_path

CASES = [
    # (path, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)
    ("/a/b", "/a/b", "/a/b", "/a/b", "/a/b"),
    ("/a/../b", "/a/../b", "/b", "/b", "/b"),
    ("/a/./b/.", "/a/./b/.", "/a/b/", "/a/b/", "/a/b/"),
    ("/../../x", "/../../x", "/x", "/x", "/x"),
    ("//admin", "//admin", "//admin", "/admin", "/admin"),
    ("/%61dmin", "/%61dmin", "/admin", "/admin", "/admin"),
    ("/admin%2Fx", "/admin%2Fx", "/admin%2Fx", "/admin%2Fx", "/admin/x"),
    ("/a%2f%2fb", "/a%2f%2fb", "/a%2f%2fb", "/a%2f%2fb", "/a/b"),
    ("/a\\b", "/a\\b", "/a/b", "/a/b", "/a/b"),
    ("/a%5Cb/..", "/a%5Cb/..", "/", "/", "/a/"),
    ("/x?q=/../y", "/x?q=/../y", "/x?q=/../y", "/x?q=/../y", "/x?q=/../y"),
    ("/%2e%2e/secret", "/%2e%2e/secret", "/secret", "/secret", "/secret"),
    ("/a//b/../c", "/a//b/../c", "/a//c", "/a/c", "/a/c"),
]
MODES = ("NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode", MODES)
def test_normalize(case: tuple[str, ...], mode: str) -> None:
    assert normalize_path(case[0], mode) == case[1 + MODES.index(mode)]


def test_default_is_base() -> None:
    assert normalize_path("/a/../b", "DEFAULT") == normalize_path("/a/../b", "BASE")


def test_a_relative_path_is_rejected_as_envoy_does() -> None:
    assert normalize_path("relative", "BASE") is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("Bearer abc.def.ghi trailing", "abc.def.ghi trailing"),  # runs to the end: invalid token
        ("Bearer    abc.def", "abc.def"),  # leading non-token characters are skipped
        ("x, Bearer abc", "abc"),  # the prefix is searched anywhere
        ("bearer abc", None),  # case-sensitive prefix: no token
        ("Bearer !!!", "Bearer !!!"),  # nothing token-like after the prefix: the whole value
    ],
)
def test_token_extraction_follows_envoys_extractor(value: str, token: str | None) -> None:
    from pilotfish.extauthz.attributes import HttpRequest
    from pilotfish.extauthz.jwt import DEFAULT_LOCATIONS, extract

    found = extract(DEFAULT_LOCATIONS, HttpRequest(headers={"authorization": (value,)}))
    assert [t.raw for t in found] == ([] if token is None else [token])
