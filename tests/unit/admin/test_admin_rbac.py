"""RBAC over the admin API: a table of subjects × verbs × kinds × namespaces, and the tokens file."""

from __future__ import annotations

import itertools

import pytest

from pilotfish.admin import rbac
from pilotfish.errors import ConfigError

POLICY_FILE = {
    "tokens": [
        {"token": "t-admin", "subject": "admin"},
        {"token": "t-alice", "subject": "alice"},
        {"token": "t-bob", "subject": "bob"},
        {"token": "t-agent", "subject": "agent"},
        {"token": "t-viewer", "subject": "viewer"},
        {"token": "t-nobody", "subject": "nobody"},
    ],
    "roles": [
        {"name": "cluster-admin", "rules": [{"verbs": ["*"], "kinds": ["*"]}]},
        # A Role: only in prod, whatever its rules say about namespaces.
        {
            "name": "prod-editor",
            "namespace": "prod",
            "rules": [
                {"verbs": ["get", "list", "apply", "delete"], "kinds": ["DestinationRule", "VirtualService"]}
            ],
        },
        # A ClusterRole narrowed to two namespaces.
        {
            "name": "registrar",
            "rules": [{"verbs": ["register"], "kinds": ["Registration"], "namespaces": ["prod", "staging"]}],
        },
        {"name": "viewer", "rules": [{"verbs": ["get", "list"], "kinds": ["*"]}]},
        {"name": "staging-deleter", "namespace": "staging", "rules": [{"verbs": ["delete"], "kinds": ["*"]}]},
    ],
    "bindings": [
        {"subject": "admin", "role": "cluster-admin"},
        {"subject": "alice", "role": "prod-editor"},
        {"subject": "bob", "role": "prod-editor"},
        {"subject": "bob", "role": "staging-deleter"},  # roles add up
        {"subject": "agent", "role": "registrar"},
        {"subject": "viewer", "role": "viewer"},
    ],
}

SUBJECTS = ("admin", "alice", "bob", "agent", "viewer", "nobody")
KINDS = ("DestinationRule", "ServiceEntry", "Registration", "Secret")
NAMESPACES = ("prod", "staging", "dev", "")  # "": all namespaces / unknown


def expected(subject: str, verb: str, kind: str, namespace: str) -> bool:
    """The rules above, written out independently of the implementation."""
    if verb in ("get", "list") and kind == "Secret":
        return False  # never readable, whatever the roles
    if subject == "admin":
        return True
    if subject == "viewer":
        return verb in ("get", "list")
    editing = verb in ("get", "list", "apply", "delete") and kind == "DestinationRule"
    if subject in ("alice", "bob") and namespace == "prod" and editing:
        return True
    if subject == "bob" and namespace == "staging" and verb == "delete":
        return True
    return (
        subject == "agent"
        and verb == "register"
        and kind == "Registration"
        and namespace in ("prod", "staging")
    )


CASES = list(itertools.product(SUBJECTS, rbac.VERBS, KINDS, NAMESPACES))


def test_the_table_covers_allowed_and_denied_cells() -> None:
    outcomes = {expected(*case) for case in CASES}
    assert outcomes == {True, False} and len(CASES) == 6 * 5 * 4 * 4


@pytest.mark.parametrize(("subject", "verb", "kind", "namespace"), CASES)
def test_authorize(subject: str, verb: str, kind: str, namespace: str) -> None:
    policy = rbac.parse_policy(POLICY_FILE)
    decision = rbac.authorize(policy, subject, verb, kind, namespace)
    assert decision.allowed is expected(subject, verb, kind, namespace), decision
    assert decision.subject == subject and decision.reason


def test_tokens_name_subjects_and_unknown_tokens_name_nobody() -> None:
    policy = rbac.parse_policy(POLICY_FILE)
    assert policy.uses_tokens
    assert policy.subject_of("t-alice") == "alice"
    assert policy.subject_of("t-alic") is None and policy.subject_of("") is None
    assert not rbac.Policy().uses_tokens and rbac.Policy().subject_of("t-alice") is None


def test_a_denial_says_who_may_not_do_what_where() -> None:
    decision = rbac.authorize(rbac.parse_policy(POLICY_FILE), "alice", "delete", "DestinationRule", "dev")
    assert decision.reason == "alice may not delete DestinationRule in namespace 'dev'"
    secret = rbac.authorize(rbac.parse_policy(POLICY_FILE), "admin", "get", "Secret", "prod")
    assert "never readable" in secret.reason


ANONYMOUS = [
    # loopback, verb, kind, allowed
    (True, "apply", "DestinationRule", True),
    (True, "register", "Registration", True),
    (True, "get", "Secret", False),
    (False, "get", "DestinationRule", True),
    (False, "list", "Registration", True),
    (False, "apply", "DestinationRule", False),
    (False, "delete", "ServiceEntry", False),
    (False, "register", "Registration", False),
]


@pytest.mark.parametrize(("loopback", "verb", "kind", "allowed"), ANONYMOUS)
def test_without_a_tokens_file_loopback_writes_and_others_only_read(
    loopback: bool, verb: str, kind: str, allowed: bool
) -> None:
    decision = rbac.anonymous_policy_decision(loopback, verb, kind)
    assert decision.allowed is allowed, decision
    assert decision.subject == (rbac.LOOPBACK_SUBJECT if loopback else rbac.ANONYMOUS_SUBJECT)


BAD_FILES = [
    ({"tokens": "x"}, "tokens: must be a list"),
    ({"tokens": [{"token": "a"}]}, "tokens[0].subject: must be a non-empty string"),
    ({"tokens": [{"token": "a", "subject": "x"}, {"token": "a", "subject": "y"}]}, "listed twice"),
    ({"roles": [{"name": "r", "rules": [{"verbs": ["patch"], "kinds": ["*"]}]}]}, "unknown verbs ['patch']"),
    ({"roles": [{"name": "r", "rules": [{"verbs": ["get"]}]}]}, "roles[0].rules[0].kinds"),
    ({"roles": [{"name": "r", "namespace": 3, "rules": []}]}, "leave it out for a ClusterRole"),
    ({"bindings": [{"subject": "a", "role": "missing"}]}, "no role named 'missing'"),
    ([], "must be a mapping"),
]


@pytest.mark.parametrize(("data", "message"), BAD_FILES)
def test_a_bad_tokens_file_is_refused_naming_the_field(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        rbac.parse_policy(data, "tokens.yaml")
    assert message in str(caught.value) and "tokens.yaml" in str(caught.value)


def test_load_policy_reads_yaml(tmp_path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens: [{token: abc, subject: ops}]\nroles: []\nbindings: []\n")
    assert rbac.load_policy(path).subject_of("abc") == "ops"
    with pytest.raises(ConfigError, match="cannot read tokens file"):
        rbac.load_policy(tmp_path / "missing.yaml")
