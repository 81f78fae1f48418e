"""mTLS translation (``mtls.py``, ``gateway_tls.py``): PeerAuthentication → inbound filter chains,
auto mTLS and ``trafficPolicy.tls`` → outbound transport sockets, ``tlsMode`` endpoint metadata,
HTTPS gateway servers → SNI-matched chains with SDS certificates and their own routes."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from listeners_builders import by_name, client, gateway
from translate_builders import destination_rule, service_entry, snapshot, workload

from pilotfish.config.mesh import MeshConfig
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate.clusters import translate_clusters
from pilotfish.xds.translate.endpoints import translate_endpoints
from pilotfish.xds.translate.gateway_tls import credential_names, https_servers
from pilotfish.xds.translate.listeners import route_names, translate_listeners
from pilotfish.xds.translate.mtls import peer_authn, secure_inbound
from pilotfish.xds.translate.routes import translate_routes

RATINGS = "ratings.prod.svc.cluster.local"
CLUSTER = f"outbound|9080||{RATINGS}"
SELECTED = service_entry(RATINGS, extra="  workloadSelector: {labels: {app: ratings}}")
SIDECAR_LABELS = {"app": "ratings", "security.istio.io/tlsMode": "istio"}
WITH_SIDECAR = workload("ratings-a", "prod", "10.0.0.1", SIDECAR_LABELS, serviceAccount="ratings")
WITHOUT_SIDECAR = workload("ratings-b", "prod", "10.0.0.2", {"app": "ratings"}, serviceAccount="legacy")


def peer_authentication(name: str, namespace: str, body: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec: {body}
"""


# ---- PeerAuthentication composition ---------------------------------------------------------------

MESH_STRICT = peer_authentication("mesh", "istio-system", "{mtls: {mode: STRICT}}")
NS_UNSET = peer_authentication("ns", "prod", "{mtls: {mode: UNSET}}")
NS_DISABLE = peer_authentication("ns", "prod", "{mtls: {mode: DISABLE}}")
WORKLOAD_PERMISSIVE = peer_authentication(
    "w", "prod", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: PERMISSIVE}}"
)
ROOT_SELECTOR_DISABLE = peer_authentication(
    "root-w", "istio-system", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}"
)
PORTS = peer_authentication(
    "ports",
    "prod",
    "{selector: {matchLabels: {app: ratings}}, mtls: {mode: STRICT},"
    " portLevelMtls: {'8080': {mode: DISABLE}, '9090': {mode: UNSET}}}",
)


@pytest.mark.parametrize(
    ("documents", "mode"),
    [
        ((), "PERMISSIVE"),  # Istio's default
        ((MESH_STRICT,), "STRICT"),
        ((MESH_STRICT, NS_UNSET), "STRICT"),  # UNSET inherits
        ((MESH_STRICT, NS_DISABLE), "DISABLE"),  # narrower wins
        ((MESH_STRICT, NS_DISABLE, WORKLOAD_PERMISSIVE), "PERMISSIVE"),
        ((MESH_STRICT, ROOT_SELECTOR_DISABLE), "STRICT"),  # a selector in the root namespace: ignored
        ((peer_authentication("ns", "other", "{mtls: {mode: DISABLE}}"),), "PERMISSIVE"),  # not ours
    ],
)
def test_the_narrowest_set_mode_wins(documents: tuple[str, ...], mode: str) -> None:
    snap = snapshot(*documents) if documents else MeshSnapshot()
    assert peer_authn(snap, "prod", {"app": "ratings"}).mode == mode


def test_the_first_policy_by_name_counts_per_level_and_port_level_unset_means_the_workload_mode() -> None:
    second = peer_authentication("zz", "prod", "{mtls: {mode: DISABLE}}")
    first = peer_authentication("aa", "prod", "{mtls: {mode: STRICT}}")
    assert peer_authn(snapshot(second, first), "prod", {}).mode == "STRICT"
    authn = peer_authn(snapshot(NS_DISABLE, PORTS), "prod", {"app": "ratings"})
    assert (authn.mode, authn.port_mode(8080), authn.port_mode(9090), authn.port_mode(9080)) == (
        "STRICT",
        "DISABLE",
        "STRICT",
        "STRICT",
    )


# ---- inbound chains -------------------------------------------------------------------------------


def tls_context(chain) -> tls_pb2.DownstreamTlsContext:
    out = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(out)
    return out


def inbound(*documents: str, port: int = 9080) -> listener_pb2.Listener:
    snap = snapshot(SELECTED, WITH_SIDECAR, *documents)
    return by_name(translate_listeners(snap, client(labels={"app": "ratings"})))[f"10.0.0.1_{port}"]


def test_strict_is_one_chain_that_requires_a_mesh_client_certificate() -> None:
    listener = inbound(peer_authentication("ns", "prod", "{mtls: {mode: STRICT}}"))
    (chain,) = listener.filter_chains
    assert not listener.listener_filters and not chain.HasField("filter_chain_match")
    context = tls_context(chain)
    assert context.require_client_certificate.value is True
    common = context.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    assert common.combined_validation_context.validation_context_sds_secret_config.name == "ROOTCA"
    assert common.tls_certificate_sds_secret_configs[0].sds_config.HasField("ads")
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]


def test_permissive_sniffs_tls_and_keeps_a_plaintext_chain_with_the_same_filters() -> None:
    listener = inbound()  # no policy: PERMISSIVE
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    secure, plain = listener.filter_chains
    assert secure.filter_chain_match.transport_protocol == "tls"
    assert plain.filter_chain_match.transport_protocol == "raw_buffer"
    assert tls_context(secure).require_client_certificate.value is True
    assert not plain.HasField("transport_socket")
    assert list(secure.filters) == list(plain.filters)


def test_disable_and_a_port_level_disable_leave_the_plaintext_chain_alone() -> None:
    (chain,) = inbound(NS_DISABLE).filter_chains
    assert not chain.HasField("transport_socket")
    ports = peer_authentication(
        "w",
        "prod",
        "{selector: {matchLabels: {app: ratings}}, mtls: {mode: STRICT},"
        " portLevelMtls: {'9080': {mode: DISABLE}}}",
    )
    (chain,) = inbound(ports).filter_chains
    assert not chain.HasField("transport_socket")


def test_secure_inbound_does_not_touch_its_input() -> None:
    listener = inbound(NS_DISABLE)
    before = listener.SerializeToString()
    secure_inbound(listener, "STRICT")
    assert listener.SerializeToString() == before


# ---- outbound clusters ------------------------------------------------------------------------------


def cluster_of(*documents: str, name: str = CLUSTER, proxy_labels: dict[str, str] | None = None):
    snap = snapshot(SELECTED, WITH_SIDECAR, WITHOUT_SIDECAR, *documents)
    return {c.name: c for c in translate_clusters(snap, client("prod", proxy_labels))}[name]


def upstream(socket) -> tls_pb2.UpstreamTlsContext:
    out = tls_pb2.UpstreamTlsContext()
    assert socket.typed_config.Unpack(out)
    return out


def test_auto_mtls_uses_the_mesh_certificate_for_endpoints_with_a_sidecar_only() -> None:
    cluster = cluster_of()
    assert not cluster.HasField("transport_socket")
    istio, plain = cluster.transport_socket_matches
    assert (istio.name, dict(istio.match.fields.items())["tlsMode"].string_value) == (
        "tlsMode-istio",
        "istio",
    )
    assert (plain.name, len(plain.match.fields)) == ("tlsMode-disabled", 0)
    assert plain.transport_socket.name == "envoy.transport_sockets.raw_buffer"
    context = upstream(istio.transport_socket)
    assert context.sni == f"outbound_.9080_._.{RATINGS}"
    assert istio.transport_socket.typed_config.value == context.SerializeToString(deterministic=True)
    common = context.common_tls_context
    assert list(common.alpn_protocols) == ["istio"]
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    validation = common.combined_validation_context
    assert validation.validation_context_sds_secret_config.name == "ROOTCA"
    sans = [m.matcher.exact for m in validation.default_validation_context.match_typed_subject_alt_names]
    assert sans == ["spiffe://cluster.local/ns/prod/sa/legacy", "spiffe://cluster.local/ns/prod/sa/ratings"]


@pytest.mark.parametrize(
    "document",
    [
        NS_DISABLE,  # the service's namespace disables mTLS
        destination_rule("r", "prod", f"host: {RATINGS}\ntrafficPolicy: {{tls: {{mode: DISABLE}}}}"),
    ],
)
def test_no_tls_when_the_namespace_or_a_rule_disables_it(document: str) -> None:
    cluster = cluster_of(document)
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")


def test_no_auto_mtls_for_a_mesh_external_service_or_when_the_mesh_turns_it_off() -> None:
    external = service_entry(RATINGS, extra="  workloadSelector: {labels: {app: ratings}}").replace(
        "MESH_INTERNAL", "MESH_EXTERNAL"
    )
    snap = snapshot(external, WITH_SIDECAR)
    (cluster,) = translate_clusters(snap, client())
    assert not cluster.transport_socket_matches
    internal = snapshot(SELECTED, WITH_SIDECAR)
    off = MeshSnapshot.build(internal.resources, MeshConfig(enable_auto_mtls=False))
    (cluster,) = translate_clusters(off, client())
    assert not cluster.transport_socket_matches


def test_istio_mutual_in_a_rule_applies_to_every_endpoint_with_the_subset_sni() -> None:
    rule = destination_rule(
        "r",
        "prod",
        f"""
host: {RATINGS}
trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
subsets: [{{name: v1, labels: {{version: v1}}}}]
""",
    )
    cluster = cluster_of(rule, name=f"outbound|9080|v1|{RATINGS}")
    assert not cluster.transport_socket_matches
    assert upstream(cluster.transport_socket).sni == f"outbound_.9080_.v1_.{RATINGS}"
    own = destination_rule(
        "r",
        "prod",
        f"host: {RATINGS}\ntrafficPolicy: {{tls: {{mode: ISTIO_MUTUAL, sni: x.example, subjectAltNames: [spiffe://td/ns/a/sa/b]}}}}",
    )
    context = upstream(cluster_of(own).transport_socket)
    sans = context.common_tls_context.combined_validation_context.default_validation_context
    assert context.sni == "x.example"
    assert [m.matcher.exact for m in sans.match_typed_subject_alt_names] == ["spiffe://td/ns/a/sa/b"]


def test_simple_and_mutual_tls_from_files_credentials_or_the_system_roots() -> None:
    def context(tls: str) -> tls_pb2.UpstreamTlsContext:
        rule = destination_rule("r", "prod", f"host: {RATINGS}\ntrafficPolicy: {{tls: {tls}}}")
        return upstream(cluster_of(rule).transport_socket)

    files = context(
        "{mode: SIMPLE, caCertificates: /etc/ca.pem, sni: api.example, subjectAltNames: [api.example]}"
    )
    validation = files.common_tls_context.validation_context
    assert (validation.trusted_ca.filename, files.sni) == ("/etc/ca.pem", "api.example")
    assert validation.match_typed_subject_alt_names[0].matcher.exact == "api.example"
    assert context("{mode: SIMPLE}").common_tls_context.validation_context.HasField("system_root_certs")
    skip = context("{mode: SIMPLE, insecureSkipVerify: true}").common_tls_context.validation_context
    assert skip == type(skip)()  # verifies nothing, as the user asked
    mutual = context("{mode: MUTUAL, credentialName: client-cred}").common_tls_context
    assert [s.name for s in mutual.tls_certificate_sds_secret_configs] == ["client-cred"]
    assert (
        mutual.combined_validation_context.validation_context_sds_secret_config.name == "client-cred-cacert"
    )
    pem = context("{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}")
    certificate = pem.common_tls_context.tls_certificates[0]
    assert (certificate.certificate_chain.filename, certificate.private_key.filename) == ("/c.pem", "/k.pem")


# ---- endpoints ---------------------------------------------------------------------------------------


def tls_modes(*documents: str) -> dict[str, str]:
    snap = snapshot(SELECTED, WITH_SIDECAR, WITHOUT_SIDECAR, *documents)
    proxy = client()
    (assignment,) = translate_endpoints(snap, proxy, translate_clusters(snap, proxy))
    out = {}
    for group in assignment.endpoints:
        for endpoint in group.lb_endpoints:
            fields = endpoint.metadata.filter_metadata["envoy.transport_socket_match"].fields
            out[endpoint.endpoint.address.socket_address.address] = fields["tlsMode"].string_value
    return out


def test_endpoints_with_a_sidecar_carry_tls_mode_istio_unless_their_policy_disables_mtls() -> None:
    assert tls_modes() == {"10.0.0.1": "istio", "10.0.0.2": ""}
    assert tls_modes(WORKLOAD_PERMISSIVE) == {"10.0.0.1": "istio", "10.0.0.2": ""}
    disable = peer_authentication(
        "w", "prod", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}"
    )
    assert tls_modes(disable) == {"10.0.0.1": "", "10.0.0.2": ""}


# ---- gateway HTTPS ------------------------------------------------------------------------------------

HTTPS = gateway(
    "bookinfo",
    "prod",
    """
selector: {istio: ingressgateway}
servers:
- port: {number: 8443, name: https, protocol: HTTPS}
  hosts: ['*/bookinfo.example.com']
  tls: {mode: SIMPLE, credentialName: bookinfo-cert}
- port: {number: 8443, name: https-admin, protocol: HTTPS}
  hosts: [admin.example.com]
  tls: {mode: MUTUAL, credentialName: admin-cert}
- port: {number: 9443, name: passthrough, protocol: HTTPS}
  hosts: ['*']
  tls: {mode: PASSTHROUGH}
""",
)
ROUTE = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo, namespace: prod}}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo]
  http: [{{route: [{{destination: {{host: {RATINGS}}}}}]}}]
"""
INGRESS = {"istio": "ingressgateway"}


def test_https_servers_get_sni_matched_chains_with_their_certificate_and_own_routes() -> None:
    snap = snapshot(HTTPS, ROUTE, SELECTED)
    proxy = client(labels=INGRESS, kind=ProxyType.ROUTER)
    listeners = by_name(translate_listeners(snap, proxy))
    assert list(listeners) == ["0.0.0.0_8443"]  # passthrough is not built
    listener = listeners["0.0.0.0_8443"]
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    public, admin = listener.filter_chains
    assert list(public.filter_chain_match.server_names) == ["bookinfo.example.com"]
    simple = tls_context(public)
    assert [s.name for s in simple.common_tls_context.tls_certificate_sds_secret_configs] == ["bookinfo-cert"]
    assert simple.require_client_certificate.value is False
    mutual = tls_context(admin)
    assert mutual.require_client_certificate.value is True
    validation = mutual.common_tls_context.combined_validation_context.validation_context_sds_secret_config
    assert validation.name == "admin-cert-cacert"
    names = route_names(listeners.values())
    assert names == ["https.8443.https.bookinfo.prod", "https.8443.https-admin.bookinfo.prod"]
    public_routes, admin_routes = translate_routes(snap, proxy, names)
    assert [v.domains[0] for v in public_routes.virtual_hosts] == ["bookinfo.example.com"]
    assert [v.name for v in admin_routes.virtual_hosts] == ["blackhole:8443"]  # no VirtualService binds it
    assert credential_names(snap, proxy) == ["bookinfo-cert", "admin-cert", "admin-cert-cacert"]
    assert https_servers(snap, client(labels={"istio": "other"}, kind=ProxyType.ROUTER)) == []
