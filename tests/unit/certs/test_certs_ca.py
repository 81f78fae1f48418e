"""The CA: the self-signed root, the X.509-SVID profile, DNS certificates, chains with an
intermediate, and the checks on an operator-supplied CA."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from certs_support import NOW, TRUST_DOMAIN, WEB, ca_certificate, intermediate_ca, make_csr, root_ca
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.ca import CertificateAuthority
from pilotfish.errors import ConfigError, PeerError


def verify_client(ca: CertificateAuthority, chain: tuple[x509.Certificate, ...], at=NOW):
    """Full RFC 5280 path validation to ``ca.root`` (cryptography's verifier), as a TLS peer does it."""
    verifier = PolicyBuilder().store(Store([ca.root])).time(at).build_client_verifier()
    return verifier.verify(chain[0], list(chain[1:]))


def test_self_signed_root_is_a_ten_year_ec_ca_named_after_the_trust_domain():
    authority = ca_mod.self_signed_root("mesh.example", NOW)
    root = authority.root
    assert authority.chain == (root,)
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "mesh.example"
    assert root.not_valid_after_utc - root.not_valid_before_utc == timedelta(days=3650)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(authority.key, ec.EllipticCurvePrivateKey)
    assert authority.key.curve.name == "secp256r1"
    root.verify_directly_issued_by(root)


def test_workload_certificate_is_an_x509_svid():
    key = ca_mod.new_private_key()
    cert = ca_mod.issue_workload(root_ca(), WEB, key.public_key(), NOW)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # the subject is empty (RFC 5280 §4.2.1.6)
    assert list(san.value) == [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/web")]
    assert cert.subject == x509.Name([])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.public_key() == key.public_key()
    verified = verify_client(root_ca(), (cert,))
    assert verified.subjects == [x509.UniformResourceIdentifier(WEB.uri)]


def test_default_lifetime_is_24h_from_now():
    cert = ca_mod.issue_workload(root_ca(), WEB, ca_mod.new_private_key().public_key(), NOW)
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(hours=24)


def test_custom_lifetime_and_serials_are_unique():
    key = ca_mod.new_private_key().public_key()
    one = ca_mod.issue_workload(root_ca(), WEB, key, NOW, ttl=timedelta(hours=1))
    two = ca_mod.issue_workload(root_ca(), WEB, key, NOW, ttl=timedelta(hours=1))
    assert one.not_valid_after_utc == NOW + timedelta(hours=1)
    assert one.serial_number != two.serial_number


def test_a_leaf_never_outlives_its_issuer():
    authority = intermediate_ca()
    cert = ca_mod.issue_workload(
        authority, WEB, ca_mod.new_private_key().public_key(), NOW, ttl=timedelta(days=3650)
    )
    assert cert.not_valid_after_utc == authority.signing_cert.not_valid_after_utc


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1)])
def test_lifetime_must_be_positive(ttl):
    with pytest.raises(ValueError, match="positive"):
        ca_mod.issue_workload(root_ca(), WEB, ca_mod.new_private_key().public_key(), NOW, ttl=ttl)


def test_a_naive_clock_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        ca_mod.issue_workload(root_ca(), WEB, ca_mod.new_private_key().public_key(), NOW.replace(tzinfo=None))


def test_from_a_csr_only_the_public_key_is_taken():
    key = ca_mod.new_private_key()
    csr = make_csr(key, uris=("spiffe://cluster.local/ns/other/sa/x",), dns=("evil.example",))
    cert = ca_mod.issue_workload(root_ca(), WEB, csr, NOW)
    assert cert.public_key() == key.public_key()
    assert ca_mod.all_sans(cert) == [WEB.uri]


def test_an_rsa_csr_is_accepted():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, ca_mod.hashes.SHA256())
    )
    cert = ca_mod.issue_workload(root_ca(), WEB, csr, NOW)
    assert cert.public_key() == key.public_key()


def test_a_csr_whose_signature_does_not_verify_is_a_peer_error():
    good = make_csr(ca_mod.new_private_key(), uris=(WEB.uri,))
    other = make_csr(ca_mod.new_private_key(), uris=(WEB.uri,))
    forged = _reassemble(good, other)  # one CSR's body with the other's signature
    assert not forged.is_signature_valid
    with pytest.raises(PeerError, match="signature"):
        ca_mod.issue_workload(root_ca(), WEB, forged, NOW)


def _reassemble(body_from: x509.CertificateSigningRequest, sig_from: x509.CertificateSigningRequest):
    """A DER CSR with ``body_from``'s request info and ``sig_from``'s signature."""

    def tlv(tag: int, content: bytes) -> bytes:
        n = len(content)
        length = (
            bytes([n])
            if n < 128
            else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        )
        return bytes([tag]) + length + content

    algorithm = tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d040302")))  # ecdsa-with-SHA256
    signature = tlv(0x03, b"\x00" + sig_from.signature)
    return x509.load_der_x509_csr(tlv(0x30, body_from.tbs_certrequest_bytes + algorithm + signature))


def test_dns_certificate_names_and_ip_literals():
    key = ca_mod.new_private_key()
    names = ["shop.example.com", "*.shop.example.com", "127.0.0.1", "::1"]
    cert = ca_mod.issue_dns(root_ca(), names, key, NOW, timedelta(days=30))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["shop.example.com", "*.shop.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == []
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    verifier = (
        PolicyBuilder()
        .store(Store([root_ca().root]))
        .time(NOW)
        .build_server_verifier(x509.DNSName("shop.example.com"))
    )
    verifier.verify(cert, [])


def test_a_dns_certificate_needs_a_name():
    with pytest.raises(ValueError, match="at least one"):
        ca_mod.issue_dns(root_ca(), [], ca_mod.new_private_key(), NOW, timedelta(days=1))


def test_intermediate_chain_is_kept_and_verifies_to_the_root():
    authority = intermediate_ca()
    certified = ca_mod.new_workload_key(authority, WEB, NOW)
    assert certified.chain == (certified.certificate, authority.signing_cert)
    assert certified.certificate.issuer == authority.signing_cert.subject
    verify_client(authority, certified.chain)
    with pytest.raises(x509.verification.VerificationError):
        verify_client(authority, certified.chain[:1])  # without the intermediate there is no path
    pem = certified.chain_pem()
    assert pem.count(b"BEGIN CERTIFICATE") == 2
    assert ca_mod.key_matches(certified.certificate, ca_mod.load_private_key(certified.key_pem()))


def test_operator_ca_with_an_intermediate_loads_from_pem():
    operator = intermediate_ca()
    loaded = ca_mod.ca_from_pem(
        ca_mod.certificates_pem(operator.chain), ca_mod.private_key_pem(operator.key), TRUST_DOMAIN, NOW
    )
    assert loaded.chain == operator.chain
    assert loaded.root == operator.chain[-1]
    assert loaded.fingerprint == operator.fingerprint


def test_operator_root_alone_loads():
    loaded = ca_mod.ca_from_pem(
        ca_mod.certificates_pem([root_ca().root]), ca_mod.private_key_pem(root_ca().key), TRUST_DOMAIN, NOW
    )
    assert loaded.chain == (root_ca().root,)


def _problems(cert_pem: bytes, key_pem: bytes, now=NOW) -> list[str]:
    with pytest.raises(ConfigError) as err:
        ca_mod.ca_from_pem(
            cert_pem, key_pem, TRUST_DOMAIN, now, cert_file="ca-cert.pem", key_file="ca-key.pem"
        )
    return [str(p) for p in err.value.problems]


def test_operator_ca_problems():
    operator = intermediate_ca()
    chain_pem = ca_mod.certificates_pem(operator.chain)
    key_pem = ca_mod.private_key_pem(operator.key)
    other_key = ca_mod.private_key_pem(ca_mod.new_private_key())

    assert any("does not belong" in p for p in _problems(chain_pem, other_key))
    missing_root = _problems(ca_mod.certificates_pem(operator.chain[:1]), key_pem)
    assert any("must end with the self-signed root" in p for p in missing_root)
    assert all(p.startswith("ca-cert.pem:0: ") for p in missing_root)
    swapped = _problems(ca_mod.certificates_pem([operator.chain[0], root_ca().root]), key_pem)
    assert any("is not signed by the next certificate" in p for p in swapped)
    assert any("expired" in p for p in _problems(chain_pem, key_pem, now=NOW + timedelta(days=400)))
    assert any("not valid before" in p for p in _problems(chain_pem, key_pem, now=NOW - timedelta(days=2)))
    assert _problems(b"not pem", key_pem)[0].startswith("ca-cert.pem:0: not a PEM certificate chain")
    assert _problems(chain_pem, b"junk")[0].startswith("ca-key.pem:0: not an unencrypted PEM private key")


def test_operator_leaf_certificate_is_not_a_ca():
    root = root_ca()
    key = ca_mod.new_private_key()
    leaf = ca_certificate(
        root, key, "not a ca", NOW - timedelta(hours=1), NOW + timedelta(days=1), is_ca=False
    )
    problems = _problems(ca_mod.certificates_pem([leaf, root.root]), ca_mod.private_key_pem(key))
    assert any("is not a CA certificate" in p for p in problems)


def test_signed_by_tells_our_certificates_from_others():
    ours = ca_mod.issue_workload(root_ca(), WEB, ca_mod.new_private_key().public_key(), NOW)
    theirs = ca_mod.issue_workload(intermediate_ca(), WEB, ca_mod.new_private_key().public_key(), NOW)
    assert ca_mod.signed_by(ours, root_ca())
    assert not ca_mod.signed_by(theirs, root_ca())
    assert ca_mod.signed_by(theirs, intermediate_ca())


def test_the_ca_repr_never_shows_the_key():
    assert "key=" not in repr(root_ca())
    assert "private_key=" not in repr(ca_mod.new_workload_key(root_ca(), WEB, NOW))
