"""The Envoy bootstrap that points a proxy at pilotfish (``pilotfish bootstrap``).

Node identity follows Istio so the server reads it the same way (pilot/pkg/model/context.go
``ParseServiceNodeWithMetadata``): id ``TYPE~IP~NAME.NS~NS.svc.cluster.local`` with TYPE
``sidecar`` or ``router``, and metadata NAMESPACE, LABELS, SERVICE_ACCOUNT, WORKLOAD_NAME.
pilotfish's explicit-capture listeners add, when set: APP_PORTS (``{"9080": "19080"}``: the
workload's port → where its app listens on 127.0.0.1), OUTBOUND_BIND (the address outbound
listeners bind, default 127.0.0.1) and GATEWAY_BIND (the address gateway listeners bind, default
the node IP).

With ``XdsTls`` (``pilotfish bootstrap --mtls``) the proxy talks to the mTLS xDS port (Istio's
15012) instead: the ``xds-grpc`` cluster presents a client certificate from files (one the CA
issued for the proxy's identity, e.g. through the CSR API with a bootstrap token) and trusts only
the mesh root, checking that the server's certificate names ``pilotfish.<rootNamespace>.svc``
(Istio's bootstrap checks ``istiod.<ns>.svc`` the same way). Envoy reads the files when it starts;
renewing them needs a restart of the proxy (the certificates it gets over SDS rotate by themselves).
Pure: options in, a bootstrap dict out (the CLI prints it as YAML).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

XDS_CLUSTER = "xds-grpc"
PROBE_HEADER = "x-target-cluster"
XDS_SERVER_NAME = "pilotfish.istio-system.svc"  # certs.server.server_names for the default root namespace
_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)


@dataclass(frozen=True, slots=True)
class XdsTls:
    """Mutual TLS to the xDS server: the mesh root to trust, the proxy's certificate and key."""

    root_cert: str  # file paths, as Envoy reads them
    cert_chain: str
    private_key: str
    server_name: str = XDS_SERVER_NAME


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    node_id: str  # a full Istio node id, or just the workload name
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    gateway: bool = False
    ip: str = "127.0.0.1"
    xds_host: str = "127.0.0.1"
    xds_port: int = 15010
    delta: bool = False
    admin_port: int = 15000
    admin_address: str = "127.0.0.1"
    probe_port: int | None = None  # a static listener routing by the x-target-cluster header
    app_ports: Mapping[int, int] = field(default_factory=dict)  # workload port -> app port
    outbound_bind: str = ""
    gateway_bind: str = ""
    locality: str = ""  # region/zone/subzone: the proxy's own locality (node.locality)
    tls: XdsTls | None = None  # mTLS to the secure xDS port
    annotations: Mapping[str, str] = field(default_factory=dict)  # node metadata ANNOTATIONS

    @property
    def proxy_type(self) -> str:
        return "router" if self.gateway else "sidecar"

    @property
    def workload_name(self) -> str:
        if "~" in self.node_id:
            return self.node_id.split("~")[2].split(".")[0]
        return self.node_id

    def full_node_id(self) -> str:
        if "~" in self.node_id:
            return self.node_id
        ns = self.namespace
        return f"{self.proxy_type}~{self.ip}~{self.node_id}.{ns}~{ns}.svc.cluster.local"


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` → dict; raises ValueError naming the bad item."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not key=value")
        out[key] = value
    return out


def parse_app_port(text: str) -> tuple[int, int]:
    """``PORT=APPPORT`` → (port, app port); raises ValueError naming the bad item."""
    port, sep, app_port = text.partition("=")
    try:
        pair = (int(port), int(app_port))
    except ValueError:
        pair = (0, 0)
    if not sep or not all(0 < p < 65536 for p in pair):
        raise ValueError(f"app port {text!r} is not PORT=APPPORT (ports 1-65535)")
    return pair


def node(opts: BootstrapOptions) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "NAMESPACE": opts.namespace,
        "LABELS": dict(opts.labels),
        "SERVICE_ACCOUNT": opts.service_account,
        "WORKLOAD_NAME": opts.workload_name,
        "CLUSTER_ID": "Kubernetes",
    }
    if opts.annotations:
        metadata["ANNOTATIONS"] = dict(opts.annotations)
    if opts.app_ports:
        metadata["APP_PORTS"] = {str(port): str(app) for port, app in sorted(opts.app_ports.items())}
    optional = (("OUTBOUND_BIND", opts.outbound_bind), ("GATEWAY_BIND", opts.gateway_bind))
    metadata.update((key, value) for key, value in optional if value)
    out: dict[str, Any] = {
        "id": opts.full_node_id(),
        "cluster": f"{opts.workload_name}.{opts.namespace}",
        "metadata": metadata,
    }
    if opts.locality:
        out["locality"] = locality_of(opts.locality)
    return out


def locality_of(text: str) -> dict[str, str]:
    """``region/zone/subzone`` (later levels optional) → Envoy's ``node.locality``; raises
    ValueError for an empty level or more than three."""
    parts = text.split("/")
    if len(parts) > 3 or any(not part.strip() for part in parts):
        raise ValueError(f"locality {text!r} is not REGION[/ZONE[/SUBZONE]] with no empty level")
    return dict(zip(("region", "zone", "sub_zone"), parts, strict=False))


def xds_transport_socket(tls: XdsTls) -> dict[str, Any]:
    """The client side of the mTLS xDS port: our certificate files, the root, the server's name."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TLS_TYPE,
            "sni": tls.server_name,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": tls.cert_chain},
                        "private_key": {"filename": tls.private_key},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": tls.root_cert},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": tls.server_name}}
                    ],
                },
            },
        },
    }


def xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    """The one static cluster: HTTP/2 to pilotfish, with TCP keepalives so a dead control plane is
    noticed (Envoy mgmt_server docs recommend keepalives on the xDS cluster), over mTLS with
    ``opts.tls``."""
    cluster = _plain_xds_cluster(opts)
    if opts.tls is not None:
        cluster["transport_socket"] = xds_transport_socket(opts.tls)
    return cluster


def _plain_xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    return {
        "name": XDS_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "upstream_connection_options": {
            "tcp_keepalive": {"keepalive_time": 30, "keepalive_interval": 5, "keepalive_probes": 3}
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": opts.xds_host, "port_value": opts.xds_port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def probe_listener(port: object) -> dict[str, Any]:
    """A static listener that sends each request to the cluster named in its ``x-target-cluster``
    header: a way to reach any cluster pilotfish pushed (CDS/EDS) before routes exist, and to
    debug load balancing per cluster. ``port`` may be a harness placeholder string."""
    hcm = {
        "@type": _HCM_TYPE,
        "stat_prefix": "probe",
        "route_config": {
            "name": "probe",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster_header": PROBE_HEADER, "timeout": "15s"},
                        }
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": "probe",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


# How soon Envoy re-opens the ADS stream after losing it (GrpcService.EnvoyGrpc.retry_policy,
# honoured for xDS streams; Envoy's default is 0.5 s doubling to 30 s, jittered). Capped at 1 s so
# a proxy is back with a restarted pilotfish within a second of it listening, not up to 30 s
# later; jitter still spreads a fleet's reconnects, and a refused connection costs nothing.
XDS_RETRY = {"retry_back_off": {"base_interval": "0.25s", "max_interval": "1s"}}


def bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    ads = {"ads": {}, "resource_api_version": "V3"}
    static: dict[str, Any] = {"clusters": [xds_cluster(opts)]}
    if opts.probe_port is not None:
        static["listeners"] = [probe_listener(opts.probe_port)]
    return {
        "node": node(opts),
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if opts.delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER, "retry_policy": XDS_RETRY}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": static,
        "admin": {
            "address": {"socket_address": {"address": opts.admin_address, "port_value": opts.admin_port}}
        },
    }
