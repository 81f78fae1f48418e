"""Small, pure checks shared by the kinds' validators (Istio's ``pkg/config/validation`` helpers).

Each returns ``None`` when the value is fine or a message saying why it is not, so validators
read as tables of ``(path, check(value))``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta

from pilotfish.config.decode import Path, parse_duration
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


# ---- Istio's host, name and value checks (pkg/config/validation/agent, pkg/config/labels) --------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Istio ``labels.IsWildcardDNS1123Label``: "*", or a label optionally led by "*" or "*-".
_WILDCARD_LABEL = re.compile(r"^(\*|(\*|\*-)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)$")
_ISTIO_LABEL = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def dns1123_label(value: str) -> str | None:
    """A Kubernetes DNS-1123 label: lower case alphanumerics and '-', at most 63 (``IsDNS1123Label``)."""
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        return f"{value!r} is not a valid DNS-1123 label (lower case alphanumerics and '-', at most 63)"
    return None


def _dns_labels(domain: str, whole: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return f"domain name {whole!r} invalid (top level domain {parts[-1]!r} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot, as in "istio.io."
        if len(label) > 63 or not _ISTIO_LABEL.match(label):
            return f"domain name {whole!r} invalid (label {label!r} invalid)"
    return None


def _domain_preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {name!r} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def fqdn(value: str) -> str | None:
    """A domain name without wildcards (Istio ``agent.ValidateFQDN``)."""
    return _domain_preconditions(value) or _dns_labels(value, value)


def wildcard_domain(value: str) -> str | None:
    """A domain name whose first label may be a wildcard, e.g. ``*.example.com`` or ``*``
    (Istio ``agent.ValidateWildcardDomain``). Short names such as ``reviews`` are valid."""
    problem = _domain_preconditions(value)
    if problem:
        return problem
    first, dot, rest = value.partition(".")
    if len(first) > 63 or not _WILDCARD_LABEL.match(first):
        return f"domain name {value!r} invalid (label {first!r} invalid)"
    return _dns_labels(rest, value) if dot else None


def partial_wildcard(value: str) -> str | None:
    """Istio ``agent.ValidatePartialWildCard``: ``*`` only as the whole host or a leading ``*.``."""
    if "*" in value and value != "*" and not value.startswith("*."):
        return f"partial wildcard {value!r} not allowed"
    return None


def ip_subnet(value: str) -> str | None:
    """An IP address or CIDR block (Istio ``agent.ValidateIPSubnet``); a prefix with host bits set
    (``10.0.0.1/8``) is accepted like Go's ``netip.ParsePrefix`` does."""
    if value.count("/") == 1:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value} is not a valid CIDR block"
        return None
    return None if ip_address(value) is None else f"{value} is not a valid IP"


def is_ip(value: str) -> bool:
    return ip_address(value) is None


def _gateway_or_sidecar_host(host: str, *, gateway: bool) -> list[str]:
    """Istio ``validateSidecarOrGatewayHostnamePart``."""
    out = []
    if host != "*" and "." not in host:
        out.append("short names (non FQDN) are not allowed")
    problem = wildcard_domain(host)
    if problem and not (gateway and is_ip(host)):
        out.append(problem)
    problem = partial_wildcard(host)
    if problem:
        out.append(problem)
    return out


def namespace_slash_host(value: str, *, gateway: bool) -> list[str]:
    """``namespace/dnsName`` as Gateway servers and Sidecar egress hosts take it (Istio
    ``agent.ValidateNamespaceSlashWildcardHostname``). Gateways also accept a bare host; sidecars
    also accept the namespace ``~``."""
    namespace, slash, host = value.partition("/")
    if not slash:
        if gateway:
            return _gateway_or_sidecar_host(value, gateway=True)
        return ["host must be of form namespace/dnsName"]
    out = []
    if not namespace or not host:
        out.append("config namespace and dnsName in host entry cannot be empty")
    allowed = {"*", "."} if gateway else {"*", ".", "~"}
    if namespace not in allowed and dns1123_label(namespace):
        out.append(f"invalid namespace value {namespace!r} in {'gateway' if gateway else 'sidecar'}")
    return out + _gateway_or_sidecar_host(host, gateway=gateway)


def host_matches(a: str, b: str) -> bool:
    """Whether two possibly wildcarded hosts overlap (Istio ``host.Name.Matches``)."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        shorter, longer = (a, b) if len(a) < len(b) else (b, a)
        return longer[1:].endswith(shorter[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Whether every name ``a`` matches is matched by ``b`` (Istio ``host.Name.SubsetOf``)."""
    if a.startswith("*"):
        return b.startswith("*") and a[1:].endswith(b[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def port_name(value: str) -> str | None:
    """Istio ``ValidatePortName``: a DNS-1123 label."""
    return None if dns1123_label(value) is None else f"invalid port name: {value!r}"


def unix_address(path: str) -> str | None:
    """What follows ``unix://``: an absolute file path or an abstract socket ``@name``
    (Istio ``ValidateUnixAddress``)."""
    if not path:
        return "unix address must not be empty"
    if path.startswith("@"):
        return None
    if not path.startswith("/") or path.endswith("/"):
        return f"{path} is not an absolute path to a file"
    return None


def duration(value: timedelta) -> str | None:
    """At least 1ms, whole milliseconds (Istio ``agent.ValidateDuration``; the CRDs' CEL rule
    ``duration(self) >= duration('1ms')``)."""
    if value < timedelta(milliseconds=1):
        return "duration must be greater than 1ms"
    if value % timedelta(milliseconds=1):
        return "only durations to ms precision are supported"
    return None


def duration_text(value: str, *, zero_ok: bool = False) -> str | None:
    """A duration held as text (fields whose CRD schema has no ``duration()`` rule): at least 1ms,
    or (``zero_ok``, e.g. a cookie TTL where 0 means a session cookie) any valid duration."""
    try:
        parsed = parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return None if zero_ok else duration(parsed)


def http_header_name(name: str) -> str | None:
    """Istio ``ValidateHTTPHeaderName``."""
    if not name:
        return "header name cannot be empty"
    if not _HEADER_NAME.match(name):
        return f"header name {name!r} is not a valid header name"
    return None


def http_header_value(value: str) -> str | None:
    """Istio ``ValidateHTTPHeaderValue``: no control characters, and every ``%`` either doubled
    (``%%``) or opening a ``%VARIABLE%`` that is closed."""
    if _HEADER_VALUE_BAD.search(value):
        return f"header value {value!r} contains control characters"
    i = 0
    while i < len(value):
        if value[i] != "%":
            i += 1
        elif value.startswith("%%", i):
            i += 2
        else:
            end = value.find("%", i + 1)
            if end < 0 or end == i + 1:
                return f"header value {value!r}: unterminated or empty %VARIABLE%"
            i = end + 1
    return None


# RE2 (what Envoy and Istio's Go validation compile) has no look-around, backreferences,
# atomic groups, possessive quantifiers or conditionals; Python's ``re`` has them all.
_NOT_RE2 = (
    (re.compile(r"\(\?<?[=!]"), "look-around assertions"),
    (re.compile(r"\x00|\(\?P="), "backreferences"),
    (re.compile(r"\(\?>"), "atomic groups"),
    (re.compile(r"[*+?}]\+"), "possessive quantifiers"),
    (re.compile(r"\(\?\("), "conditional groups"),
)
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
RE2_MAX_REPEAT = 1000
_RE2_ONLY = ((re.compile(r"\\z"), r"\\Z"), (re.compile(r"\(\?<(?=[A-Za-z_])"), "(?P<"))


def _without_escapes(pattern: str) -> str:
    """The pattern with each escape replaced: backreferences (``\\1``, ``\\g``) by NUL, others by ``_``."""
    return re.sub(r"\\(.)", lambda m: "\x00" if m.group(1) in "123456789g" else "_", pattern, flags=re.S)


def _not_re2(pattern: str) -> str | None:
    """Python-only syntax RE2 rejects, found outside escapes."""
    bare = _without_escapes(pattern)
    for construct, name in _NOT_RE2:
        if construct.search(bare):
            return f"uses {name}, which RE2 does not support"
    for m in _REPEAT.finditer(bare):
        if max(int(n) for n in m.groups() if n) > RE2_MAX_REPEAT:
            return f"repeats more than {RE2_MAX_REPEAT} times, which RE2 rejects"
    return None


def re2_regex(pattern: str) -> str | None:
    """A regular expression Envoy's RE2 compiles (Istio ``validateStringRegexp``: at most 1024
    characters, Go RE2 syntax). Python's ``re`` is the compiler, with RE2-only syntax mapped to
    it and Python-only syntax rejected. (RE2's ``\\p{Greek}`` and ``\\Q...\\E`` are not mapped.)"""
    if len(pattern) > 1024:
        return "regex is too large, max length allowed is 1024"
    problem = _not_re2(pattern)
    if problem:
        return f"regex {pattern!r} {problem}"
    translated = pattern
    for re2_form, python_form in _RE2_ONLY:
        translated = re2_form.sub(python_form, translated)
    try:
        re.compile(translated)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"regex {pattern!r} does not compile: {exc}"
    return None


# ---- workload selectors (security kinds; reusable by any kind with a WorkloadSelector) ----------


def workload_selector(match_labels: Mapping[str, str], path: Path) -> Iterator[Finding]:
    """Istio ``validateWorkloadSelector`` plus the CRD schema of ``matchLabels``: keys must be
    non-empty, neither keys nor values may hold ``*``, values are at most 63 characters. A key or
    value Kubernetes would not accept as a label is only a warning (Istio accepts it; it can never
    match a workload). An empty ``matchLabels`` is a warning ("selector specified without labels")."""
    if not match_labels:
        yield Finding(path, "workload selector specified without labels", "warning")
    for key, value in match_labels.items():
        where = (*path, "matchLabels", key) if key else (*path, "matchLabels")
        if not key:
            yield Finding(where, f"empty key is not supported in selector: {key}={value}")
        elif "*" in key or "*" in value:
            yield Finding(where, f"wildcard is not supported in selector: {key}={value}")
        elif len(value) > 63:
            yield Finding(where, f"label value {value!r} is longer than 63 characters")
        elif label_key(key) or label_value(value):
            yield Finding(where, f"{label_key(key) or label_value(value)}; it matches no workload", "warning")
