"""VirtualService: Istio's doc examples decode to the right objects in every served version and
spelling; each validation rule (Istio's ``pkg/config/validation`` and the CRD's CEL) rejects or
warns at the right field path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from pilotfish.config.loader import parse_resource
from pilotfish.config.networking.virtual_service import (
    Destination,
    HTTPRouteDestination,
    StringMatch,
    VirtualServiceSpec,
)
from pilotfish.errors import ConfigError, Problem

VERSIONS = ("v1alpha3", "v1beta1", "v1")

# Istio docs, "Traffic Management → Request Routing": header match + weighted split.
REVIEWS = """
hosts: [reviews]
http:
- name: jason
  match:
  - headers:
      end-user: {exact: jason}
  route:
  - destination: {host: reviews, subset: v2}
- route:
  - destination: {host: reviews, subset: v1}
    weight: 75
  - destination: {host: reviews, subset: v3}
    weight: 25
"""

# The same in snake_case (Istio's JSON parser accepts proto field names) with more fields.
RATINGS_CAMEL = """
hosts: [ratings.prod.svc.cluster.local]
http:
- match:
  - uri: {prefix: /ratings}
    ignoreUriCase: true
    queryParams: {v: {regex: "^[0-9]+$"}}
  retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,503"}
  timeout: 10s
  fault:
    delay: {fixedDelay: 5s, percentage: {value: 0.1}}
    abort: {httpStatus: 400, percentage: {value: 0.1}}
  corsPolicy: {allowOrigins: [{exact: "https://example.com"}], allowMethods: [GET, POST], maxAge: 24h}
  mirrorPercentage: {value: 10}
  mirror: {host: ratings-shadow, port: {number: 9080}}
  route:
  - destination: {host: ratings.prod.svc.cluster.local, subset: v1}
    headers: {request: {set: {x-from: pilotfish}}, response: {remove: [x-internal]}}
"""
RATINGS_SNAKE = """
hosts: [ratings.prod.svc.cluster.local]
http:
- match:
  - uri: {prefix: /ratings}
    ignore_uri_case: true
    query_params: {v: {regex: "^[0-9]+$"}}
  retries: {attempts: 3, per_try_timeout: 2s, retry_on: "gateway-error,connect-failure,503"}
  timeout: 10s
  fault:
    delay: {fixed_delay: 5s, percentage: {value: 0.1}}
    abort: {http_status: 400, percentage: {value: 0.1}}
  cors_policy: {allow_origins: [{exact: "https://example.com"}], allow_methods: [GET, POST], max_age: 24h}
  mirror_percentage: {value: 10}
  mirror: {host: ratings-shadow, port: {number: 9080}}
  route:
  - destination: {host: ratings.prod.svc.cluster.local, subset: v1}
    headers: {request: {set: {x-from: pilotfish}}, response: {remove: [x-internal]}}
"""

# Istio docs, "Gateway" + TLS passthrough and TCP routing.
GATEWAY_BOUND = """
hosts: ["*"]
gateways: [istio-system/public-gateway]
http:
- match: [{uri: {exact: /login}}]
  redirect: {uri: /signin, redirectCode: 301}
- directResponse: {status: 503, body: {string: "unavailable"}}
"""
TLS_TCP = """
hosts: ["*.bookinfo.com"]
gateways: [mygateway]
tls:
- match:
  - port: 443
    sniHosts: [login.bookinfo.com]
  route:
  - destination: {host: login.prod.svc.cluster.local}
tcp:
- match: [{port: 27017, destinationSubnets: [10.0.0.0/8]}]
  route:
  - destination: {host: mongo.backup.svc.cluster.local, port: {number: 5555}}
"""


def document(spec: Any, version: str = "v1", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "VirtualService",
        "metadata": {"name": "vs", "namespace": namespace},
        "spec": yaml.safe_load(spec) if isinstance(spec, str) else spec,
    }


def parse(spec: Any, version: str = "v1") -> VirtualServiceSpec:
    resource, warnings = parse_resource(document(spec, version), "<test>", 1)
    assert not warnings, warnings
    return resource.spec  # type: ignore[no-any-return]


def problems(spec: Any) -> list[Problem]:
    try:
        _, warnings = parse_resource(document(spec), "<test>", 1)
    except ConfigError as exc:
        return list(exc.problems)
    return warnings


@pytest.mark.parametrize("version", VERSIONS)
def test_bookinfo_reviews_decodes_to_a_header_match_and_a_weighted_split(version: str) -> None:
    spec = parse(REVIEWS, version)
    assert spec.hosts == ("reviews",)
    jason, default = spec.http
    assert jason.name == "jason"
    assert jason.match[0].headers == {"end-user": StringMatch(exact="jason")}
    assert jason.route == (HTTPRouteDestination(Destination("reviews", "v2")),)
    assert [(r.destination.subset, r.weight) for r in default.route] == [("v1", 75), ("v3", 25)]
    assert not default.match


def test_camel_and_snake_case_spellings_decode_to_the_same_object() -> None:
    camel, snake = parse(RATINGS_CAMEL), parse(RATINGS_SNAKE)
    assert camel == snake
    route = camel.http[0]
    assert route.retries is not None and route.retries.per_try_timeout == timedelta(seconds=2)
    assert route.fault is not None and route.fault.abort is not None
    assert route.fault.abort.http_status == 400
    assert route.cors_policy is not None and route.cors_policy.max_age == timedelta(hours=24)
    assert route.match[0].query_params["v"].regex == "^[0-9]+$"
    assert route.mirror is not None and route.mirror.port is not None and route.mirror.port.number == 9080


def test_gateway_bound_redirect_direct_response_tls_and_tcp_routes_decode() -> None:
    spec = parse(GATEWAY_BOUND)
    assert spec.applies_to_gateway
    assert spec.http[0].redirect is not None and spec.http[0].redirect.redirect_code == 301
    assert spec.http[1].direct_response is not None and spec.http[1].direct_response.status == 503
    tls_tcp = parse(TLS_TCP)
    assert tls_tcp.tls[0].match[0].sni_hosts == ("login.bookinfo.com",)
    assert tls_tcp.tcp[0].route[0].destination.port is not None


def test_both_spellings_of_the_deprecated_mirror_percent_decode() -> None:
    base = "hosts: [a]\nhttp: [{mirror: {host: b}, route: [{destination: {host: a}}], %s: 5}]"
    for name in ("mirror_percent", "mirrorPercent"):
        found = problems(base % name)
        assert [p.severity for p in found] == ["warning"], found
    both = problems("hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror_percent: 5, mirrorPercent: 5}]")
    assert any("only one of" in p.message for p in both)


def test_a_delegate_virtual_service_has_no_hosts() -> None:
    spec = parse("http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: a}}]}]")
    assert spec.is_delegate


# (case id, spec, field path, message substring, severity)
RULES: list[tuple[str, str, str, str, str]] = [
    ("delegate-has-gateways", "gateways: [gw]\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.gateways", "must have no gateways", "error"),
    ("host-invalid", "hosts: [bad_host!]\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.hosts[0]", "invalid", "error"),
    ("host-star-on-mesh", "hosts: ['*']\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.hosts[0]", "wildcard host * is not allowed", "error"),
    ("hosts-overlap", "hosts: ['*.foo.com', a.foo.com]\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.hosts[1]", "duplicate hosts", "error"),
    ("no-routes", "hosts: [a]", "spec", "http, tcp or tls must be provided", "error"),
    ("route-missing", "hosts: [a]\nhttp: [{name: x}]", "spec.http[0]", "route, redirect or directResponse", "error"),
    ("redirect-and-route", "hosts: [a]\nhttp: [{redirect: {uri: /x}, route: [{destination: {host: a}}]}]",
     "spec.http[0].route", "both redirect and route", "error"),
    ("direct-response-and-fault",
     "hosts: [a]\nhttp: [{directResponse: {status: 200}, fault: {abort: {httpStatus: 500}}}]",
     "spec.http[0].fault", "both directResponse and fault", "error"),
    ("mirror-and-mirrors",
     "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror: {host: b}, mirrors: [{destination: {host: c}}]}]",
     "spec.http[0].mirrors", "both mirror and mirrors", "error"),
    ("weights-all-zero",
     "hosts: [a]\nhttp: [{route: [{destination: {host: a, subset: x}}, {destination: {host: a, subset: y}}]}]",
     "spec.http[0].route", "total destination weight = 0", "error"),
    ("weight-negative", "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: -1}]}]",
     "spec.http[0].route[0].weight", "< 0", "error"),
    ("destination-star", "hosts: [a]\nhttp: [{route: [{destination: {host: '*'}}]}]",
     "spec.http[0].route[0].destination.host", "invalid destination host", "error"),
    ("destination-host-missing", "hosts: [a]\nhttp: [{route: [{destination: {subset: v1}}]}]",
     "spec.http[0].route[0].destination.host", "required field is missing", "error"),
    ("destination-port", "hosts: [a]\nhttp: [{route: [{destination: {host: a, port: {number: 70000}}}]}]",
     "spec.http[0].route[0].destination.port.number", "between 1 and 65535", "error"),
    ("subset-name", "hosts: [a]\nhttp: [{route: [{destination: {host: a, subset: V_1}}]}]",
     "spec.http[0].route[0].destination.subset", "subset name is invalid", "error"),
    ("regex-lookahead", "hosts: [a]\nhttp: [{match: [{uri: {regex: '/(?!admin).*'}}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].uri.regex", "look-around", "error"),
    ("regex-backreference",
     "hosts: [a]\nhttp: [{match: [{headers: {x-id: {regex: '(a)\\1'}}}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].headers.x-id.regex", "backreferences", "error"),
    ("regex-does-not-compile", "hosts: [a]\nhttp: [{match: [{authority: {regex: '(a'}}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].authority.regex", "does not compile", "error"),
    ("string-match-oneof",
     "hosts: [a]\nhttp: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].uri", "only one of exact, prefix, regex", "error"),
    ("empty-prefix-method", "hosts: [a]\nhttp: [{match: [{method: {prefix: ''}}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].method.prefix", "should not be empty", "error"),
    ("header-name", "hosts: [a]\nhttp: [{match: [{headers: {'bad header': {exact: x}}}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].headers.bad header", "not a valid header name", "error"),
    ("source-namespace", "hosts: [a]\nhttp: [{match: [{sourceNamespace: Bad_NS}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].sourceNamespace", "is invalid", "error"),
    ("retries-negative", "hosts: [a]\nhttp: [{retries: {attempts: -1}, route: [{destination: {host: a}}]}]",
     "spec.http[0].retries.attempts", "cannot be negative", "error"),
    ("retries-zero-configured", "hosts: [a]\nhttp: [{retries: {attempts: 0, retryOn: 5xx}, route: [{destination: {host: a}}]}]",
     "spec.http[0].retries.attempts", "attempts are set to 0", "error"),
    ("per-try-timeout", "hosts: [a]\nhttp: [{retries: {attempts: 2, perTryTimeout: 500us}, route: [{destination: {host: a}}]}]",
     "spec.http[0].retries.perTryTimeout", "greater than 1ms", "error"),
    ("retry-on", "hosts: [a]\nhttp: [{retries: {attempts: 2, retryOn: 'sometimes'}, route: [{destination: {host: a}}]}]",
     "spec.http[0].retries.retryOn", "not a valid retryOn policy", "error"),
    ("abort-percentage", "hosts: [a]\nhttp: [{fault: {abort: {httpStatus: 503, percentage: {value: 150}}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].fault.abort.percentage", "range [0.0001, 100.0]", "error"),
    ("abort-status", "hosts: [a]\nhttp: [{fault: {abort: {httpStatus: 700}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].fault.abort.httpStatus", "200-599", "error"),
    ("abort-without-status", "hosts: [a]\nhttp: [{fault: {abort: {percentage: {value: 1}}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].fault.abort", "needs httpStatus or grpcStatus", "error"),
    ("abort-grpc-status", "hosts: [a]\nhttp: [{fault: {abort: {grpcStatus: NOPE}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].fault.abort.grpcStatus", "not supported", "error"),
    ("abort-oneof", "hosts: [a]\nhttp: [{fault: {abort: {httpStatus: 500, grpcStatus: INTERNAL}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].fault.abort", "only one of", "error"),
    ("delay-without-fixed", "hosts: [a]\nhttp: [{fault: {delay: {percentage: {value: 5}}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].fault.delay", "needs fixedDelay", "error"),
    ("fault-empty", "hosts: [a]\nhttp: [{fault: {}, route: [{destination: {host: a}}]}]",
     "spec.http[0].fault", "abort and/or a delay", "error"),
    ("mirror-percentage", "hosts: [a]\nhttp: [{mirror: {host: b}, mirrorPercentage: {value: 101}, route: [{destination: {host: a}}]}]",
     "spec.http[0].mirrorPercentage", "within 0..100", "error"),
    ("mirror-percent-deprecated", "hosts: [a]\nhttp: [{mirror: {host: b}, mirrorPercent: 150, route: [{destination: {host: a}}]}]",
     "spec.http[0].mirrorPercent", "max value of 100", "error"),
    ("cors-origin-empty", "hosts: [a]\nhttp: [{corsPolicy: {allowOrigins: [{exact: ''}]}, route: [{destination: {host: a}}]}]",
     "spec.http[0].corsPolicy.allowOrigins[0]", "needs a non-empty", "error"),
    ("cors-origin-regex", "hosts: [a]\nhttp: [{corsPolicy: {allowOrigins: [{regex: '(?<=x)y'}]}, route: [{destination: {host: a}}]}]",
     "spec.http[0].corsPolicy.allowOrigins[0].regex", "look-around", "error"),
    ("cors-method", "hosts: [a]\nhttp: [{corsPolicy: {allowMethods: [FETCH]}, route: [{destination: {host: a}}]}]",
     "spec.http[0].corsPolicy.allowMethods[0]", "not a supported HTTP method", "error"),
    ("cors-max-age", "hosts: [a]\nhttp: [{corsPolicy: {maxAge: 1500ms}, route: [{destination: {host: a}}]}]",
     "spec.http[0].corsPolicy.maxAge", "seconds precision", "error"),
    ("gateway-name", "hosts: [a]\ngateways: [ns/Bad_Name]\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.gateways[0]", "invalid value for gateway name", "error"),
    ("gateway-legacy-name", "hosts: [a]\ngateways: [gw.istio-system]\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.gateways[0]", "legacy gatewayName format", "warning"),
    ("match-gateway-name", "hosts: [a]\nhttp: [{match: [{gateways: [/gw]}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].gateways[0]", "cannot be empty", "error"),
    ("root-delegate-with-route", "hosts: [a]\nhttp: [{delegate: {name: d}, route: [{destination: {host: a}}]}]",
     "spec.http[0].route", "must not specify route", "error"),
    ("delegate-in-delegate", "http: [{delegate: {name: d}}]",
     "spec.http[0].delegate", "cannot contain delegate", "error"),
    ("delegate-without-name", "hosts: [a]\nhttp: [{delegate: {namespace: ns}}]",
     "spec.http[0].delegate.name", "needs the name", "error"),
    ("redirect-empty", "hosts: [a]\nhttp: [{redirect: {redirectCode: 302}}]",
     "spec.http[0].redirect", "must specify uri, authority, scheme, or port", "error"),
    ("redirect-code", "hosts: [a]\nhttp: [{redirect: {uri: /x, redirectCode: 200}}]",
     "spec.http[0].redirect.redirectCode", "must be 3xx", "error"),
    ("redirect-scheme", "hosts: [a]\nhttp: [{redirect: {scheme: ftp}}]",
     "spec.http[0].redirect.scheme", 'must be "http" or "https"', "error"),
    ("redirect-port-oneof", "hosts: [a]\nhttp: [{redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}}]",
     "spec.http[0].redirect", "only one of port, derivePort", "error"),
    ("direct-response-status", "hosts: [a]\nhttp: [{directResponse: {status: 700}}]",
     "spec.http[0].directResponse.status", "200-599", "error"),
    ("direct-response-bytes", "hosts: [a]\nhttp: [{directResponse: {status: 200, body: {bytes: '***'}}}]",
     "spec.http[0].directResponse.body.bytes", "base64", "error"),
    ("direct-response-status-required", "hosts: [a]\nhttp: [{directResponse: {body: {string: x}}}]",
     "spec.http[0].directResponse.status", "required field is missing", "error"),
    ("rewrite-both-uris", "hosts: [a]\nhttp: [{rewrite: {uri: /x, uriRegexRewrite: {match: a, rewrite: b}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].rewrite", "only contain one of uri or uriRegexRewrite", "error"),
    ("rewrite-empty", "hosts: [a]\nhttp: [{rewrite: {}, route: [{destination: {host: a}}]}]",
     "spec.http[0].rewrite", "at least one of", "error"),
    ("rewrite-regex-half", "hosts: [a]\nhttp: [{rewrite: {uriRegexRewrite: {match: '^/a'}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].rewrite.uriRegexRewrite", "requires both match and rewrite", "error"),
    ("authority-twice", "hosts: [a]\nhttp: [{rewrite: {authority: b}, headers: {request: {set: {host: c}}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].headers", "authority header cannot be set multiple times", "error"),
    ("request-pseudo-header", "hosts: [a]\nhttp: [{headers: {request: {set: {':path': /x}}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].headers.request.set.:path", "cannot have ':' prefix", "error"),
    ("response-host-header", "hosts: [a]\nhttp: [{route: [{destination: {host: a}, headers: {response: {add: {Host: x}}}}]}]",
     "spec.http[0].route[0].headers.response.add.Host", "cannot set Host header", "error"),
    ("header-value", "hosts: [a]\nhttp: [{headers: {response: {set: {x-a: 'abc%123'}}}, route: [{destination: {host: a}}]}]",
     "spec.http[0].headers.response.set.x-a", "%VARIABLE%", "error"),
    ("jwt-claim-on-mesh", "hosts: [a]\nhttp: [{match: [{headers: {'@request.auth.claims.group': {exact: x}}}], route: [{destination: {host: a}}]}]",
     "spec.http[0].match[0].headers[@request.auth.claims.group]", "only supported for gateways", "error"),
    ("timeout-zero", "hosts: [a]\nhttp: [{timeout: 0s, route: [{destination: {host: a}}]}]",
     "spec.http[0].timeout", "greater than 1ms", "error"),
    ("timeout-not-a-duration", "hosts: [a]\nhttp: [{timeout: soon, route: [{destination: {host: a}}]}]",
     "spec.http[0].timeout", "invalid duration", "error"),
    ("tls-without-sni", "hosts: [a.com]\ntls: [{match: [{sniHosts: []}], route: [{destination: {host: a}}]}]",
     "spec.tls[0].match[0].sniHosts", "at least one SNI host", "error"),
    ("tls-match-required", "hosts: [a.com]\ntls: [{route: [{destination: {host: a}}]}]",
     "spec.tls[0].match", "required field is missing", "error"),
    ("tls-sni-not-a-host", "hosts: [a.com]\ntls: [{match: [{sniHosts: [b.com]}], route: [{destination: {host: a}}]}]",
     "spec.tls[0].match[0].sniHosts[0]", "not a compatible subset", "error"),
    ("tls-without-route", "hosts: [a.com]\ntls: [{match: [{sniHosts: [a.com]}]}]",
     "spec.tls[0].route", "TLS route is required", "error"),
    ("tcp-without-route", "hosts: [a]\ntcp: [{match: [{port: 80}]}]", "spec.tcp[0].route", "TCP route is required", "error"),
    ("tcp-subnet", "hosts: [a]\ntcp: [{match: [{destinationSubnets: [10.0.0.0/40]}], route: [{destination: {host: a}}]}]",
     "spec.tcp[0].match[0].destinationSubnets[0]", "not a valid CIDR", "error"),
    ("tcp-source-labels", "hosts: [a]\ntcp: [{match: [{sourceLabels: {'bad key!': x}}], route: [{destination: {host: a}}]}]",
     "spec.tcp[0].match[0].sourceLabels.bad key!", "invalid label key", "error"),
    ("export-to-duplicate", "hosts: [a]\nexportTo: [., default]\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.exportTo[1]", "duplicate entries", "error"),
    ("export-to-star-and-more", "hosts: [a]\nexportTo: ['*', ns1]\nhttp: [{route: [{destination: {host: a}}]}]",
     "spec.exportTo", "both public (*) and non-public", "error"),
    ("unreachable-catch-all", "hosts: [a]\nhttp: [{route: [{destination: {host: a}}]}, {route: [{destination: {host: b}}]}]",
     "spec.http[1]", "only the last rule can have no matches", "warning"),
    ("duplicate-match", "hosts: [a]\nhttp: [{match: [{uri: {exact: /a}}], route: [{destination: {host: a}}]}, "
     "{match: [{name: again, uri: {exact: /a}}], route: [{destination: {host: b}}]}]",
     "spec.http[1]", "all matches used by prior rules", "warning"),
    ("unknown-field", "hosts: [a]\nhttp: [{routes: [{destination: {host: a}}]}]",
     "spec.http[0].routes", "unknown field", "error"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "path", "message", "severity"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule_is_enforced_at_its_field_path(spec: str, path: str, message: str, severity: str) -> None:
    found = problems(spec)
    hit = [p for p in found if p.path == path and message.lower() in p.message.lower()]
    assert hit, f"wanted {path}: ...{message}...; got " + "; ".join(f"{p.path}: {p.message}" for p in found)
    assert all(p.severity == severity for p in hit)


@pytest.mark.parametrize(
    "spec",
    [
        REVIEWS,
        RATINGS_CAMEL,
        GATEWAY_BOUND,
        TLS_TCP,
        # weights need not sum to 100: Envoy normalises them (Istio only forbids an all-zero split)
        "hosts: [a]\nhttp: [{route: [{destination: {host: a, subset: x}, weight: 1}, {destination: {host: a, subset: y}, weight: 3}]}]",
        # RE2-only syntax is accepted although Python spells it differently
        "hosts: [a]\nhttp: [{match: [{uri: {regex: '(?<ver>v[0-9])/.*\\z'}}], route: [{destination: {host: a}}]}]",
        # an empty URI prefix matches everything and is allowed (not for other string matches)
        "hosts: [a]\nhttp: [{match: [{uri: {prefix: ''}}], route: [{destination: {host: a}}]}]",
        # JWT claim routing on a gateway, withoutHeaders' "*" regex meaning "present"
        "hosts: [a.com]\ngateways: [gw]\nhttp: [{match: [{headers: {'@request.auth.claims.group': {exact: x}}, "
        "withoutHeaders: {x-debug: {regex: '*'}}}], route: [{destination: {host: a}}]}]",
        # an IP address as a host; the authority set once through headers only
        "hosts: [10.0.0.1]\nhttp: [{headers: {request: {set: {':authority': b}}}, route: [{destination: {host: a}}]}]",
        # a delegate VirtualService and the root that delegates to it
        "http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: a}}]}]",
        "hosts: [a]\nhttp: [{match: [{uri: {prefix: /a}}], delegate: {name: d, namespace: ns}}]",
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(spec: str) -> None:
    assert problems(spec) == []
