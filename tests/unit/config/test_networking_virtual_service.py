"""VirtualService: Istio's doc examples decode to the right objects in every served version and
spelling; each validation rule (Istio's ``pkg/config/validation`` and the CRD's CEL) rejects or
warns at the right field path."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from typing import Any

import pytest
import yaml
from config_support import KindDocs

from pilotfish.config.networking.virtual_service import (
    Destination,
    HTTPRouteDestination,
    StringMatch,
    VirtualServiceSpec,
)

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


_DOCS = KindDocs("VirtualService", "vs", "default")
document = _DOCS.document
problems = _DOCS.problems


def parse(spec: Any, version: str = "v1") -> VirtualServiceSpec:
    return _DOCS.parse(spec, version)  # type: ignore[no-any-return]


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
    both = problems(
        "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], mirror_percent: 5, mirrorPercent: 5}]"
    )
    assert any("only one of" in p.message for p in both)


def test_a_delegate_virtual_service_has_no_hosts() -> None:
    spec = parse("http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: a}}]}]")
    assert spec.is_delegate


def cases(text: str) -> list[tuple[Any, ...]]:
    """Rule cases written as YAML: id, spec, field path, message substring, severity."""
    return [
        (c["id"], c["spec"], c["path"], c["message"], c.get("severity", "error"))
        for c in yaml.safe_load(textwrap.dedent(text))
    ]


# Each case breaks one rule; severity is "error" unless given.
RULES = cases(
    r"""
    - id: delegate-has-gateways
      path: spec.gateways
      message: must have no gateways
      spec:
        gateways: [gw]
        http:
        - route:
          - {destination: {host: a}}

    - id: host-invalid
      path: spec.hosts[0]
      message: invalid
      spec:
        hosts: [bad_host!]
        http:
        - route:
          - {destination: {host: a}}

    - id: host-star-on-mesh
      path: spec.hosts[0]
      message: wildcard host * is not allowed
      spec:
        hosts: ['*']
        http:
        - route:
          - {destination: {host: a}}

    - id: hosts-overlap
      path: spec.hosts[1]
      message: duplicate hosts
      spec:
        hosts: ['*.foo.com', a.foo.com]
        http:
        - route:
          - {destination: {host: a}}

    - id: no-routes
      path: spec
      message: http, tcp or tls must be provided
      spec: {hosts: [a]}

    - id: route-missing
      path: spec.http[0]
      message: route, redirect or directResponse
      spec:
        hosts: [a]
        http:
        - {name: x}

    - id: redirect-and-route
      path: spec.http[0].route
      message: both redirect and route
      spec:
        hosts: [a]
        http:
        - redirect: {uri: /x}
          route:
          - {destination: {host: a}}

    - id: direct-response-and-fault
      path: spec.http[0].fault
      message: both directResponse and fault
      spec:
        hosts: [a]
        http:
        - directResponse: {status: 200}
          fault: {abort: {httpStatus: 500}}

    - id: mirror-and-mirrors
      path: spec.http[0].mirrors
      message: both mirror and mirrors
      spec:
        hosts: [a]
        http:
        - route:
          - {destination: {host: a}}
          mirror: {host: b}
          mirrors:
          - {destination: {host: c}}

    - id: weights-all-zero
      path: spec.http[0].route
      message: total destination weight = 0
      spec:
        hosts: [a]
        http:
        - route:
          - {destination: {host: a, subset: x}}
          - {destination: {host: a, subset: y}}

    - id: weight-negative
      path: spec.http[0].route[0].weight
      message: < 0
      spec:
        hosts: [a]
        http:
        - route:
          - {destination: {host: a}, weight: -1}

    - id: destination-star
      path: spec.http[0].route[0].destination.host
      message: invalid destination host
      spec:
        hosts: [a]
        http:
        - route:
          - {destination: {host: '*'}}

    - id: destination-host-missing
      path: spec.http[0].route[0].destination.host
      message: required field is missing
      spec:
        hosts: [a]
        http:
        - route:
          - {destination: {subset: v1}}

    - id: destination-port
      path: spec.http[0].route[0].destination.port.number
      message: between 1 and 65535
      spec:
        hosts: [a]
        http:
        - route:
          - destination: {host: a, port: {number: 70000}}

    - id: subset-name
      path: spec.http[0].route[0].destination.subset
      message: subset name is invalid
      spec:
        hosts: [a]
        http:
        - route:
          - {destination: {host: a, subset: V_1}}

    - id: regex-lookahead
      path: spec.http[0].match[0].uri.regex
      message: look-around
      spec:
        hosts: [a]
        http:
        - match:
          - {uri: {regex: '/(?!admin).*'}}
          route:
          - {destination: {host: a}}

    - id: regex-backreference
      path: spec.http[0].match[0].headers.x-id.regex
      message: backreferences
      spec:
        hosts: [a]
        http:
        - match:
          - headers: {x-id: {regex: (a)\1}}
          route:
          - {destination: {host: a}}

    - id: regex-does-not-compile
      path: spec.http[0].match[0].authority.regex
      message: does not compile
      spec:
        hosts: [a]
        http:
        - match:
          - {authority: {regex: (a}}
          route:
          - {destination: {host: a}}

    - id: string-match-oneof
      path: spec.http[0].match[0].uri
      message: only one of exact, prefix, regex
      spec:
        hosts: [a]
        http:
        - match:
          - {uri: {exact: /a, prefix: /b}}
          route:
          - {destination: {host: a}}

    - id: empty-prefix-method
      path: spec.http[0].match[0].method.prefix
      message: should not be empty
      spec:
        hosts: [a]
        http:
        - match:
          - {method: {prefix: ''}}
          route:
          - {destination: {host: a}}

    - id: header-name
      path: spec.http[0].match[0].headers.bad header
      message: not a valid header name
      spec:
        hosts: [a]
        http:
        - match:
          - headers: {bad header: {exact: x}}
          route:
          - {destination: {host: a}}

    - id: source-namespace
      path: spec.http[0].match[0].sourceNamespace
      message: is invalid
      spec:
        hosts: [a]
        http:
        - match:
          - {sourceNamespace: Bad_NS}
          route:
          - {destination: {host: a}}

    - id: retries-negative
      path: spec.http[0].retries.attempts
      message: cannot be negative
      spec:
        hosts: [a]
        http:
        - retries: {attempts: -1}
          route:
          - {destination: {host: a}}

    - id: retries-zero-configured
      path: spec.http[0].retries.attempts
      message: attempts are set to 0
      spec:
        hosts: [a]
        http:
        - retries: {attempts: 0, retryOn: 5xx}
          route:
          - {destination: {host: a}}

    - id: per-try-timeout
      path: spec.http[0].retries.perTryTimeout
      message: greater than 1ms
      spec:
        hosts: [a]
        http:
        - retries: {attempts: 2, perTryTimeout: 500us}
          route:
          - {destination: {host: a}}

    - id: retry-on
      path: spec.http[0].retries.retryOn
      message: not a valid retryOn policy
      spec:
        hosts: [a]
        http:
        - retries: {attempts: 2, retryOn: sometimes}
          route:
          - {destination: {host: a}}

    - id: abort-percentage
      path: spec.http[0].fault.abort.percentage
      message: range [0.0001, 100.0]
      spec:
        hosts: [a]
        http:
        - fault:
            abort: {httpStatus: 503, percentage: {value: 150}}
          route:
          - {destination: {host: a}}

    - id: abort-status
      path: spec.http[0].fault.abort.httpStatus
      message: 200-599
      spec:
        hosts: [a]
        http:
        - fault: {abort: {httpStatus: 700}}
          route:
          - {destination: {host: a}}

    - id: abort-without-status
      path: spec.http[0].fault.abort
      message: needs httpStatus or grpcStatus
      spec:
        hosts: [a]
        http:
        - fault:
            abort: {percentage: {value: 1}}
          route:
          - {destination: {host: a}}

    - id: abort-grpc-status
      path: spec.http[0].fault.abort.grpcStatus
      message: not supported
      spec:
        hosts: [a]
        http:
        - fault: {abort: {grpcStatus: NOPE}}
          route:
          - {destination: {host: a}}

    - id: abort-oneof
      path: spec.http[0].fault.abort
      message: only one of
      spec:
        hosts: [a]
        http:
        - fault: {abort: {httpStatus: 500, grpcStatus: INTERNAL}}
          route:
          - {destination: {host: a}}

    - id: delay-without-fixed
      path: spec.http[0].fault.delay
      message: needs fixedDelay
      spec:
        hosts: [a]
        http:
        - fault:
            delay: {percentage: {value: 5}}
          route:
          - {destination: {host: a}}

    - id: fault-empty
      path: spec.http[0].fault
      message: abort and/or a delay
      spec:
        hosts: [a]
        http:
        - fault: {}
          route:
          - {destination: {host: a}}

    - id: mirror-percentage
      path: spec.http[0].mirrorPercentage
      message: within 0..100
      spec:
        hosts: [a]
        http:
        - mirror: {host: b}
          mirrorPercentage: {value: 101}
          route:
          - {destination: {host: a}}

    - id: mirror-percent-deprecated
      path: spec.http[0].mirrorPercent
      message: max value of 100
      spec:
        hosts: [a]
        http:
        - mirror: {host: b}
          mirrorPercent: 150
          route:
          - {destination: {host: a}}

    - id: cors-origin-empty
      path: spec.http[0].corsPolicy.allowOrigins[0]
      message: needs a non-empty
      spec:
        hosts: [a]
        http:
        - corsPolicy:
            allowOrigins:
            - {exact: ''}
          route:
          - {destination: {host: a}}

    - id: cors-origin-regex
      path: spec.http[0].corsPolicy.allowOrigins[0].regex
      message: look-around
      spec:
        hosts: [a]
        http:
        - corsPolicy:
            allowOrigins:
            - {regex: '(?<=x)y'}
          route:
          - {destination: {host: a}}

    - id: cors-method
      path: spec.http[0].corsPolicy.allowMethods[0]
      message: not a supported HTTP method
      spec:
        hosts: [a]
        http:
        - corsPolicy: {allowMethods: [FETCH]}
          route:
          - {destination: {host: a}}

    - id: cors-max-age
      path: spec.http[0].corsPolicy.maxAge
      message: seconds precision
      spec:
        hosts: [a]
        http:
        - corsPolicy: {maxAge: 1500ms}
          route:
          - {destination: {host: a}}

    - id: gateway-name
      path: spec.gateways[0]
      message: invalid value for gateway name
      spec:
        hosts: [a]
        gateways: [ns/Bad_Name]
        http:
        - route:
          - {destination: {host: a}}

    - id: gateway-legacy-name
      path: spec.gateways[0]
      message: legacy gatewayName format
      severity: warning
      spec:
        hosts: [a]
        gateways: [gw.istio-system]
        http:
        - route:
          - {destination: {host: a}}

    - id: match-gateway-name
      path: spec.http[0].match[0].gateways[0]
      message: cannot be empty
      spec:
        hosts: [a]
        http:
        - match:
          - {gateways: [/gw]}
          route:
          - {destination: {host: a}}

    - id: root-delegate-with-route
      path: spec.http[0].route
      message: must not specify route
      spec:
        hosts: [a]
        http:
        - delegate: {name: d}
          route:
          - {destination: {host: a}}

    - id: delegate-in-delegate
      path: spec.http[0].delegate
      message: cannot contain delegate
      spec:
        http:
        - {delegate: {name: d}}

    - id: delegate-without-name
      path: spec.http[0].delegate.name
      message: needs the name
      spec:
        hosts: [a]
        http:
        - {delegate: {namespace: ns}}

    - id: redirect-empty
      path: spec.http[0].redirect
      message: must specify uri, authority, scheme, or port
      spec:
        hosts: [a]
        http:
        - {redirect: {redirectCode: 302}}

    - id: redirect-code
      path: spec.http[0].redirect.redirectCode
      message: must be 3xx
      spec:
        hosts: [a]
        http:
        - {redirect: {uri: /x, redirectCode: 200}}

    - id: redirect-scheme
      path: spec.http[0].redirect.scheme
      message: must be "http" or "https"
      spec:
        hosts: [a]
        http:
        - {redirect: {scheme: ftp}}

    - id: redirect-port-oneof
      path: spec.http[0].redirect
      message: only one of port, derivePort
      spec:
        hosts: [a]
        http:
        - {redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}}

    - id: direct-response-status
      path: spec.http[0].directResponse.status
      message: 200-599
      spec:
        hosts: [a]
        http:
        - {directResponse: {status: 700}}

    - id: direct-response-bytes
      path: spec.http[0].directResponse.body.bytes
      message: base64
      spec:
        hosts: [a]
        http:
        - directResponse: {status: 200, body: {bytes: '***'}}

    - id: direct-response-status-required
      path: spec.http[0].directResponse.status
      message: required field is missing
      spec:
        hosts: [a]
        http:
        - directResponse: {body: {string: x}}

    - id: rewrite-both-uris
      path: spec.http[0].rewrite
      message: only contain one of uri or uriRegexRewrite
      spec:
        hosts: [a]
        http:
        - rewrite: {uri: /x, uriRegexRewrite: {match: a, rewrite: b}}
          route:
          - {destination: {host: a}}

    - id: rewrite-empty
      path: spec.http[0].rewrite
      message: at least one of
      spec:
        hosts: [a]
        http:
        - rewrite: {}
          route:
          - {destination: {host: a}}

    - id: rewrite-regex-half
      path: spec.http[0].rewrite.uriRegexRewrite
      message: requires both match and rewrite
      spec:
        hosts: [a]
        http:
        - rewrite: {uriRegexRewrite: {match: ^/a}}
          route:
          - {destination: {host: a}}

    - id: authority-twice
      path: spec.http[0].headers
      message: authority header cannot be set multiple times
      spec:
        hosts: [a]
        http:
        - rewrite: {authority: b}
          headers:
            request: {set: {host: c}}
          route:
          - {destination: {host: a}}

    - id: request-pseudo-header
      path: spec.http[0].headers.request.set.:path
      message: cannot have ':' prefix
      spec:
        hosts: [a]
        http:
        - headers:
            request: {set: {':path': /x}}
          route:
          - {destination: {host: a}}

    - id: response-host-header
      path: spec.http[0].route[0].headers.response.add.Host
      message: cannot set Host header
      spec:
        hosts: [a]
        http:
        - route:
          - destination: {host: a}
            headers:
              response: {add: {Host: x}}

    - id: header-value
      path: spec.http[0].headers.response.set.x-a
      message: '%VARIABLE%'
      spec:
        hosts: [a]
        http:
        - headers:
            response: {set: {x-a: abc%123}}
          route:
          - {destination: {host: a}}

    - id: jwt-claim-on-mesh
      path: spec.http[0].match[0].headers[@request.auth.claims.group]
      message: only supported for gateways
      spec:
        hosts: [a]
        http:
        - match:
          - headers: {'@request.auth.claims.group': {exact: x}}
          route:
          - {destination: {host: a}}

    - id: timeout-zero
      path: spec.http[0].timeout
      message: greater than 1ms
      spec:
        hosts: [a]
        http:
        - timeout: 0s
          route:
          - {destination: {host: a}}

    - id: timeout-not-a-duration
      path: spec.http[0].timeout
      message: invalid duration
      spec:
        hosts: [a]
        http:
        - timeout: soon
          route:
          - {destination: {host: a}}

    - id: tls-without-sni
      path: spec.tls[0].match[0].sniHosts
      message: at least one SNI host
      spec:
        hosts: [a.com]
        tls:
        - match:
          - {sniHosts: []}
          route:
          - {destination: {host: a}}

    - id: tls-match-required
      path: spec.tls[0].match
      message: required field is missing
      spec:
        hosts: [a.com]
        tls:
        - route:
          - {destination: {host: a}}

    - id: tls-sni-not-a-host
      path: spec.tls[0].match[0].sniHosts[0]
      message: not a compatible subset
      spec:
        hosts: [a.com]
        tls:
        - match:
          - {sniHosts: [b.com]}
          route:
          - {destination: {host: a}}

    - id: tls-without-route
      path: spec.tls[0].route
      message: TLS route is required
      spec:
        hosts: [a.com]
        tls:
        - match:
          - {sniHosts: [a.com]}

    - id: tcp-without-route
      path: spec.tcp[0].route
      message: TCP route is required
      spec:
        hosts: [a]
        tcp:
        - match:
          - {port: 80}

    - id: tcp-subnet
      path: spec.tcp[0].match[0].destinationSubnets[0]
      message: not a valid CIDR
      spec:
        hosts: [a]
        tcp:
        - match:
          - {destinationSubnets: [10.0.0.0/40]}
          route:
          - {destination: {host: a}}

    - id: tcp-source-labels
      path: spec.tcp[0].match[0].sourceLabels.bad key!
      message: invalid label key
      spec:
        hosts: [a]
        tcp:
        - match:
          - {sourceLabels: {bad key!: x}}
          route:
          - {destination: {host: a}}

    - id: export-to-duplicate
      path: spec.exportTo[1]
      message: duplicate entries
      spec:
        hosts: [a]
        exportTo: [., default]
        http:
        - route:
          - {destination: {host: a}}

    - id: export-to-star-and-more
      path: spec.exportTo
      message: both public (*) and non-public
      spec:
        hosts: [a]
        exportTo: ['*', ns1]
        http:
        - route:
          - {destination: {host: a}}

    - id: unreachable-catch-all
      path: spec.http[1]
      message: only the last rule can have no matches
      severity: warning
      spec:
        hosts: [a]
        http:
        - route:
          - {destination: {host: a}}
        - route:
          - {destination: {host: b}}

    - id: duplicate-match
      path: spec.http[1]
      message: all matches used by prior rules
      severity: warning
      spec:
        hosts: [a]
        http:
        - match:
          - {uri: {exact: /a}}
          route:
          - {destination: {host: a}}
        - match:
          - {name: again, uri: {exact: /a}}
          route:
          - {destination: {host: b}}

    - id: unknown-field
      path: spec.http[0].routes
      message: unknown field
      spec:
        hosts: [a]
        http:
        - routes:
          - {destination: {host: a}}
    """
)


@pytest.mark.parametrize(
    ("spec", "path", "message", "severity"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
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
        "hosts: [a]\nhttp: [{route: [{destination: {host: a, subset: x}, weight: 1}, "
        "{destination: {host: a, subset: y}, weight: 3}]}]",
        # RE2-only syntax is accepted although Python spells it differently
        "hosts: [a]\nhttp: [{match: [{uri: {regex: '(?<ver>v[0-9])/.*\\z'}}], "
        "route: [{destination: {host: a}}]}]",
        # an empty URI prefix matches everything and is allowed (not for other string matches)
        "hosts: [a]\nhttp: [{match: [{uri: {prefix: ''}}], route: [{destination: {host: a}}]}]",
        # JWT claim routing on a gateway, withoutHeaders' "*" regex meaning "present"
        "hosts: [a.com]\ngateways: [gw]\n"
        "http: [{match: [{headers: {'@request.auth.claims.group': {exact: x}}, "
        "withoutHeaders: {x-debug: {regex: '*'}}}], route: [{destination: {host: a}}]}]",
        # an IP address as a host; the authority set once through headers only
        "hosts: [10.0.0.1]\n"
        "http: [{headers: {request: {set: {':authority': b}}}, route: [{destination: {host: a}}]}]",
        # a delegate VirtualService and the root that delegates to it
        "http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: a}}]}]",
        "hosts: [a]\nhttp: [{match: [{uri: {prefix: /a}}], delegate: {name: d, namespace: ns}}]",
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(spec: str) -> None:
    assert problems(spec) == []
