"""SDS secrets: ``default`` (chain + key inline), ``ROOTCA`` (trusted_ca), DNS secrets; reuse
until rotation (byte-identical resources), and the metrics the hooks feed."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from certs_support import NOW, TRUST_DOMAIN, WEB, intermediate_ca, root_ca
from cryptography import x509

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.cache import DnsCertCache, WorkloadCertCache
from pilotfish.certs.config import CertsConfig, DnsCertificate
from pilotfish.certs.store import DirectoryStorage
from pilotfish.metrics import Metrics
from pilotfish.xds import resources
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.secrets import (
    ROOT_SECRET,
    WORKLOAD_SECRET,
    dns_secret,
    dns_secrets,
    identity_of_proxy,
    root_secret,
    workload_secrets,
)


def test_workload_secrets_are_default_and_rootca():
    default, root = workload_secrets(root_ca(), WEB, NOW, WorkloadCertCache())
    assert (default.name, root.name) == ("default", "ROOTCA") == (WORKLOAD_SECRET, ROOT_SECRET)
    assert resources.type_url_of(default) == resources.SECRET
    chain = x509.load_pem_x509_certificates(default.tls_certificate.certificate_chain.inline_bytes)
    assert [ca_mod.uri_sans(c) for c in chain] == [[WEB.uri]]  # the root is never in the chain
    key = ca_mod.load_private_key(default.tls_certificate.private_key.inline_bytes)
    assert ca_mod.key_matches(chain[0], key)
    assert x509.load_pem_x509_certificates(root.validation_context.trusted_ca.inline_bytes) == [
        root_ca().root
    ]
    assert not root.HasField("tls_certificate") and not default.HasField("validation_context")


def test_with_an_intermediate_the_chain_carries_it_and_rootca_only_the_root():
    default, root = workload_secrets(intermediate_ca(), WEB, NOW, WorkloadCertCache())
    chain = x509.load_pem_x509_certificates(default.tls_certificate.certificate_chain.inline_bytes)
    assert chain[1:] == [intermediate_ca().signing_cert]
    assert x509.load_pem_x509_certificates(root.validation_context.trusted_ca.inline_bytes) == [
        intermediate_ca().root
    ]


def test_secrets_are_byte_identical_until_rotation():
    cache = WorkloadCertCache()
    first = [s.SerializeToString(deterministic=True) for s in workload_secrets(root_ca(), WEB, NOW, cache)]
    same = workload_secrets(root_ca(), WEB, NOW + timedelta(hours=11, minutes=59), cache)
    assert [s.SerializeToString(deterministic=True) for s in same] == first
    rotated = workload_secrets(root_ca(), WEB, NOW + timedelta(hours=12), cache)
    assert rotated[0].SerializeToString(deterministic=True) != first[0]
    assert rotated[1].SerializeToString(deterministic=True) == first[1]  # the root did not change


def test_identity_of_a_proxy_uses_namespace_and_service_account():
    proxy = Proxy(
        id="sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local",
        type=ProxyType.SIDECAR,
        ip="10.0.0.1",
        name="web-1",
        namespace="shop",
        dns_domain="shop.svc.cluster.local",
        labels=MappingProxyType({}),
        service_account="web",
    )
    assert identity_of_proxy(proxy, TRUST_DOMAIN) == WEB
    unnamed = Proxy(proxy.id, proxy.type, proxy.ip, proxy.name, proxy.namespace, proxy.dns_domain)
    assert identity_of_proxy(unnamed, "td.example").uri == "spiffe://td.example/ns/shop/sa/default"


def test_dns_secrets_by_secret_name(tmp_path):
    config = CertsConfig(
        dns_certificates=(
            DnsCertificate("shop-gateway", ("shop.example.com",), timedelta(days=10)),
            DnsCertificate("admin", ("admin.example.com", "127.0.0.1"), timedelta(days=10)),
        )
    )
    cache = DnsCertCache(DirectoryStorage(tmp_path))
    everything = dns_secrets(root_ca(), config, NOW, cache)
    assert [s.name for s in everything] == ["shop-gateway", "admin"]
    [admin] = dns_secrets(root_ca(), config, NOW, cache, names=["admin", "unknown"])
    cert = x509.load_pem_x509_certificates(admin.tls_certificate.certificate_chain.inline_bytes)[0]
    assert ca_mod.all_sans(cert) == ["admin.example.com", "127.0.0.1"]
    assert admin == everything[1]


def test_dns_secret_and_root_secret_names():
    certified = ca_mod.new_dns_key(root_ca(), ["a.example.com"], NOW, timedelta(days=1))
    assert dns_secret("a-cert", certified).tls_certificate.private_key.inline_bytes == certified.key_pem()
    assert root_secret(root_ca(), "custom-root").name == "custom-root"


def test_metrics_hooks_report_issuance_rotation_and_expiry():
    metrics = Metrics()
    cache = WorkloadCertCache(hooks=metrics)
    cache.get(root_ca(), WEB, NOW)
    cache.get(root_ca(), WEB, NOW + timedelta(hours=12))
    metrics.on_csr_denied("PERMISSION_DENIED")
    sample = metrics.registry.get_sample_value
    assert sample("pilotfish_certs_issued_total", {"kind": "workload"}) == 2
    assert sample("pilotfish_certs_rotated_total", {"kind": "workload"}) == 1
    assert sample("pilotfish_csr_denied_total", {"reason": "PERMISSION_DENIED"}) == 1
    expiry = (NOW + timedelta(hours=36)).timestamp()
    assert sample("pilotfish_cert_expiry_timestamp_seconds", {"secret": WEB.uri}) == expiry
    cache.retain([])
    assert sample("pilotfish_cert_expiry_timestamp_seconds", {"secret": WEB.uri}) is None
