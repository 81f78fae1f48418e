"""Hostile inputs shared by the input-limit tests: small on the wire, enormous once expanded."""

from __future__ import annotations

LEVELS = "abcdefghi"


def _laughs(indent: str) -> str:
    """Nine anchors, each a list of nine aliases of the previous one: 9⁹ ≈ 387 million "lol"s."""
    lines = [f"{indent}- a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for prev, name in zip(LEVELS, LEVELS[1:], strict=False):
        lines.append(f"{indent}- {name}: &{name} [{','.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def billion_laughs(where: str = "managedFields", name: str = "bomb") -> str:
    """A ServiceEntry whose ``metadata.managedFields`` (or top-level ``status``) is the bomb:
    fields nobody validates, so the aliases survive until something copies or walks them."""
    head = (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata:\n  name: {name}\n  namespace: default\n"
    )
    spec = "spec:\n  hosts: [bomb.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
    if where == "managedFields":
        return head + "  managedFields:\n" + _laughs("  ") + spec
    return head + spec + "status:\n  laughs:\n" + _laughs("  ")
