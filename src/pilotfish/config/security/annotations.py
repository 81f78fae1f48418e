"""The ``istio.io/dry-run`` annotation: AuthorizationPolicy only, ALLOW and DENY only.

Istio checks it for every kind in its webhook (istio/istio ``pkg/config/validation/validation.go``
``validateAnnotationDryRun`` / ``checkDryRunAnnotation``) and reads it with Go's
``strconv.ParseBool`` (``pilot/pkg/security/authz/builder/builder.go`` ``isDryRun``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pilotfish.config.resource import Finding, Resource

DRY_RUN_ANNOTATION = "istio.io/dry-run"
DRY_RUN_ACTIONS = ("ALLOW", "DENY")

# Go strconv.ParseBool: exactly these spellings.
GO_BOOLS: dict[str, bool] = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def is_dry_run(resource: Resource[Any]) -> bool:
    """Whether a policy is in dry-run (shadow) mode. An unparsable value counts as false, as in Istio."""
    return GO_BOOLS.get(resource.annotations.get(DRY_RUN_ANNOTATION, "false"), False)


def dry_run_findings(resource: Resource[Any], action: str | None = None) -> Iterator[Finding]:
    """Findings for the annotation on a resource; ``action`` is the AuthorizationPolicy action,
    ``None`` for kinds that do not support the annotation at all.

    The loader puts finding paths under ``spec``, so these name the annotation in the message.
    """
    value = resource.annotations.get(DRY_RUN_ANNOTATION)
    where = f"metadata.annotations[{DRY_RUN_ANNOTATION}]"
    if value is None:
        return
    if action is None:
        yield Finding((), f"{where}: {resource.kind} does not support this annotation, please remove it")
    elif action not in DRY_RUN_ACTIONS:
        yield Finding((), f"{where}: the annotation only supports action ALLOW/DENY, found action {action}")
    elif value not in GO_BOOLS:
        yield Finding((), f"{where}: invalid value {value!r} (expected true or false)")
