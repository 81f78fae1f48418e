"""Host and gateway names as Istio resolves them in config (pure; shared by validation,
cross-object analysis and translation)."""

from __future__ import annotations

import ipaddress

DEFAULT_DOMAIN_SUFFIX = "cluster.local"
PUBLIC = "*"  # exportTo / egress: every namespace
PRIVATE = "."  # exportTo / egress: the resource's own namespace
MESH_GATEWAY = "mesh"  # the reserved gateway name for sidecars


def resolve_host(host: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    """Istio ``ResolveShortnameToFQDN``: a name without a dot is a Kubernetes short name in the
    rule's namespace; ``*``, IP addresses and dotted names are taken as written."""
    if not host or host == PUBLIC or "." in host or is_ip(host):
        return host
    return f"{host}.{namespace}.svc.{domain_suffix}" if namespace else f"{host}.svc.{domain_suffix}"


def resolve_gateway_name(name: str, namespace: str) -> str:
    """Istio ``resolveGatewayName``: ``ns/name`` for every spelling of a gateway reference."""
    if name == MESH_GATEWAY:
        return name
    scope, slash, gateway = name.partition("/")
    if slash:
        return f"{namespace}/{gateway}" if scope == PRIVATE else name
    short, dot, rest = name.partition(".")
    if not dot:
        return f"{namespace}/{name}"
    return f"{rest.split('.', 1)[0]}/{short}"


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
