"""``--certs FILE`` and ``--ca-tokens FILE``: decoding, validation, file:line: field.path errors."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from pilotfish.certs.config import (
    DEFAULT_CERTS,
    BootstrapToken,
    load_certs_config,
    load_token_file,
)
from pilotfish.errors import ConfigError

TOKEN = "0123456789abcdef0123"


def write(tmp_path, text, name="certs.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(loader, path, *args) -> list[str]:
    with pytest.raises(ConfigError) as err:
        loader(path, *args)
    return [str(p) for p in err.value.problems]


def test_a_full_certs_file(tmp_path):
    path = write(
        tmp_path,
        """
        workloadCertTtl: 12h
        maxWorkloadCertTtl: 720h
        dnsCertificates:
        - secretName: shop-gateway
          dnsNames: [shop.example.com, "*.shop.example.com", 10.0.0.1]
          ttl: 48h
        - secret_name: admin
          dns_names: [admin.example.com]
        """,
    )
    config = load_certs_config(path)
    assert config.workload_cert_ttl == timedelta(hours=12)
    assert config.max_workload_cert_ttl == timedelta(days=30)
    shop = config.dns_certificate("shop-gateway")
    assert shop is not None and shop.dns_names == ("shop.example.com", "*.shop.example.com", "10.0.0.1")
    assert shop.ttl == timedelta(hours=48)
    assert config.dns_certificate("admin").ttl == timedelta(days=90)
    assert config.dns_certificate("nope") is None


def test_an_empty_file_is_the_default(tmp_path):
    assert load_certs_config(write(tmp_path, "")) == DEFAULT_CERTS
    assert DEFAULT_CERTS.workload_cert_ttl == timedelta(hours=24)
    assert DEFAULT_CERTS.max_workload_cert_ttl == timedelta(days=90)


def test_decode_errors_carry_file_line_and_path(tmp_path):
    path = write(
        tmp_path,
        """
        dnsCertificates:
        - secretName: a
          dnsNames: shop.example.com
          colour: blue
        - dnsNames: [b.example.com]
        """,
    )
    assert problems(load_certs_config, path) == [
        f"{path}:4: CertsConfig: dnsCertificates[0].dnsNames: expected a list, got str 'shop.example.com'",
        f"{path}:5: CertsConfig: dnsCertificates[0].colour: unknown field",
        f"{path}:6: CertsConfig: dnsCertificates[1].secretName: required field is missing",
    ]


def test_semantic_errors_carry_file_line_and_path(tmp_path):
    path = write(
        tmp_path,
        """
        workloadCertTtl: 100h
        maxWorkloadCertTtl: 10h
        dnsCertificates:
        - secretName: default
          dnsNames: [a.example.com]
        - secretName: Bad_Name
          dnsNames: [a.example.com]
        - secretName: twice
          dnsNames: []
        - secretName: twice
          dnsNames: ["a..b", "*"]
          ttl: 10s
        """,
    )
    found = problems(load_certs_config, path)
    assert found == [
        f"{path}:2: CertsConfig: workloadCertTtl: must not exceed maxWorkloadCertTtl",
        f"{path}:5: CertsConfig: dnsCertificates[0].secretName: 'default' is reserved for the workload "
        "certificate (SDS 'default', 'ROOTCA')",
        f"{path}:7: CertsConfig: dnsCertificates[1].secretName: 'Bad_Name' is not a valid secret name "
        "(a DNS-1123 subdomain)",
        f"{path}:10: CertsConfig: dnsCertificates[2].dnsNames: at least one DNS name is required",
        f"{path}:11: CertsConfig: dnsCertificates[3].secretName: duplicate secretName 'twice'",
        f"{path}:12: CertsConfig: dnsCertificates[3].dnsNames[0]: invalid host 'a..b': each label must be "
        "alphanumeric or '-', at most 63 characters",
        f"{path}:12: CertsConfig: dnsCertificates[3].dnsNames[1]: '*' is not a DNS name a certificate "
        "can carry",
        f"{path}:13: CertsConfig: dnsCertificates[3].ttl: must be at least 60s",
    ]


def test_one_document_per_file(tmp_path):
    path = write(tmp_path, "dnsCertificates: []\n---\ndnsCertificates: []\n")
    assert problems(load_certs_config, path) == [f"{path}:3: this file holds one YAML document"]


def test_a_token_file(tmp_path):
    path = write(
        tmp_path,
        f"""
        tokens:
        - token: {TOKEN}
          identities:
          - spiffe://cluster.local/ns/shop/sa/web
          - spiffe://cluster.local/ns/shop/sa/db
        """,
        "tokens.yaml",
    )
    tokens = load_token_file(path, "cluster.local")
    assert tokens.tokens[0].identities == (
        "spiffe://cluster.local/ns/shop/sa/web",
        "spiffe://cluster.local/ns/shop/sa/db",
    )


def test_token_file_errors(tmp_path):
    path = write(
        tmp_path,
        f"""
        tokens:
        - token: short
          identities: [spiffe://cluster.local/ns/a/sa/b]
        - token: {TOKEN}
          identities: [spiffe://other.td/ns/a/sa/b, "spiffe://cluster.local/ns/a", "cluster.local/ns/a/sa/b"]
        - token: {TOKEN}
          identities: []
        """,
        "tokens.yaml",
    )
    found = problems(load_token_file, path, "cluster.local")
    assert found[0] == (
        f"{path}:3: TokenFile: tokens[0].token: must be at least 16 characters (try `openssl rand -hex 16`)"
    )
    assert found[1] == (
        f"{path}:6: TokenFile: tokens[1].identities[0]: 'spiffe://other.td/ns/a/sa/b' is not in the mesh "
        "trust domain 'cluster.local'"
    )
    assert found[2].startswith(
        f"{path}:6: TokenFile: tokens[1].identities[1]: 'spiffe://cluster.local/ns/a' is not"
    )
    assert found[3].startswith(
        f"{path}:6: TokenFile: tokens[1].identities[2]: 'cluster.local/ns/a/sa/b' is not"
    )
    assert found[4:] == [
        f"{path}:7: TokenFile: tokens[2].token: duplicate token",
        f"{path}:8: TokenFile: tokens[2].identities: at least one SPIFFE id is required",
    ]
    assert "short" not in "\n".join(found) and TOKEN not in "\n".join(found)


def test_a_token_never_shows_in_its_repr():
    assert TOKEN not in repr(BootstrapToken(TOKEN, ("spiffe://cluster.local/ns/a/sa/b",)))
