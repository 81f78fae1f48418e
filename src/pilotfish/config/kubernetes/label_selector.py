"""Kubernetes ``metav1.LabelSelector``: ``matchLabels`` and ``matchExpressions`` (ANDed).

Semantics (``k8s.io/apimachinery/pkg/apis/meta/v1/helpers.go`` ``LabelSelectorAsSelector`` and
``pkg/labels/selector.go`` ``Requirement.Matches``): an empty selector matches everything;
``In`` needs the key with one of the values, ``NotIn`` matches a missing key too, ``Exists`` and
``DoesNotExist`` test the key only. Validation follows ``ValidateLabelSelector``: In/NotIn need
at least one value, Exists/DoesNotExist take none; keys and values are label keys and values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, field
from pilotfish.config.resource import Finding

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]

# Operator → (does the requirement match the labels, given key and values).
OPERATORS: Mapping[str, Callable[[Mapping[str, str], str, tuple[str, ...]], bool]] = {
    "In": lambda labels, key, values: key in labels and labels[key] in values,
    "NotIn": lambda labels, key, values: key not in labels or labels[key] not in values,
    "Exists": lambda labels, key, values: key in labels,
    "DoesNotExist": lambda labels, key, values: key not in labels,
}
NEEDS_VALUES = frozenset({"In", "NotIn"})


@dataclass(frozen=True, slots=True)
class LabelSelectorRequirement(Message):
    key: str = field(required=True)
    operator: Operator = field(required=True)
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return OPERATORS[self.operator](labels, self.key, self.values)


@dataclass(frozen=True, slots=True)
class LabelSelector(Message):
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Selects everything (``{}``)."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


EVERYTHING = LabelSelector()


def validate_selector(selector: LabelSelector, path: Path) -> Iterator[Finding]:
    """``ValidateLabelSelector``: label keys/values, and values only where the operator takes them."""
    yield from checks.labels(selector.match_labels, (*path, "matchLabels"))
    for i, req in enumerate(selector.match_expressions):
        where = (*path, "matchExpressions", i)
        yield from checks.findings(((*where, "key"), checks.label_key(req.key)))
        if req.operator in NEEDS_VALUES and not req.values:
            yield Finding((*where, "values"), f"must be specified when `operator` is '{req.operator}'")
        if req.operator not in NEEDS_VALUES and req.values:
            yield Finding((*where, "values"), f"may not be specified when `operator` is '{req.operator}'")
        for j, value in enumerate(req.values):
            yield from checks.findings(((*where, "values", j), checks.label_value(value)))
