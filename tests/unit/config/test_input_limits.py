"""Input limits where YAML enters (``config.source``): alias expansion, nesting, document count and
size are bounded on the composed node graph, before any object is built (``pilotfish.limits``)."""

from __future__ import annotations

import time

import pytest
from harness.bombs import billion_laughs

from pilotfish.config.loader import load_paths, load_text
from pilotfish.config.source import parse_documents
from pilotfish.errors import ConfigError
from pilotfish.limits import MAX_DOCUMENTS, MAX_NESTING, MAX_TEXT_BYTES, MAX_YAML_NODES, loads_json


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_documents(text, "bomb.yaml")
    (problem,) = caught.value.problems
    return str(problem)


@pytest.mark.parametrize("where", ["managedFields", "status"])
def test_billion_laughs_is_refused_with_file_and_line(where: str) -> None:
    text = billion_laughs(where)
    assert len(text.encode()) < 600
    started = time.process_time()
    message = refused(text)
    assert time.process_time() - started < 1.0  # microseconds in fact; a budget, not a benchmark
    # The anchor &f is the first whose expansion (9⁵ + ...) passes 100,000 nodes.
    line = next(n for n, text_line in enumerate(text.splitlines(), 1) if "&f" in text_line)
    assert message.startswith(f"bomb.yaml:{line}: YAML aliases expand this document by more than")
    assert str(MAX_YAML_NODES) in message


def test_the_loader_reports_the_bomb_as_a_problem_of_its_document() -> None:
    result = load_text(billion_laughs(), "bomb.yaml")
    assert not result.resources
    assert [p.file for p in result.errors] == ["bomb.yaml"]


def test_a_bomb_in_one_file_of_a_directory_is_reported_and_the_rest_loads(tmp_path) -> None:
    (tmp_path / "bomb.yaml").write_text(billion_laughs())
    (tmp_path / "ok.yaml").write_text(billion_laughs("status", name="ok").split("status:")[0])
    result = load_paths([tmp_path])
    assert [r.name for r in result.resources] == ["ok"]
    assert "aliases expand" in str(result.errors[0])


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ok, namespace: default, labels: &labels {app: a}, annotations: *labels}
spec:
  hosts: [a.example.com]
  ports:
  - &http {number: 80, name: http, protocol: HTTP}
  - {<<: *http, targetPort: 8080}
  resolution: DNS
"""
    (doc,) = parse_documents(text)
    assert doc.data["metadata"]["annotations"] == {"app": "a"}
    assert doc.data["spec"]["ports"][1] == {
        "number": 80,
        "name": "http",
        "protocol": "HTTP",
        "targetPort": 8080,
    }


def test_a_large_document_without_aliases_is_not_mistaken_for_a_bomb() -> None:
    items = ",".join(["x"] * (MAX_YAML_NODES + 10))
    (doc,) = parse_documents(f"big: [{items}]")
    assert len(doc.data["big"]) == MAX_YAML_NODES + 10


@pytest.mark.parametrize("text", ["&a [*a]", "&a {x: [1, *a]}"])
def test_a_collection_that_contains_itself_is_refused(text: str) -> None:
    assert refused(text) == "bomb.yaml:1: a YAML alias refers to a collection that contains it; refused"


def test_nesting_is_bounded() -> None:
    parse_documents("[" * MAX_NESTING + "]" * MAX_NESTING)
    deeper = MAX_NESTING + 1
    assert refused("[" * deeper + "]" * deeper).endswith(f"nested deeper than {MAX_NESTING} levels; refused")
    # Past libyaml's own limit (1000) the parser's message is kept: still a ConfigError.
    assert "nesting depth" in refused("[" * 20_000 + "]" * 20_000)


def test_document_count_is_bounded() -> None:
    assert len(parse_documents("---\na: 1\n" * MAX_DOCUMENTS)) == MAX_DOCUMENTS
    assert refused("---\na: 1\n" * (MAX_DOCUMENTS + 1)) == (
        f"bomb.yaml:0: more than {MAX_DOCUMENTS} YAML documents; refused"
    )


def test_text_size_is_bounded() -> None:
    message = refused("a: " + "x" * MAX_TEXT_BYTES)
    assert message == (
        f"bomb.yaml:0: the text is {MAX_TEXT_BYTES + 3} bytes; at most {MAX_TEXT_BYTES} are accepted; refused"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 10_000 + "]" * 10_000, "nests deeper than"),
        ('{"a":' * 200 + "1" + "}" * 200, "nests deeper than"),
        ("{", "Expecting"),
    ],
)
def test_json_is_bounded_and_errors_are_value_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        loads_json(text, "the body")
    assert loads_json('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}


def test_json_inside_config_and_from_issuers_is_bounded_too() -> None:
    """Inline JWKS in a RequestAuthentication and a fetched JWKS: deep JSON is an error, never a
    RecursionError (validate, the Check server's key refresh)."""
    from pilotfish.extauthz.jwks import parse_jwks

    deep = '{"keys": ' + "[" * 5000 + "]" * 5000 + "}"
    text = (
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: jwt, namespace: prod}\n"
        f"spec:\n  jwtRules:\n  - issuer: https://issuer.example.com\n    jwks: '{deep}'\n"
    )
    result = load_text(text, "authn.yaml")
    assert not result.resources
    assert "jwks parse error: the JWKS nests deeper than 100 levels" in str(result.errors[0])
    with pytest.raises(ValueError, match="nests deeper"):
        parse_jwks(deep)
