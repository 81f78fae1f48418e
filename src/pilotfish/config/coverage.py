"""Which accepted config fields reach Envoy, and which do not (and why): no silent gaps.

Every field of every message the loader accepts is in exactly one of two tables, keyed by the
message (``module.Class``) and the field's JSON name:

- ``TRANSLATED``: the field shapes what pilotfish serves (xDS, the Check server, the registry);
- ``UNSUPPORTED``: the field is accepted (it is valid Istio) but has no effect in pilotfish, with
  the reason. ``untranslated`` turns each such field that a resource sets into a warning on its
  path, so ``pilotfish validate`` and ``serve`` say so instead of silently doing nothing. Some
  entries apply only to some values (a ``unix://`` bind, ``captureMode: IPTABLES``); their
  ``applies`` predicate says which.

``tests/unit/config/test_coverage.py`` walks every message reachable from ``KINDS`` and fails on a
field in neither table (or in both, or a table entry naming no field), so a field added to the
model must be classified here. Fields are named one by one (no wildcards): a new field of a
message that is otherwise fully translated is not taken for translated. Fields validation
rejects outright (``exponentialDelay``, ``http2Error``) never reach translation; they are listed
as unsupported too, with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config.decode import Message, Path, message_fields
from pilotfish.config.resource import Finding

UNTRANSLATED = "accepted but not translated: "  # the warnings' prefix


@dataclass(frozen=True, slots=True)
class Unsupported:
    reason: str
    applies: Callable[[Any], bool] | None = None  # None: whenever the field is set


def message_key(cls: type) -> str:
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


UNIX = "unix://"

TRANSLATED: Mapping[str, frozenset[str]] = {
    # VirtualService
    "virtual_service.VirtualServiceSpec": frozenset({"hosts", "gateways", "http", "tls", "tcp", "exportTo"}),
    "virtual_service.HTTPRoute": frozenset(
        {
            "name",
            "match",
            "route",
            "redirect",
            "directResponse",
            "delegate",
            "rewrite",
            "timeout",
            "retries",
            "fault",
            "mirror",
            "mirrors",
            "mirror_percent",
            "mirrorPercent",
            "mirrorPercentage",
            "corsPolicy",
            "headers",
        }
    ),
    "virtual_service.HTTPMatchRequest": frozenset(
        {
            "name",
            "uri",
            "scheme",
            "method",
            "authority",
            "headers",
            "port",
            "sourceLabels",
            "gateways",
            "queryParams",
            "ignoreUriCase",
            "withoutHeaders",
            "sourceNamespace",
            "statPrefix",
        }
    ),
    "virtual_service.StringMatch": frozenset({"exact", "prefix", "regex"}),
    "virtual_service.HTTPRouteDestination": frozenset({"destination", "weight", "headers"}),
    "common.Destination": frozenset({"host", "subset", "port"}),
    "common.PortSelector": frozenset({"number"}),
    "common.Percent": frozenset({"value"}),
    "virtual_service.Headers": frozenset({"request", "response"}),
    "virtual_service.HeaderOperations": frozenset({"set", "add", "remove"}),
    "virtual_service.HTTPRedirect": frozenset(
        {"uri", "authority", "port", "derivePort", "scheme", "redirectCode", "prefixRewrite"}
    ),
    "virtual_service.HTTPDirectResponse": frozenset({"status", "body"}),
    "virtual_service.HTTPBody": frozenset({"string", "bytes"}),
    "virtual_service.Delegate": frozenset({"name", "namespace"}),
    "virtual_service.HTTPRewrite": frozenset({"uri", "authority", "uriRegexRewrite"}),
    "virtual_service.RegexRewrite": frozenset({"match", "rewrite"}),
    "virtual_service.HTTPRetry": frozenset(
        {
            "attempts",
            "perTryTimeout",
            "retryOn",
            "retryRemoteLocalities",
            "retryIgnorePreviousHosts",
            "backoff",
        }
    ),
    "virtual_service.HTTPFaultInjection": frozenset({"delay", "abort"}),
    "virtual_service.FaultDelay": frozenset({"fixedDelay", "percentage", "percent"}),
    "virtual_service.FaultAbort": frozenset({"httpStatus", "grpcStatus", "percentage"}),
    "virtual_service.HTTPMirrorPolicy": frozenset({"destination", "percentage"}),
    "virtual_service.CorsPolicy": frozenset(
        {
            "allowOrigin",
            "allowOrigins",
            "allowMethods",
            "allowHeaders",
            "exposeHeaders",
            "maxAge",
            "allowCredentials",
            "unmatchedPreflights",
        }
    ),
    "virtual_service.TLSRoute": frozenset({"match", "route"}),
    "virtual_service.TLSMatchAttributes": frozenset(
        {"sniHosts", "destinationSubnets", "port", "sourceLabels", "gateways", "sourceNamespace"}
    ),
    "virtual_service.RouteDestination": frozenset({"destination", "weight"}),
    "virtual_service.TCPRoute": frozenset({"match", "route"}),
    "virtual_service.L4MatchAttributes": frozenset(
        {"destinationSubnets", "port", "sourceSubnet", "sourceLabels", "gateways", "sourceNamespace"}
    ),
    # DestinationRule
    "destination_rule.DestinationRuleSpec": frozenset(
        {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"}
    ),
    "destination_rule.TrafficPolicy": frozenset(
        {"loadBalancer", "connectionPool", "outlierDetection", "tls", "portLevelSettings", "retryBudget"}
    ),
    "destination_rule.LoadBalancerSettings": frozenset(
        {"simple", "consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup"}
    ),
    "destination_rule.ConsistentHashLB": frozenset(
        {
            "httpHeaderName",
            "httpCookie",
            "useSourceIp",
            "httpQueryParameterName",
            "ringHash",
            "maglev",
            "minimumRingSize",
        }
    ),
    "destination_rule.HTTPCookie": frozenset({"name", "path", "ttl", "attributes"}),
    "destination_rule.CookieAttribute": frozenset({"name", "value"}),
    "destination_rule.RingHash": frozenset({"minimumRingSize"}),
    "destination_rule.MagLev": frozenset({"tableSize"}),
    "destination_rule.LocalityLoadBalancerSetting": frozenset(
        {"distribute", "failover", "failoverPriority", "enabled"}
    ),
    "destination_rule.LocalityDistribute": frozenset({"from", "to"}),
    "destination_rule.LocalityFailover": frozenset({"from", "to"}),
    "destination_rule.WarmupConfiguration": frozenset({"duration", "minimumPercent", "aggression"}),
    "destination_rule.ConnectionPoolSettings": frozenset({"tcp", "http"}),
    "destination_rule.TCPSettings": frozenset(
        {"maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration", "idleTimeout"}
    ),
    "destination_rule.TcpKeepalive": frozenset({"probes", "time", "interval"}),
    "destination_rule.HTTPSettings": frozenset(
        {
            "http1MaxPendingRequests",
            "http2MaxRequests",
            "maxRequestsPerConnection",
            "maxRetries",
            "idleTimeout",
            "h2UpgradePolicy",
            "useClientProtocol",
            "maxConcurrentStreams",
        }
    ),
    "destination_rule.OutlierDetection": frozenset(
        {
            "consecutiveErrors",
            "splitExternalLocalOriginErrors",
            "consecutiveLocalOriginFailures",
            "consecutiveGatewayErrors",
            "consecutive5xxErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
            "minHealthPercent",
        }
    ),
    "destination_rule.ClientTLSSettings": frozenset(
        {
            "mode",
            "clientCertificate",
            "privateKey",
            "caCertificates",
            "credentialName",
            "subjectAltNames",
            "sni",
            "insecureSkipVerify",
            "caCrl",
        }
    ),
    "destination_rule.PortTrafficPolicy": frozenset(
        {"port", "loadBalancer", "connectionPool", "outlierDetection", "tls"}
    ),
    "destination_rule.RetryBudget": frozenset({"percent", "minRetryConcurrency"}),
    "destination_rule.Subset": frozenset({"name", "labels", "trafficPolicy"}),
    "selector.WorkloadSelector": frozenset({"matchLabels"}),
    # Gateway
    "gateway.GatewaySpec": frozenset({"servers", "selector"}),
    "gateway.Server": frozenset({"port", "hosts", "bind", "tls"}),
    "gateway.Port": frozenset({"number", "protocol", "name"}),
    "gateway.ServerTLSSettings": frozenset(
        {
            "httpsRedirect",
            "mode",
            "serverCertificate",
            "privateKey",
            "caCertificates",
            "caCrl",
            "credentialName",
            "credentialNames",
            "tlsCertificates",
            "subjectAltNames",
            "verifyCertificateSpki",
            "verifyCertificateHash",
            "minProtocolVersion",
            "maxProtocolVersion",
            "cipherSuites",
            "caCertCredentialName",
        }
    ),
    "gateway.TLSCertificate": frozenset({"serverCertificate", "privateKey"}),
    # ServiceEntry, WorkloadEntry, WorkloadGroup (the registry)
    "service_entry.ServiceEntrySpec": frozenset(
        {
            "hosts",
            "addresses",
            "ports",
            "location",
            "resolution",
            "endpoints",
            "workloadSelector",
            "exportTo",
            "subjectAltNames",
        }
    ),
    "service_entry.ServicePort": frozenset({"number", "name", "protocol", "targetPort"}),
    "workload_entry.WorkloadEntrySpec": frozenset(
        {"address", "ports", "labels", "locality", "weight", "serviceAccount"}
    ),
    "selector.LabelSelector": frozenset({"labels"}),
    "workload_group.WorkloadGroupSpec": frozenset({"template", "metadata"}),
    "workload_group.WorkloadGroupMetadata": frozenset({"labels"}),
    # Sidecar
    "sidecar.SidecarSpec": frozenset({"workloadSelector", "ingress", "egress", "outboundTrafficPolicy"}),
    "sidecar.IstioIngressListener": frozenset({"port", "bind", "captureMode", "defaultEndpoint"}),
    "sidecar.SidecarPort": frozenset({"number", "protocol", "name"}),
    "sidecar.IstioEgressListener": frozenset({"hosts", "port", "bind", "captureMode"}),
    "sidecar.OutboundTrafficPolicy": frozenset({"mode", "egressProxy"}),
    # security (the Check server and mTLS)
    "authorization_policy.AuthorizationPolicySpec": frozenset(
        {"selector", "targetRef", "targetRefs", "rules", "action", "provider"}
    ),
    "targeting.PolicyTargetReference": frozenset({"kind", "name", "group", "namespace"}),
    "authorization_policy.Rule": frozenset({"from", "to", "when"}),
    "authorization_policy.RuleFrom": frozenset({"source"}),
    "authorization_policy.Source": frozenset(
        {
            "principals",
            "notPrincipals",
            "requestPrincipals",
            "notRequestPrincipals",
            "namespaces",
            "notNamespaces",
            "serviceAccounts",
            "notServiceAccounts",
            "ipBlocks",
            "notIpBlocks",
            "remoteIpBlocks",
            "notRemoteIpBlocks",
            "trustDomains",
            "notTrustDomains",
        }
    ),
    "authorization_policy.RuleTo": frozenset({"operation"}),
    "authorization_policy.Operation": frozenset(
        {"hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"}
    ),
    "authorization_policy.Condition": frozenset({"key", "values", "notValues"}),
    "authorization_policy.Provider": frozenset({"name"}),
    "request_authentication.RequestAuthenticationSpec": frozenset(
        {"selector", "targetRef", "targetRefs", "jwtRules"}
    ),
    "request_authentication.JWTRule": frozenset(
        {
            "issuer",
            "audiences",
            "jwksUri",
            "jwks",
            "fromHeaders",
            "fromParams",
            "fromCookies",
            "outputPayloadToHeader",
            "forwardOriginalToken",
            "outputClaimToHeaders",
            "spaceDelimitedClaims",
        }
    ),
    "request_authentication.JWTHeader": frozenset({"name", "prefix"}),
    "request_authentication.ClaimToHeader": frozenset({"header", "claim"}),
    "peer_authentication.PeerAuthenticationSpec": frozenset({"selector", "mtls", "portLevelMtls"}),
    "peer_authentication.MutualTLS": frozenset({"mode"}),
    # Kubernetes NetworkPolicy and Namespace (network RBAC)
    "network_policy.NetworkPolicySpec": frozenset({"podSelector", "ingress", "egress", "policyTypes"}),
    "label_selector.LabelSelector": frozenset({"matchLabels", "matchExpressions"}),
    "label_selector.LabelSelectorRequirement": frozenset({"key", "operator", "values"}),
    "network_policy.NetworkPolicyIngressRule": frozenset({"ports", "from"}),
    "network_policy.NetworkPolicyPort": frozenset({"protocol", "port", "endPort"}),
    "network_policy.NetworkPolicyPeer": frozenset({"podSelector", "namespaceSelector", "ipBlock"}),
    "network_policy.IPBlock": frozenset({"cidr", "except"}),
    "network_policy.NetworkPolicyEgressRule": frozenset({"ports", "to"}),
    # pilotfish.io Consumer and Plugin (Kong's model, enforced by the Check server: pilotfish/kong/)
    "consumer.ConsumerSpec": frozenset(
        {"username", "customId", "tags", "keyAuth", "basicAuth", "jwt", "acls"}
    ),
    "consumer.KeyAuthCredential": frozenset({"key", "keyHash", "id", "tags", "createdAt"}),
    "consumer.BasicAuthCredential": frozenset(
        {"username", "password", "passwordHash", "id", "tags", "createdAt"}
    ),
    "consumer.JwtCredential": frozenset(
        {"key", "algorithm", "secret", "secretSealed", "rsaPublicKey", "id", "tags", "createdAt"}
    ),
    "consumer.AclGroup": frozenset({"group", "id", "tags", "createdAt"}),
    "plugin.PluginSpec": frozenset({"plugin", "config", "enabled", "service", "route", "consumer", "tags"}),
}

_NO_AGENT = "pilotfish has no node agent to run it"
_ZONE_AWARE = Unsupported(
    "Envoy zone-aware routing needs the local cluster's membership, which pilotfish does not send; "
    "use localityLbSetting"
)
_TUNNEL = Unsupported("HTTP CONNECT tunnelling to an egress proxy is not built (no tunnel on the cluster)")
_H2_PINGS = Unsupported("HTTP/2 keepalive pings are not configured")
_PROBE = Unsupported(
    f"Istio runs WorkloadGroup probes in the workload's agent and {_NO_AGENT}; "
    "use the pilotfish.io/health-check annotation on the ServiceEntry"
)

UNSUPPORTED: Mapping[tuple[str, str], Unsupported] = {
    ("virtual_service.FaultDelay", "exponentialDelay"): Unsupported("rejected: exponential delays"),
    ("virtual_service.FaultAbort", "http2Error"): Unsupported("rejected: HTTP/2 abort fault injection"),
    ("destination_rule.TrafficPolicy", "tunnel"): _TUNNEL,
    ("destination_rule.TunnelSettings", "targetHost"): _TUNNEL,
    ("destination_rule.TunnelSettings", "targetPort"): _TUNNEL,
    ("destination_rule.TunnelSettings", "protocol"): _TUNNEL,
    ("destination_rule.TrafficPolicy", "proxyProtocol"): Unsupported(
        "the PROXY protocol upstream transport socket is not built"
    ),
    ("destination_rule.ProxyProtocol", "version"): Unsupported("the PROXY protocol is not built"),
    ("destination_rule.LoadBalancerSettings", "zoneAwareLbSetting"): _ZONE_AWARE,
    ("destination_rule.ZoneAwareLoadBalancerSetting", "enabled"): _ZONE_AWARE,
    ("destination_rule.ZoneAwareLoadBalancerSetting", "failover"): _ZONE_AWARE,
    ("destination_rule.ZoneAwareLoadBalancerSetting", "failoverPriority"): _ZONE_AWARE,
    ("destination_rule.ZoneAwareLoadBalancerSetting", "minClusterSize"): _ZONE_AWARE,
    ("destination_rule.HTTPSettings", "http2KeepAlive"): _H2_PINGS,
    ("destination_rule.HTTP2KeepAlive", "interval"): _H2_PINGS,
    ("destination_rule.HTTP2KeepAlive", "timeout"): _H2_PINGS,
    ("destination_rule.OutlierDetection", "outlierDetectionHttpErrorCodes"): Unsupported(
        "Envoy's outlier detection counts 5xx only; custom error codes are not built"
    ),
    ("destination_rule.RetryBudget", "budgetInterval"): Unsupported(
        "Envoy's retry budget has no interval: the budget is over active requests"
    ),
    ("gateway.Server", "defaultEndpoint"): Unsupported("Istio does not use it on gateways either"),
    ("gateway.Server", "bind"): Unsupported(
        "unix:// gateway servers are not built: no listener binds a socket path",
        lambda value: isinstance(value, str) and value.startswith(UNIX),
    ),
    ("gateway.Server", "name"): Unsupported("server names do not prefix stats: Envoy's are per listener"),
    ("gateway.Port", "targetPort"): Unsupported("gateway listeners bind the server port itself"),
    ("gateway.ServerTLSSettings", "insecureSkipVerify"): Unsupported(
        "client certificates are verified whenever the mode asks for them"
    ),
    ("gateway.TLSCertificate", "caCertificates"): Unsupported(
        "clients are validated against the server's caCertificates / credentialName CA"
    ),
    ("workload_entry.WorkloadEntrySpec", "network"): Unsupported(
        "multi-network meshes (east-west gateways) are not built: endpoints are reached directly"
    ),
    ("workload_group.WorkloadGroupSpec", "probe"): _PROBE,
    ("workload_group.WorkloadGroupMetadata", "annotations"): Unsupported(
        "auto-registered workloads carry labels only"
    ),
    **{
        ("workload_group.ReadinessProbe", name): _PROBE
        for name in (
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
            "httpGet",
            "tcpSocket",
            "exec",
            "grpc",
        )
    },
    **{
        (f"workload_group.{message}", name): _PROBE
        for message, names in (
            ("HTTPHealthCheckConfig", ("port", "path", "host", "scheme", "httpHeaders")),
            ("HTTPHeader", ("name", "value")),
            ("TCPHealthCheckConfig", ("port", "host")),
            ("ExecHealthCheckConfig", ("command",)),
            ("GrpcHealthCheckConfig", ("port", "service")),
        )
        for name in names
    },
    ("sidecar.SidecarSpec", "inboundConnectionPool"): Unsupported(
        "inbound clusters keep the default connection pool"
    ),
    ("sidecar.IstioIngressListener", "tls"): Unsupported(
        "a sidecar ingress listener does not terminate TLS itself (PeerAuthentication governs mTLS)"
    ),
    ("sidecar.IstioIngressListener", "connectionPool"): Unsupported(
        "inbound clusters keep the default connection pool"
    ),
    ("sidecar.IstioIngressListener", "captureMode"): Unsupported(
        "pilotfish binds each listener itself (captureMode NONE); IPTABLES capture is not available",
        lambda value: value == "IPTABLES",
    ),
    ("sidecar.IstioEgressListener", "captureMode"): Unsupported(
        "pilotfish binds each listener itself (captureMode NONE); IPTABLES capture is not available",
        lambda value: value == "IPTABLES",
    ),
    ("sidecar.IstioEgressListener", "bind"): Unsupported(
        "unix:// egress listeners are not built: the workload cannot reach these hosts through one",
        lambda value: isinstance(value, str) and value.startswith(UNIX),
    ),
    ("sidecar.SidecarPort", "targetPort"): Unsupported("the defaultEndpoint names the app port"),
    ("request_authentication.JWTRule", "timeout"): Unsupported(
        "JWKS fetches use the serve option for all rules (Istio's default 5s), not a per-rule timeout"
    ),
    ("namespace.NamespaceSpec", "finalizers"): Unsupported("pilotfish keeps no namespace lifecycle"),
}


def is_set(value: Any, default: Any) -> bool:
    return value is not None and value != default and value not in ((), {}, "")


def untranslated(spec: Any, path: Path = ()) -> Iterator[Finding]:
    """A warning for each field of ``spec`` (a message) set to something pilotfish does not
    translate, with the reason. An unsupported message field is reported once, not its parts."""
    if not isinstance(spec, Message) or not dataclasses.is_dataclass(spec):
        return
    key = message_key(type(spec))
    defaults = {f.name: f.default for f in dataclasses.fields(spec)}
    for field_spec in message_fields(type(spec)):
        value = getattr(spec, field_spec.attr)
        default = defaults.get(field_spec.attr)
        if not is_set(value, None if default is dataclasses.MISSING else default):
            continue
        where = (*path, field_spec.json)
        entry = UNSUPPORTED.get((key, field_spec.json))
        if entry is not None and (entry.applies is None or entry.applies(value)):
            yield Finding(where, UNTRANSLATED + entry.reason, "warning")
            continue
        yield from _values(value, where)


def _values(value: Any, path: Path) -> Iterator[Finding]:
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _values(item, (*path, i))
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _values(item, (*path, str(name)))
    else:
        yield from untranslated(value, path)
