"""Mutual TLS between sidecars: PeerAuthentication on the inbound side, auto mTLS and
DestinationRule ``trafficPolicy.tls`` on the outbound side, the way istiod builds them (pure).

Theory of operation.

Inbound (``pilot/pkg/security/authn/policy_applier.go`` ``ComposePeerAuthentication``): the
PeerAuthentications that apply to a workload are a mesh-level one (root namespace, no selector),
a namespace-level one (its namespace, no selector) and a workload-level one (its namespace, a
selector with labels that match; a selector in the root namespace is ignored). Istio takes the
oldest of each level; pilotfish keeps no creation time, so the first by name wins (Istio's own
tie-break). Starting from PERMISSIVE, each level that sets a mode other than UNSET overrides the
wider one; ``portLevelMtls`` (workload level only) overrides per workload port, UNSET meaning the
workload's mode. The mode shapes the inbound listener's filter chains (``listener_builder.go``
``buildInboundFilterchains``, ``authn/mtls.go`` ``InboundFilterChain``):

- STRICT: one chain whose transport socket is a ``DownstreamTlsContext`` that requires a client
  certificate: SDS ``default`` (the workload certificate) and validation SDS ``ROOTCA``. A
  plaintext peer fails the handshake and the connection is closed;
- PERMISSIVE: a ``tls_inspector`` listener filter and two chains: ``transport_protocol: tls``
  with that context, ``raw_buffer`` without it;
- DISABLE: the plaintext chain only.

Outbound (``pilot/pkg/networking/core/cluster_tls.go`` ``buildAutoMtlsSettings``,
``applyUpstreamTLSSettings``, ``buildUpstreamClusterTLSContext``): a DestinationRule's
``trafficPolicy.tls`` decides when set (DISABLE: plaintext; ISTIO_MUTUAL: the mesh certificate
with SNI ``outbound_.<port>_.<subset>_.<host>`` and the service accounts as SANs unless the rule
names its own; SIMPLE / MUTUAL: the rule's files or ``credentialName`` over SDS). Without one,
auto mTLS (MeshConfig ``enableAutoMtls``, default on) gives a mesh-internal service whose
namespace/mesh mode is not DISABLE two ``transport_socket_matches``: ``tlsMode-istio`` (the mesh
certificate) for endpoints whose metadata ``envoy.transport_socket_match`` carries
``tlsMode: istio``, and plaintext for the rest. An endpoint carries that metadata when its
workload is labelled ``security.istio.io/tlsMode: istio`` (Istio's label for "has a sidecar";
pilotfish sets nothing automatically, the WorkloadEntry says so) and its own PeerAuthentication
does not DISABLE mTLS on its port (``endpoint_builder.go`` ``mtlsChecker``). ORIGINAL_DST clusters
get no auto mTLS: they have no endpoints to carry the metadata.

ALPN follows Istio without metadata exchange (pilotfish has no ``istio-peer-exchange`` filter):
clients offer ``istio`` (``istio, h2`` for HTTP/2 clusters, ``util.ALPNInMesh``/``ALPNInMeshH2``),
servers ``h2, http/1.1`` (``util.ALPNDownstream``). Offering ``istio-peer-exchange`` without the
filter would make a real Istio peer send metadata-exchange bytes into a TCP stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2, message, struct_pb2, wrappers_pb2

from pilotfish.certs.identity import SpiffeIdError, workload_id
from pilotfish.config.networking.destination_rule import ClientTLSSettings, TrafficPolicy
from pilotfish.registry.model import TLS_MODE_LABEL, Endpoint, Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.secrets import ROOT_SECRET, WORKLOAD_SECRET

Listener: TypeAlias = listener_pb2.Listener
UpstreamTlsContext: TypeAlias = tls_pb2.UpstreamTlsContext
DownstreamTlsContext: TypeAlias = tls_pb2.DownstreamTlsContext

STRICT, PERMISSIVE, DISABLE, UNSET = "STRICT", "PERMISSIVE", "DISABLE", "UNSET"
DEFAULT_MODE = PERMISSIVE  # ComposePeerAuthentication's starting point
PEER_AUTHENTICATION = "PeerAuthentication"

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER_TRANSPORT_SOCKET = "envoy.transport_sockets.raw_buffer"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"  # Envoy's endpoint metadata namespace
ISTIO_TLS_MODE = "istio"  # model.IstioMutualTLSModeLabel
TLS_MODE_KEY = "tlsMode"
CACERT_SUFFIX = "-cacert"  # Istio SdsCaSuffix: the CA of a credentialName lives under <name>-cacert

INBOUND_ALPN = ("h2", "http/1.1")  # util.ALPNDownstream
MESH_ALPN = ("istio",)  # util.ALPNInMesh
MESH_H2_ALPN = ("istio", "h2")  # util.ALPNInMeshH2
H2_ALPN = ("h2",)  # util.ALPNH2Only, for SIMPLE/MUTUAL HTTP/2 clusters


# ---- PeerAuthentication ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerAuthn:
    """A workload's effective mTLS mode, and the ports that differ from it (never UNSET)."""

    mode: str = DEFAULT_MODE
    ports: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))

    def port_mode(self, port: int) -> str:
        return self.ports.get(port, self.mode)


def peer_authn(snapshot: MeshSnapshot, namespace: str, labels: Mapping[str, str]) -> PeerAuthn:
    """``ComposePeerAuthentication`` for a workload, computed once per snapshot and workload."""
    return snapshot.derived_for(_compose, (namespace, frozenset(labels.items())))


def _compose(snapshot: MeshSnapshot, key: tuple[str, frozenset[tuple[str, str]]]) -> PeerAuthn:
    namespace, label_items = key
    labels = dict(label_items)
    root = snapshot.mesh.root_namespace
    chosen: dict[str, Any] = {}
    for policy in snapshot.of_kind(PEER_AUTHENTICATION):
        level = policy_level(policy.namespace, policy.spec.selector, namespace, labels, root)
        if level is not None:
            chosen.setdefault(level, policy.spec)
    mode = DEFAULT_MODE
    for level in ("mesh", "namespace", "workload"):
        spec = chosen.get(level)
        if spec is not None and spec.mtls is not None and spec.mtls.mode != UNSET:
            mode = spec.mtls.mode
    workload = chosen.get("workload")
    port_modes = workload.port_modes() if workload is not None else {}
    ports = {port: (mode if value == UNSET else value) for port, value in port_modes.items()}
    return PeerAuthn(mode, MappingProxyType(ports))


def policy_level(
    policy_namespace: str, selector: Any, namespace: str, labels: Mapping[str, str], root: str
) -> str | None:
    """Which level a PeerAuthentication is for this workload: ``mesh``, ``namespace``,
    ``workload``, or ``None`` when it does not apply (``GetPeerAuthenticationsForWorkload``)."""
    if selector is None or not selector.match_labels:
        if policy_namespace == root:
            return "mesh"
        return "namespace" if policy_namespace == namespace else None
    if policy_namespace == root or policy_namespace != namespace:
        return None
    return "workload" if selector.matches(labels) else None


def service_mode(snapshot: MeshSnapshot, service: Service) -> str:
    """Istio ``BestEffortInferServiceMTLSMode``: DISABLE for a mesh-external service, else the
    namespace-level mode of its namespace, else the mesh-level one (no workload selector applies
    to a service as a whole)."""
    if service.location == "MESH_EXTERNAL":
        return DISABLE
    return peer_authn(snapshot, service.namespace, {}).mode


# ---- SDS and transport sockets -----------------------------------------------------------------


def sds_secret(name: str) -> secret_pb2.SdsSecretConfig:
    """Istio ``ConstructSdsSecretConfig``: the secret over ADS (SDS travels in the ADS stream),
    waiting for it without a timeout so no listener or cluster warms without its certificate."""
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        initial_fetch_timeout=duration_pb2.Duration(),
        resource_api_version=config_source_pb2.V3,
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def transport_socket(context: message.Message, name: str = TLS_TRANSPORT_SOCKET) -> base_pb2.TransportSocket:
    out = base_pb2.TransportSocket(name=name)
    out.typed_config.Pack(context)
    return out


def raw_buffer_socket() -> base_pb2.TransportSocket:
    return transport_socket(raw_buffer_pb2.RawBuffer(), RAW_BUFFER_TRANSPORT_SOCKET)


def san_matchers(names: Iterable[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """Exact SAN matches: URI for ``spiffe://`` ids, DNS for anything else."""
    return [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI
            if name.startswith("spiffe://")
            else common_pb2.SubjectAltNameMatcher.DNS,
            matcher=string_pb2.StringMatcher(exact=name),
        )
        for name in names
    ]


def mesh_common_context(alpn: Iterable[str], sans: Iterable[str] = ()) -> tls_pb2.CommonTlsContext:
    """The workload certificate (SDS ``default``) and the mesh root (SDS ``ROOTCA``), TLS 1.2+."""
    return tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2),
        alpn_protocols=list(alpn),
        tls_certificate_sds_secret_configs=[sds_secret(WORKLOAD_SECRET)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=san_matchers(sans)
            ),
            validation_context_sds_secret_config=sds_secret(ROOT_SECRET),
        ),
    )


def inbound_mtls_context() -> DownstreamTlsContext:
    """The sidecar's server side of mesh mTLS: a client certificate from the mesh is required."""
    return DownstreamTlsContext(
        common_tls_context=mesh_common_context(INBOUND_ALPN),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )


def istio_mutual_context(sni: str, sans: Iterable[str], http2: bool) -> UpstreamTlsContext:
    """``buildUpstreamClusterTLSContext`` for ISTIO_MUTUAL."""
    alpn = MESH_H2_ALPN if http2 else MESH_ALPN
    return UpstreamTlsContext(common_tls_context=mesh_common_context(alpn, sans), sni=sni)


# ---- inbound -----------------------------------------------------------------------------------


def tls_inspector() -> listener_components_pb2.ListenerFilter:
    out = listener_components_pb2.ListenerFilter(name=TLS_INSPECTOR)
    out.typed_config.Pack(tls_inspector_pb2.TlsInspector())
    return out


def secure_inbound(listener: Listener, mode: str) -> Listener:
    """The inbound listener's chains for ``mode`` (``listener`` has one plaintext chain)."""
    if mode == DISABLE:
        return listener
    out = Listener()
    out.CopyFrom(listener)
    plain = out.filter_chains[0]
    secure = listener_components_pb2.FilterChain()
    secure.CopyFrom(plain)
    secure.transport_socket.CopyFrom(transport_socket(inbound_mtls_context()))
    if mode == STRICT:
        out.ClearField("filter_chains")
        out.filter_chains.append(secure)
        return out
    secure.filter_chain_match.transport_protocol = "tls"
    plain.filter_chain_match.transport_protocol = "raw_buffer"
    out.filter_chains.insert(0, secure)
    out.listener_filters.append(tls_inspector())
    return out


# ---- outbound ----------------------------------------------------------------------------------


def sni(hostname: str, port: int, subset: str | None) -> str:
    """Istio ``model.BuildDNSSrvSubsetKey``: ``outbound_.<port>_.<subset>_.<host>``."""
    return f"outbound_.{port}_.{subset or ''}_.{hostname}"


def service_accounts(snapshot: MeshSnapshot, service: Service) -> tuple[str, ...]:
    """Istio ``Service.ServiceAccounts`` for a ServiceEntry: the SPIFFE id of each workload's
    service account (workloads without one add none, as in Istio) and the entry's
    ``subjectAltNames``, sorted."""
    return snapshot.derived_for(_service_accounts, service)


def _service_accounts(snapshot: MeshSnapshot, service: Service) -> tuple[str, ...]:
    found = set(service.subject_alt_names)
    trust_domain = snapshot.mesh.trust_domain
    for port in service.ports:
        for endpoint in snapshot.endpoints_for(service.hostname, port.number):
            if endpoint.service_account:
                try:
                    namespace = endpoint.namespace or service.namespace
                    found.add(workload_id(trust_domain, namespace, endpoint.service_account).uri)
                except SpiffeIdError:
                    continue  # not a name a certificate can carry; no peer can present it
    return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """What the TLS of one outbound cluster depends on."""

    service: Service
    port: int
    subset: str | None
    http2: bool

    @property
    def sni(self) -> str:
        return sni(self.service.hostname, self.port, self.subset)


def apply_cluster_tls(
    snapshot: MeshSnapshot, cluster: cluster_pb2.Cluster, target: ClusterTarget, policy: TrafficPolicy | None
) -> None:
    """Istio ``applyUpstreamTLSSettings``: the rule's TLS when set, else auto mTLS."""
    tls = policy.tls if policy is not None else None
    if tls is not None:
        context = CLIENT_TLS[tls.mode](tls, target, lambda: service_accounts(snapshot, target.service))
        if context is not None:
            cluster.transport_socket.CopyFrom(transport_socket(context))
        return
    if auto_mtls_applies(snapshot, cluster, target.service):
        add_auto_mtls_matches(snapshot, cluster, target)


def auto_mtls_applies(snapshot: MeshSnapshot, cluster: cluster_pb2.Cluster, service: Service) -> bool:
    return (
        snapshot.mesh.enable_auto_mtls
        and cluster.type != cluster_pb2.Cluster.ORIGINAL_DST
        and service_mode(snapshot, service) != DISABLE
    )


def add_auto_mtls_matches(
    snapshot: MeshSnapshot, cluster: cluster_pb2.Cluster, target: ClusterTarget
) -> None:
    """``auto_mtls_matches`` for the cluster. Clusters of services with the same service accounts
    and protocol differ only in the SNI, so the matches are built once per snapshot for each such
    pair and copied (in C); the SNI, field 2 of ``UpstreamTlsContext``, is appended to the packed
    context's bytes: concatenated protobuf messages merge, and fields in number order are exactly
    what serializing the whole context gives."""
    key = (service_accounts(snapshot, target.service), target.http2)
    template = snapshot.derived_for(_auto_mtls_template, key)
    cluster.transport_socket_matches.extend(template)
    socket = cluster.transport_socket_matches[0].transport_socket
    socket.typed_config.value += UpstreamTlsContext(sni=target.sni).SerializeToString()


def _auto_mtls_template(
    snapshot: MeshSnapshot, key: tuple[tuple[str, ...], bool]
) -> tuple[cluster_pb2.Cluster.TransportSocketMatch, ...]:
    sans, http2 = key
    return tuple(auto_mtls_matches(istio_mutual_context("", sans, http2)))


def auto_mtls_matches(context: UpstreamTlsContext) -> list[cluster_pb2.Cluster.TransportSocketMatch]:
    """mTLS to endpoints labelled ``tlsMode: istio``, plaintext to the others."""
    match = struct_pb2.Struct()
    match.fields[TLS_MODE_KEY].string_value = ISTIO_TLS_MODE
    Match = cluster_pb2.Cluster.TransportSocketMatch
    return [
        Match(name=f"tlsMode-{ISTIO_TLS_MODE}", match=match, transport_socket=transport_socket(context)),
        Match(name="tlsMode-disabled", match=struct_pb2.Struct(), transport_socket=raw_buffer_socket()),
    ]


# What a rule's ``tls.mode`` builds: (settings, target, the service accounts) → context or None.
Accounts: TypeAlias = Callable[[], tuple[str, ...]]
ClientTls: TypeAlias = Callable[[ClientTLSSettings, ClusterTarget, Accounts], UpstreamTlsContext | None]


def _disable(tls: ClientTLSSettings, target: ClusterTarget, accounts: Accounts) -> None:
    return None


def _istio_mutual(tls: ClientTLSSettings, target: ClusterTarget, accounts: Accounts) -> UpstreamTlsContext:
    """The rule's own SNI and SANs when set, else the auto ones (``buildAutoMtlsSettings``)."""
    sans = tls.subject_alt_names or accounts()
    return istio_mutual_context(tls.sni or target.sni, sans, target.http2)


def _simple(tls: ClientTLSSettings, target: ClusterTarget, accounts: Accounts) -> UpstreamTlsContext:
    """SIMPLE: the server is verified against ``caCertificates`` (a file), the CA of
    ``credentialName`` (SDS ``<name>-cacert``), or the system roots (Istio's
    VERIFY_CERTIFICATE_AT_CLIENT); ``insecureSkipVerify`` verifies nothing."""
    common = tls_pb2.CommonTlsContext(alpn_protocols=list(H2_ALPN) if target.http2 else [])
    validation = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=san_matchers(tls.subject_alt_names)
    )
    if tls.ca_crl:  # revoked server certificates are refused
        validation.crl.filename = tls.ca_crl
    if tls.insecure_skip_verify:
        common.validation_context.SetInParent()
    elif tls.credential_name:
        common.combined_validation_context.default_validation_context.CopyFrom(validation)
        common.combined_validation_context.validation_context_sds_secret_config.CopyFrom(
            sds_secret(tls.credential_name + CACERT_SUFFIX)
        )
    else:
        if tls.ca_certificates:
            validation.trusted_ca.filename = tls.ca_certificates
        else:
            validation.system_root_certs.SetInParent()
        common.validation_context.CopyFrom(validation)
    return UpstreamTlsContext(common_tls_context=common, sni=tls.sni)


def _mutual(tls: ClientTLSSettings, target: ClusterTarget, accounts: Accounts) -> UpstreamTlsContext:
    """MUTUAL: SIMPLE plus a client certificate, from ``credentialName`` (SDS) or files."""
    context = _simple(tls, target, accounts)
    common = context.common_tls_context
    if tls.credential_name:
        common.tls_certificate_sds_secret_configs.append(sds_secret(tls.credential_name))
    else:
        certificate = common.tls_certificates.add()
        certificate.certificate_chain.filename = tls.client_certificate
        certificate.private_key.filename = tls.private_key
    return context


CLIENT_TLS: Mapping[str, ClientTls] = {
    "DISABLE": _disable,
    "ISTIO_MUTUAL": _istio_mutual,
    "SIMPLE": _simple,
    "MUTUAL": _mutual,
}


# ---- endpoints ---------------------------------------------------------------------------------


def has_sidecar(endpoint: Endpoint) -> bool:
    """The workload says it runs a sidecar: ``security.istio.io/tlsMode: istio``."""
    return endpoint.labels.get(TLS_MODE_LABEL) == ISTIO_TLS_MODE


def endpoint_mtls(snapshot: MeshSnapshot) -> Callable[[Endpoint], bool]:
    """Whether an endpoint gets ``tlsMode: istio`` metadata: it has a sidecar, and its own
    PeerAuthentication does not DISABLE mTLS on its port (``mtlsChecker.isMtlsDisabled``)."""

    def istio(endpoint: Endpoint) -> bool:
        if not has_sidecar(endpoint):
            return False
        authn = peer_authn(snapshot, endpoint.namespace, endpoint.labels)
        return authn.port_mode(endpoint.port) != DISABLE

    return istio


def set_tls_mode_metadata(metadata: base_pb2.Metadata) -> None:
    """``filter_metadata["envoy.transport_socket_match"] = {tlsMode: istio}`` on an LbEndpoint."""
    metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].fields[TLS_MODE_KEY].string_value = ISTIO_TLS_MODE
