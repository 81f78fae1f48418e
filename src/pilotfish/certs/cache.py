"""Issued certificates kept until their half-life: one per workload identity, one per DNS secret.

Reusing a certificate until ``needs_rotation`` keeps SDS content stable (the xDS cache hashes
resources, so an unchanged certificate pushes nothing) and matches Istio, whose agent asks for a
new certificate only at half-life. A certificate is also replaced when the CA that signed it is no
longer the current one. ``due(now)`` and ``next_rotation()`` tell the server when to rebuild.

The clock is always an argument; the caches only hold state and call the hooks and inventory.
DNS certificates are also kept in ``CaStorage`` so a restart does not reissue them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.ca import DEFAULT_WORKLOAD_TTL, CertificateAuthority, CertifiedKey
from pilotfish.certs.config import DnsCertificate
from pilotfish.certs.hooks import NO_HOOKS, CertHooks, CertKind
from pilotfish.certs.identity import SpiffeId
from pilotfish.certs.rotation import needs_rotation, next_rotation
from pilotfish.certs.store import CaStorage, Inventory, StoredPair

log = logging.getLogger(__name__)


class _Kept:
    """The current certificate per key, the bookkeeping both caches share."""

    def __init__(self, kind: CertKind, hooks: CertHooks, inventory: Inventory | None) -> None:
        self.kind = kind
        self.hooks = hooks
        self.inventory = inventory if inventory is not None else Inventory()
        self.entries: dict[str, CertifiedKey] = {}
        self.lock = threading.Lock()

    def fresh(self, name: str, ca: CertificateAuthority, now: datetime) -> CertifiedKey | None:
        kept = self.entries.get(name)
        if (
            kept is None
            or needs_rotation(kept.certificate, now)
            or not ca_mod.signed_by(kept.certificate, ca)
        ):
            return None
        return kept

    def keep(self, name: str, certified: CertifiedKey, *, issued: bool) -> None:
        replaced = name in self.entries
        self.entries[name] = certified
        cert = certified.certificate
        if issued:
            self.hooks.on_cert_issued(self.kind)
            if replaced:
                self.hooks.on_cert_rotated(self.kind)
        self.hooks.on_cert_expiry(
            name, cert.not_valid_after_utc.timestamp(), cert.not_valid_before_utc.timestamp()
        )
        self.inventory.record(self.kind, name, cert)

    def drop_all_but(self, names: set[str]) -> None:
        for name in [n for n in self.entries if n not in names]:
            del self.entries[name]
            self.hooks.on_cert_forgotten(name)
            self.inventory.forget(self.kind, name)

    def due(self, now: datetime) -> list[str]:
        return sorted(name for name, kept in self.entries.items() if needs_rotation(kept.certificate, now))

    def next_rotation(self) -> datetime | None:
        return min((next_rotation(kept.certificate) for kept in self.entries.values()), default=None)


class WorkloadCertCache:
    """Workload X.509-SVIDs by identity, minted by the control plane and delivered over SDS."""

    def __init__(
        self,
        hooks: CertHooks = NO_HOOKS,
        inventory: Inventory | None = None,
        ttl: timedelta = DEFAULT_WORKLOAD_TTL,
    ) -> None:
        self._kept = _Kept("workload", hooks, inventory)
        self.ttl = ttl

    def get(self, ca: CertificateAuthority, identity: SpiffeId, now: datetime) -> CertifiedKey:
        """The certificate for ``identity``: the kept one, or a new one when it reached half-life."""
        with self._kept.lock:
            kept = self._kept.fresh(identity.uri, ca, now)
            if kept is not None:
                return kept
            certified = ca_mod.new_workload_key(ca, identity, now, self.ttl)
            self._kept.keep(identity.uri, certified, issued=True)
            return certified

    def retain(self, identities: Iterable[SpiffeId]) -> None:
        """Forget every identity not listed (no proxy uses it any more)."""
        with self._kept.lock:
            self._kept.drop_all_but({identity.uri for identity in identities})

    def due(self, now: datetime) -> list[str]:
        """SPIFFE ids whose certificate needs rotation at ``now``: their proxies need a new SDS push."""
        with self._kept.lock:
            return self._kept.due(now)

    def next_rotation(self) -> datetime | None:
        """When the earliest kept certificate reaches half-life (``None`` when nothing is kept)."""
        with self._kept.lock:
            return self._kept.next_rotation()


class DnsCertCache:
    """DNS certificates by secret name, persisted in ``CaStorage`` and reissued at half-life."""

    def __init__(
        self, storage: CaStorage, hooks: CertHooks = NO_HOOKS, inventory: Inventory | None = None
    ) -> None:
        self._storage = storage
        self._kept = _Kept("dns", hooks, inventory)

    def get(self, ca: CertificateAuthority, spec: DnsCertificate, now: datetime) -> CertifiedKey:
        """The certificate for ``spec``: kept in memory, else from storage if still good, else new."""
        with self._kept.lock:
            kept = self._kept.fresh(spec.secret_name, ca, now)
            if kept is not None and _sans_match(kept.certificate, spec):
                return kept
            stored = self._stored(ca, spec, now)
            if stored is not None:
                self._kept.keep(spec.secret_name, stored, issued=False)
                return stored
            certified = ca_mod.new_dns_key(ca, spec.dns_names, now, spec.ttl)
            self._storage.write_dns(spec.secret_name, StoredPair(certified.chain_pem(), certified.key_pem()))
            self._kept.keep(spec.secret_name, certified, issued=True)
            return certified

    def _stored(self, ca: CertificateAuthority, spec: DnsCertificate, now: datetime) -> CertifiedKey | None:
        pair = self._storage.read_dns(spec.secret_name)
        if pair is None:
            return None
        try:
            certified = _parse_pair(pair)
        except ValueError as exc:
            log.warning(
                "stored DNS certificate %s is unreadable (%s); issuing a new one", spec.secret_name, exc
            )
            return None
        usable = (
            not needs_rotation(certified.certificate, now)
            and ca_mod.signed_by(certified.certificate, ca)
            and _sans_match(certified.certificate, spec)
        )
        return certified if usable else None

    def retain(self, secret_names: Iterable[str]) -> None:
        with self._kept.lock:
            self._kept.drop_all_but(set(secret_names))

    def due(self, now: datetime) -> list[str]:
        with self._kept.lock:
            return self._kept.due(now)

    def next_rotation(self) -> datetime | None:
        with self._kept.lock:
            return self._kept.next_rotation()


def _parse_pair(pair: StoredPair) -> CertifiedKey:
    chain = tuple(x509.load_pem_x509_certificates(pair.cert_pem))
    key = ca_mod.load_private_key(pair.key_pem)
    if not ca_mod.key_matches(chain[0], key):
        raise ValueError("the stored key does not match the stored certificate")
    return CertifiedKey(chain, key)


def _sans_match(cert: x509.Certificate, spec: DnsCertificate) -> bool:
    wanted = [str(ca_mod.general_name(name).value) for name in spec.dns_names]
    return ca_mod.all_sans(cert) == wanted
