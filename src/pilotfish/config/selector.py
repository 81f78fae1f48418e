"""WorkloadSelector: the ``matchLabels`` selector shared by networking and security kinds.

istio/api ``type/v1beta1/selector.proto``: a workload is selected when every listed label is
present on it with the same value; an empty selector selects every workload in the namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilotfish.config.decode import Message, field


@dataclass(frozen=True, slots=True)
class WorkloadSelector(Message):
    match_labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every ``matchLabels`` entry is among ``labels`` (Istio ``labels.Instance.SubsetOf``)."""
        return all(labels.get(key) == value for key, value in self.match_labels.items())


@dataclass(frozen=True, slots=True)
class LabelSelector(Message):
    """networking.istio.io's own ``WorkloadSelector`` (field ``labels``), used by ServiceEntry and
    Sidecar (istio/api ``networking/v1alpha3/sidecar.proto``)."""

    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.labels.items())
