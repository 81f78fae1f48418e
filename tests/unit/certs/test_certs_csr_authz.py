"""Who may get a certificate for what: the pure decision behind CreateCertificate.

The matrix: a caller authenticated by a client certificate or a bootstrap token may obtain a
certificate for an identity it owns, and nothing else; unauthenticated, expired, foreign or
malformed credentials are refused with the status a gRPC client will see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from certs_support import DB, NOW, WEB, csr_pem, intermediate_ca, make_csr, root_ca
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.config import BootstrapToken, TokenFile
from pilotfish.certs.csr_service import (
    BootstrapTokens,
    CsrPolicy,
    CsrRefused,
    Refusal,
    authenticate,
    create_certificate,
)

TOKEN = "bootstrap-token-for-web-0001"
TOKENS = BootstrapTokens.from_file(TokenFile((BootstrapToken(TOKEN, (WEB.uri,)),)))
KEY = ca_mod.new_private_key()


def client_cert(identity=WEB, authority=None, at=NOW, ttl=timedelta(hours=24)) -> bytes:
    certified = ca_mod.new_workload_key(authority or root_ca(), identity, at, ttl)
    return certified.certificate.public_bytes(ca_mod.serialization.Encoding.PEM)


def request(
    *, uris=(WEB.uri,), dns=(), peer=None, token=None, validity=0, now=NOW, authority=None, policy=None
):
    return create_certificate(
        authority or root_ca(),
        TOKENS,
        policy or CsrPolicy(),
        csr_pem=csr_pem(make_csr(KEY, uris, dns)),
        validity_seconds=validity,
        peer_cert_pem=peer,
        authorization=None if token is None else f"Bearer {token}",
        now=now,
    )


def refusal(**kwargs) -> tuple[Refusal, str]:
    with pytest.raises(CsrRefused) as err:
        request(**kwargs)
    return err.value.refusal, err.value.message


def test_owner_by_client_certificate_gets_its_identity():
    signed = request(peer=client_cert())
    assert signed.identity == WEB
    assert ca_mod.all_sans(signed.certificate) == [WEB.uri]
    assert signed.certificate.public_key() == KEY.public_key()
    assert signed.certificate.not_valid_after_utc == NOW + timedelta(hours=24)
    leaf, root = (x509.load_pem_x509_certificate(p.encode()) for p in signed.chain_pem)
    assert leaf == signed.certificate and root == root_ca().root  # leaf first, root last


def test_owner_by_token_gets_its_identity():
    assert request(token=TOKEN).identity == WEB


def test_with_an_intermediate_the_response_chain_is_leaf_intermediate_root():
    authority = intermediate_ca()
    signed = request(peer=client_cert(authority=authority), authority=authority)
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in signed.chain_pem]
    assert chain[1:] == [authority.signing_cert, authority.root]


@pytest.mark.parametrize(
    "credentials",
    [{"peer": client_cert(WEB)}, {"token": TOKEN}],
    ids=["client-certificate", "token"],
)
def test_another_identity_is_permission_denied(credentials):
    code, message = refusal(uris=(DB.uri,), **credentials)
    assert code is Refusal.PERMISSION_DENIED
    assert DB.uri in message


def test_an_extra_dns_san_is_permission_denied():
    code, message = refusal(uris=(WEB.uri,), dns=("web.shop.svc",), peer=client_cert())
    assert code is Refusal.PERMISSION_DENIED and "web.shop.svc" in message


def test_a_san_in_another_trust_domain_is_permission_denied():
    code, _ = refusal(uris=("spiffe://other.td/ns/shop/sa/web",), token=TOKEN)
    assert code is Refusal.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        ({}, "no client certificate and no bearer token"),
        ({"token": "not-the-token-at-all"}, "unknown bootstrap token"),
        ({"peer": client_cert(at=NOW - timedelta(hours=25))}, "expired at"),
        ({"peer": client_cert(at=NOW + timedelta(hours=1))}, "not valid before"),
        ({"peer": client_cert(authority=intermediate_ca())}, "not issued by this CA"),
        ({"peer": b"garbage"}, "not a PEM certificate"),
    ],
    ids=["nothing", "bad-token", "expired-cert", "future-cert", "foreign-ca", "garbage-cert"],
)
def test_unauthenticated_callers_are_refused(credentials, reason):
    code, message = refusal(**credentials)
    assert code is Refusal.UNAUTHENTICATED
    assert reason in message


def test_a_dns_certificate_from_our_ca_is_no_identity():
    dns = ca_mod.new_dns_key(root_ca(), ["web.example.com"], NOW, timedelta(hours=1)).certificate
    code, message = refusal(peer=dns.public_bytes(ca_mod.serialization.Encoding.PEM))
    assert code is Refusal.UNAUTHENTICATED and "exactly one URI SAN" in message


def test_an_invalid_client_certificate_falls_back_to_a_valid_token():
    assert request(peer=client_cert(at=NOW - timedelta(days=2)), token=TOKEN).identity == WEB


def test_authorization_header_must_be_bearer():
    with pytest.raises(CsrRefused, match="not 'Bearer <token>'"):
        authenticate(root_ca(), TOKENS, None, f"Basic {TOKEN}", NOW)
    assert authenticate(root_ca(), TOKENS, None, f"bearer {TOKEN}", NOW).method == "token"


def test_a_csr_without_sans_or_with_two_is_invalid():
    assert refusal(uris=(), token=TOKEN)[0] is Refusal.INVALID_ARGUMENT
    two = BootstrapTokens.from_file(TokenFile((BootstrapToken(TOKEN, (WEB.uri, DB.uri)),)))
    with pytest.raises(CsrRefused) as err:
        create_certificate(
            root_ca(),
            two,
            CsrPolicy(),
            csr_pem=csr_pem(make_csr(KEY, (WEB.uri, DB.uri))),
            validity_seconds=0,
            peer_cert_pem=None,
            authorization=f"Bearer {TOKEN}",
            now=NOW,
        )
    assert err.value.refusal is Refusal.INVALID_ARGUMENT and "one SPIFFE id" in err.value.message


def test_a_malformed_csr_is_invalid_argument():
    with pytest.raises(CsrRefused) as err:
        create_certificate(
            root_ca(),
            TOKENS,
            CsrPolicy(),
            csr_pem="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            validity_seconds=0,
            peer_cert_pem=None,
            authorization=f"Bearer {TOKEN}",
            now=NOW,
        )
    assert err.value.refusal is Refusal.INVALID_ARGUMENT


def test_unauthenticated_is_decided_before_the_csr_is_read():
    with pytest.raises(CsrRefused) as err:
        create_certificate(
            root_ca(),
            TOKENS,
            CsrPolicy(),
            csr_pem="junk",
            validity_seconds=0,
            peer_cert_pem=None,
            authorization=None,
            now=NOW,
        )
    assert err.value.refusal is Refusal.UNAUTHENTICATED


def test_requested_lifetimes():
    assert request(token=TOKEN, validity=3600).certificate.not_valid_after_utc == NOW + timedelta(hours=1)
    assert request(token=TOKEN, validity=-5).certificate.not_valid_after_utc == NOW + timedelta(hours=24)
    policy = CsrPolicy(default_ttl=timedelta(hours=2), max_ttl=timedelta(hours=4))
    assert request(token=TOKEN, policy=policy).certificate.not_valid_after_utc == NOW + timedelta(hours=2)
    code, message = refusal(token=TOKEN, validity=5 * 3600, policy=policy)
    assert code is Refusal.INVALID_ARGUMENT and "greater than the max allowed TTL" in message


def test_tokens_are_kept_as_digests():
    assert TOKEN.encode() not in repr(TOKENS.__dict__).encode()
    assert TOKENS.identities(TOKEN) == frozenset({WEB})
    assert TOKENS.identities(TOKEN + "x") is None
    assert len(TOKENS) == 1


VALID_DER = make_csr(KEY, (WEB.uri,)).public_bytes(ca_mod.serialization.Encoding.DER)


def as_pem(der: bytes) -> str:
    import base64

    return (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(der).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_csr_is_signed_or_refused_with_a_status(data):
    """Fuzz: flip, cut or append bytes of a valid CSR, or send arbitrary text. The decision is
    a certificate for WEB or a ``CsrRefused``, never another exception."""
    der = bytearray(VALID_DER)
    for _ in range(data.draw(st.integers(0, 4))):
        position = data.draw(st.integers(0, len(der) - 1))
        der[position] = data.draw(st.integers(0, 255))
    der = der[: data.draw(st.integers(0, len(der)))] + data.draw(st.binary(max_size=8))
    text = data.draw(st.one_of(st.just(as_pem(bytes(der))), st.text(max_size=200)))
    try:
        signed = create_certificate(
            root_ca(),
            TOKENS,
            CsrPolicy(),
            csr_pem=text,
            validity_seconds=0,
            peer_cert_pem=None,
            authorization=f"Bearer {TOKEN}",
            now=NOW,
        )
    except CsrRefused as refused:
        assert refused.refusal in (Refusal.INVALID_ARGUMENT, Refusal.PERMISSION_DENIED)
    else:
        assert ca_mod.all_sans(signed.certificate) == [WEB.uri]


def test_a_signed_csr_with_a_malformed_san_extension_is_invalid_argument():
    """cryptography parses extensions lazily; the error must still become INVALID_ARGUMENT."""
    garbage = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x01\x01\xff"
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(garbage, False)
    code, message = refusal_for(csr.sign(KEY, ca_mod.hashes.SHA256()))
    assert code is Refusal.INVALID_ARGUMENT and "invalid CSR" in message


def refusal_for(csr: x509.CertificateSigningRequest) -> tuple[Refusal, str]:
    with pytest.raises(CsrRefused) as err:
        create_certificate(
            root_ca(),
            TOKENS,
            CsrPolicy(),
            csr_pem=csr_pem(csr),
            validity_seconds=0,
            peer_cert_pem=None,
            authorization=f"Bearer {TOKEN}",
            now=NOW,
        )
    return err.value.refusal, err.value.message
