"""Every document under tests/corpus/invalid breaks one Istio validation rule and must be rejected
with the right field path. Each file starts with comment lines:

    # rule: <what Istio rejects, and where Istio rejects it>
    # expect-path: spec.subsets[1].name
    # expect-message: duplicate subset

``expect-message`` is a case-insensitive substring of the message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pilotfish.cli import main
from pilotfish.config.loader import load_paths

CORPUS = Path(__file__).parent.parent / "corpus" / "invalid"
FILES = sorted(CORPUS.glob("*.yaml"))
_HEADER = re.compile(r"^#\s*(rule|expect-path|expect-message):\s*(.*)$")


def header(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = _HEADER.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def test_corpus_is_large_and_each_file_names_a_distinct_rule() -> None:
    rules = [header(p).get("rule") for p in FILES]
    assert len(FILES) >= 40
    assert all(rules), [p.name for p, r in zip(FILES, rules, strict=True) if not r]
    assert len(set(rules)) == len(rules), "two corpus files claim the same rule"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_invalid_document_is_rejected_with_field_path(path: Path) -> None:
    expect = header(path)
    result = load_paths([path])
    assert result.errors, f"{path.name} was accepted"
    assert not result.resources, "a failing document must not reach the mesh"
    matching = [
        p
        for p in result.errors
        if p.path == expect["expect-path"] and expect["expect-message"].lower() in p.message.lower()
    ]
    assert matching, f"wanted {expect['expect-path']}: ...{expect['expect-message']}...; got " + "; ".join(
        f"{p.path}: {p.message}" for p in result.errors
    )
    assert all(p.file == str(path) and p.line > 0 for p in matching)


@pytest.mark.parametrize("path", FILES[:3], ids=[p.stem for p in FILES[:3]])
def test_validate_command_prints_file_line_ref_path_and_exits_1(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    expect = header(path)
    assert re.search(
        rf"^{re.escape(str(path))}:\d+: \w+/[\w.-]+/[\w.-]+: {re.escape(expect['expect-path'])}: ", out, re.M
    )
