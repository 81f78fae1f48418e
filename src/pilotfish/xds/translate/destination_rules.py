"""Which DestinationRule applies to a service host for a given proxy — Istio's lookup.

Theory of operation (istio/istio ``pilot/pkg/model/push_context.go`` ``setDestinationRules``,
``destinationRule``, ``getExportedDestinationRuleFromNamespace``; ``destination_rule.go``
``mergeDestinationRule``; ``sidecar.go`` ``SidecarScope.DestinationRule``; ``config.go``
``MostSpecificHostMatch``):

1. Every rule's host is resolved relative to its own namespace (``ResolveShortnameToFQDN``:
   ``reviews`` in ``prod`` means ``reviews.prod.svc.cluster.local``).
2. Rules are indexed three ways. *Namespace-local*: rules a proxy in the rule's own namespace
   sees (exportTo empty, ``*``, ``.`` or naming the namespace). *Exported*: rules visible
   outside their namespace (anything but ``.``-only). *Root-local*: private rules of the root
   namespace. A rule with a workloadSelector is private (exportTo ``.``) whatever it says.
3. Rules for the same host in one table are merged (``ENABLE_ENHANCED_DESTINATIONRULE_MERGE``,
   on by default): an incoming rule with the same exportTo (or a strictly wider one) and a
   compatible selector is merged into an earlier one — subsets concatenated (first name wins),
   the first top-level trafficPolicy kept; whether it also stays an entry of its own follows
   Istio's decision exactly (``_merge_decision``).
   Order: rules with a selector first, then by name and namespace (pilotfish keeps no creation
   time; Istio orders by creation time, then name, then namespace).
4. Lookup for a proxy in namespace P and a service in namespace S: P's namespace-local rules
   (the root-local ones when P is the root namespace), else S's exported rules visible to P,
   else the root namespace's exported rules visible to P. In each table the exact host wins,
   then the most specific wildcard (``*.example.com`` over ``*.com`` over ``*``).
5. Of the rules found, one whose workloadSelector selects the proxy (and that lives in the
   proxy's namespace) wins; otherwise the last rule without a selector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pilotfish.config.hosts import DEFAULT_DOMAIN_SUFFIX, PRIVATE, PUBLIC, resolve_host
from pilotfish.config.networking.destination_rule import DestinationRuleSpec
from pilotfish.config.resource import Resource
from pilotfish.registry.snapshot import MeshSnapshot


@dataclass(frozen=True, slots=True)
class AppliedRule:
    """A DestinationRule as Istio applies it (``ConsolidatedDestRule``): the host resolved, and
    possibly other rules for the same host merged in (``sources``)."""

    name: str
    namespace: str
    api_version: str
    spec: DestinationRuleSpec
    export_to: frozenset[str]
    sources: tuple[str, ...]  # "namespace/name" of every rule merged into this one

    @property
    def host(self) -> str:
        return self.spec.host

    @property
    def selector(self) -> Mapping[str, str] | None:
        selector = self.spec.workload_selector
        return None if selector is None else selector.match_labels

    def selects(self, labels: Mapping[str, str]) -> bool:
        selector = self.spec.workload_selector
        return selector is not None and selector.matches(labels)


@dataclass(frozen=True, slots=True)
class RuleTable:
    """Rules by resolved host, split like Istio's ``consolidatedDestRules``."""

    specific: Mapping[str, tuple[AppliedRule, ...]] = field(default_factory=dict)
    wildcard: Mapping[str, tuple[AppliedRule, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DestinationRuleIndex:
    """Istio's ``destinationRuleIndex``, computed once per snapshot."""

    root_namespace: str
    namespace_local: Mapping[str, RuleTable] = field(default_factory=dict)
    exported: Mapping[str, RuleTable] = field(default_factory=dict)
    root_local: RuleTable = RuleTable()


# ---- host names ----------------------------------------------------------------------------------


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def more_specific(a: str, b: str) -> bool:
    """Istio ``host.MoreSpecific``: exact before wildcard, longer before shorter; ties broken by
    name so the choice is deterministic."""
    if is_wildcard(a) != is_wildcard(b):
        return not is_wildcard(a)
    if len(a) != len(b):
        return len(a) > len(b)
    return a < b


def most_specific_match(needle: str, table: RuleTable) -> tuple[AppliedRule, ...] | None:
    """Istio ``MostSpecificHostMatch``: the exact host first, then the most specific wildcard
    whose suffix the needle ends with (a wildcard needle matches by its own suffix)."""
    exact = (table.wildcard if is_wildcard(needle) else table.specific).get(needle)
    if exact is not None:
        return exact
    suffix = needle[1:] if is_wildcard(needle) else needle
    best: str | None = None
    for host in table.wildcard:
        if suffix.endswith(host[1:]) and (best is None or more_specific(host, best)):
            best = host
    return None if best is None else table.wildcard[best]


# ---- building the index --------------------------------------------------------------------------


def index_destination_rules(
    rules: Iterable[Resource[Any]], root_namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> DestinationRuleIndex:
    """Istio ``setDestinationRules``."""
    namespace_local: dict[str, _Table] = {}
    exported: dict[str, _Table] = {}
    root_local = _Table()
    for rule in sorted(rules, key=_rule_order):
        applied = _applied(rule, domain_suffix)
        if _visible_in_own_namespace(applied):
            namespace_local.setdefault(rule.namespace, _Table()).add(applied)
        if not _private_only(applied):
            exported.setdefault(rule.namespace, _Table()).add(applied)
        elif rule.namespace == root_namespace:
            root_local.add(applied)
    return DestinationRuleIndex(
        root_namespace=root_namespace,
        namespace_local={ns: t.freeze() for ns, t in namespace_local.items()},
        exported={ns: t.freeze() for ns, t in exported.items()},
        root_local=root_local.freeze(),
    )


def destination_rule_index(snapshot: MeshSnapshot) -> DestinationRuleIndex:
    """The index of the snapshot's DestinationRules, built once per snapshot and shared by every
    proxy's CDS and EDS translation (``MeshSnapshot.derived``)."""
    return snapshot.derived(_index_of_snapshot)


def _index_of_snapshot(snapshot: MeshSnapshot) -> DestinationRuleIndex:
    return index_destination_rules(snapshot.of_kind("DestinationRule"), snapshot.mesh.root_namespace)


def _rule_order(rule: Resource[Any]) -> tuple[bool, str, str]:
    """``sortConfigBySelectorAndCreationTime`` without creation time: selectors first."""
    return (rule.spec.workload_selector is None, rule.name, rule.namespace)


def _applied(rule: Resource[Any], domain_suffix: str) -> AppliedRule:
    spec: DestinationRuleSpec = rule.spec
    host = resolve_host(spec.host, rule.namespace, domain_suffix)
    # ``replace`` rebuilds the whole spec; most hosts are written fully qualified already.
    resolved = spec if host == spec.host else replace(spec, host=host)
    # Destination rules with a workloadSelector are never exported (setDestinationRules).
    export_to = frozenset(spec.export_to) if spec.workload_selector is None else frozenset({PRIVATE})
    return AppliedRule(
        rule.name, rule.namespace, rule.api_version, resolved, export_to, (f"{rule.namespace}/{rule.name}",)
    )


def _visible_in_own_namespace(rule: AppliedRule) -> bool:
    to = rule.export_to
    return not to or PUBLIC in to or PRIVATE in to or rule.namespace in to


def _private_only(rule: AppliedRule) -> bool:
    """Only ``.`` (or the own namespace) — the mesh default exportTo is ``*``."""
    return len(rule.export_to) == 1 and (PRIVATE in rule.export_to or rule.namespace in rule.export_to)


class _Table:
    """A ``RuleTable`` under construction (one per namespace and visibility)."""

    def __init__(self) -> None:
        self.rules: dict[str, list[AppliedRule]] = {}

    def add(self, incoming: AppliedRule) -> None:
        """Istio ``mergeDestinationRule`` with the enhanced (exportTo-aware) merge."""
        existing = self.rules.setdefault(incoming.host, [])
        append_separately = True
        for i, current in enumerate(list(existing)):
            append_separately, merge = _merge_decision(current, incoming)
            if merge:
                existing[i] = _merged(current, incoming)
        if append_separately:
            existing.append(incoming)

    def freeze(self) -> RuleTable:
        specific = {h: tuple(r) for h, r in self.rules.items() if not is_wildcard(h)}
        wildcard = {h: tuple(r) for h, r in self.rules.items() if is_wildcard(h)}
        return RuleTable(specific, wildcard)


def _merge_decision(current: AppliedRule, incoming: AppliedRule) -> tuple[bool, bool]:
    """(append the incoming rule separately?, merge it into ``current``?) — one iteration of
    ``mergeDestinationRule``'s loop. As in Istio, an incoming rule whose exportTo is a strict
    superset is merged and, when the selectors agree, not kept separately."""
    if incoming.export_to == current.export_to:
        append = False
    elif current.export_to and incoming.export_to > current.export_to:
        append = True
    else:
        return True, False
    both_without = incoming.selector is None and current.selector is None
    both_with = incoming.selector is not None and current.selector is not None
    if both_with and dict(incoming.selector or {}) != dict(current.selector or {}):
        return True, False
    return append and not (both_without or both_with), True


def _merged(current: AppliedRule, incoming: AppliedRule) -> AppliedRule:
    """Subsets concatenated (a duplicate name keeps the first), the first trafficPolicy kept."""
    names = {s.name for s in current.spec.subsets}
    subsets = (*current.spec.subsets, *(s for s in incoming.spec.subsets if s.name not in names))
    policy = current.spec.traffic_policy or incoming.spec.traffic_policy
    spec = replace(current.spec, subsets=subsets, traffic_policy=policy)
    return replace(current, spec=spec, sources=(*current.sources, *incoming.sources))


# ---- lookup --------------------------------------------------------------------------------------


def rules_for_host(
    index: DestinationRuleIndex, proxy_namespace: str, hostname: str, service_namespace: str
) -> tuple[AppliedRule, ...]:
    """Istio ``PushContext.destinationRule``: the candidate rules, by namespace precedence."""
    if proxy_namespace != index.root_namespace:
        local = index.namespace_local.get(proxy_namespace)
        found = most_specific_match(hostname, local) if local is not None else None
    else:
        found = most_specific_match(hostname, index.root_local)
    if found:
        return found
    for owner in (service_namespace, index.root_namespace):
        exported = _exported_to(index, owner, hostname, proxy_namespace)
        if exported:
            return exported
    return ()


def _exported_to(
    index: DestinationRuleIndex, owner: str, hostname: str, client: str
) -> tuple[AppliedRule, ...]:
    """Istio ``getExportedDestinationRuleFromNamespace``."""
    table = index.exported.get(owner)
    found = most_specific_match(hostname, table) if table is not None else None
    if not found:
        return ()
    return tuple(r for r in found if not r.export_to or PUBLIC in r.export_to or client in r.export_to)


def select_rule(
    rules: Iterable[AppliedRule], proxy_namespace: str, proxy_labels: Mapping[str, str]
) -> AppliedRule | None:
    """Istio ``SidecarScope.DestinationRule`` (outbound): a rule in the proxy's namespace whose
    selector matches the proxy's labels wins; otherwise the last rule without a selector."""
    catch_all: AppliedRule | None = None
    for rule in rules:
        if rule.selector is None:
            catch_all = rule
        elif rule.namespace == proxy_namespace and rule.selects(proxy_labels):
            return rule
    return catch_all


def destination_rule_for(
    index: DestinationRuleIndex,
    proxy_namespace: str,
    proxy_labels: Mapping[str, str],
    hostname: str,
    service_namespace: str,
) -> AppliedRule | None:
    """The one DestinationRule that shapes ``hostname``'s clusters for this proxy, if any."""
    candidates = rules_for_host(index, proxy_namespace, hostname, service_namespace)
    return select_rule(candidates, proxy_namespace, proxy_labels)
