"""Small, pure checks shared by the kinds' validators (Istio's ``pkg/config/validation`` helpers).

Each returns ``None`` when the value is fine or a message saying why it is not, so validators
read as tables of ``(path, check(value))``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping

from pilotfish.config.decode import Path
from pilotfish.config.resource import Finding

# Kubernetes label keys: optional DNS-1123 subdomain prefix + "/" + name (≤ 63, alnum ends).
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$")


def port_number(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"port {value} must be between 1 and 65535"


def label_key(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"invalid label key {key!r}: prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"invalid label key {key!r}"
    return None


def label_value(value: str) -> str | None:
    if len(value) > 63 or not _LABEL_NAME.match(value):
        return f"invalid label value {value!r}"
    return None


def labels(values: Mapping[str, str], path: Path) -> Iterator[Finding]:
    """Findings for a Kubernetes label map (keys and values)."""
    for key, value in values.items():
        problem = label_key(key) or label_value(value)
        if problem:
            yield Finding((*path, key), problem)


def ip_address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def ip_or_cidr(value: str) -> str | None:
    """An IP address or a CIDR block, as ipBlocks take (Istio: ``ValidateIPAddress``/``ValidateIPSubnet``)."""
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address or CIDR block"
    return None


def dns_name(value: str, *, wildcard: bool = True) -> str | None:
    """A DNS name, optionally with a leading ``*.`` or being ``*`` (Istio's ``ValidateWildcardDomain``)."""
    name = value
    if wildcard and name == "*":
        return None
    if wildcard and name.startswith("*."):
        name = name[2:]
    if not name or len(name) > 255:
        return f"invalid host {value!r}"
    labels_ = name.rstrip(".").split(".")
    if any(len(label) > 63 or not _DNS_LABEL.match(label) for label in labels_):
        return f"invalid host {value!r}: each label must be alphanumeric or '-', at most 63 characters"
    return None


def findings(*pairs: tuple[Path, str | None]) -> Iterator[Finding]:
    """Turn ``(path, message-or-None)`` pairs into findings for the non-None ones."""
    for path, message in pairs:
        if message:
            yield Finding(path, message)
