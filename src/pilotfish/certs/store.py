"""Where the CA's key material lives, and the inventory of what it issued.

``CaStorage`` is the seam: today a directory (``DirectoryStorage``), later the datastore. The
directory uses the file names of Istio's plugged-in CA secret ``cacerts``
(https://istio.io/latest/docs/tasks/security/cert-management/plugin-ca-cert/), so a directory
pilotfish created can be handed back to ``--ca-cert``/``--ca-key``::

    <dir>/ca/ca-cert.pem  ca-key.pem  root-cert.pem
    <dir>/dns/<secretName>/cert-chain.pem  key.pem

Directories are created 0700 and every file 0600, written to a temporary file and renamed into
place, so a reader sees the old file or the new one, never half of one. The key is written
before the certificate; a crash in between leaves a pair whose key does not match, which the
readers detect (``ca_from_pem`` refuses it, ``DnsCertCache`` reissues).

``Inventory`` lists issued certificates for ``/debug``: serial, SANs, validity. It takes only
certificates, so no private key can reach it.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.hooks import CertHooks, CertKind
from pilotfish.errors import ConfigError, Problem

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a Kubernetes Secret name (DNS-1123 subdomain)


@dataclass(frozen=True, slots=True)
class StoredPair:
    """A PEM certificate chain and its PEM private key, as kept by a ``CaStorage``."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)


class CaStorage(Protocol):
    """Persistence of the CA and of DNS certificates; implementations keep keys private."""

    def read_ca(self) -> StoredPair | None: ...

    def write_ca(self, pair: StoredPair, root_pem: bytes) -> None: ...

    def read_dns(self, secret_name: str) -> StoredPair | None: ...

    def write_dns(self, secret_name: str, pair: StoredPair) -> None: ...

    def describe(self) -> str: ...


class DirectoryStorage:
    """``CaStorage`` in a local directory (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca" / "ca-cert.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.root / "ca" / "ca-key.pem"

    @property
    def root_cert_path(self) -> Path:
        return self.root / "ca" / "root-cert.pem"

    def read_ca(self) -> StoredPair | None:
        return _read_pair(self.ca_cert_path, self.ca_key_path)

    def write_ca(self, pair: StoredPair, root_pem: bytes) -> None:
        write_private_file(self.ca_key_path, pair.key_pem)
        write_private_file(self.ca_cert_path, pair.cert_pem)
        write_private_file(self.root_cert_path, root_pem)

    def read_dns(self, secret_name: str) -> StoredPair | None:
        folder = self._dns_dir(secret_name)
        return _read_pair(folder / "cert-chain.pem", folder / "key.pem")

    def write_dns(self, secret_name: str, pair: StoredPair) -> None:
        folder = self._dns_dir(secret_name)
        write_private_file(folder / "key.pem", pair.key_pem)
        write_private_file(folder / "cert-chain.pem", pair.cert_pem)

    def _dns_dir(self, secret_name: str) -> Path:
        if not _SAFE_NAME.match(secret_name) or ".." in secret_name:
            raise ValueError(f"invalid secret name {secret_name!r}")
        return self.root / "dns" / secret_name


class MemoryStorage:
    """``CaStorage`` that keeps nothing past the process: a CA for tests and throwaway servers."""

    def __init__(self) -> None:
        self._ca: StoredPair | None = None
        self._dns: dict[str, StoredPair] = {}

    def describe(self) -> str:
        return "memory"

    def read_ca(self) -> StoredPair | None:
        return self._ca

    def write_ca(self, pair: StoredPair, root_pem: bytes) -> None:
        self._ca = pair

    def read_dns(self, secret_name: str) -> StoredPair | None:
        return self._dns.get(secret_name)

    def write_dns(self, secret_name: str, pair: StoredPair) -> None:
        self._dns[secret_name] = pair


def _read_pair(cert_path: Path, key_path: Path) -> StoredPair | None:
    if not cert_path.exists() and not key_path.exists():
        return None
    warn_if_readable_by_others(key_path)
    return StoredPair(cert_path.read_bytes(), key_path.read_bytes())


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, creating parents with mode 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is filtered by the umask; 0600 is what we promise
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def warn_if_readable_by_others(key_path: Path) -> None:
    """Log a warning when a private key file is open to group or others (``ssh`` refuses those)."""
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        log.warning("private key %s has mode %04o; it should be 0600", key_path, mode)


# ---- opening the CA ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatorCa:
    """``--ca-cert FILE --ca-key FILE``: the signing certificate followed by its chain up to the
    root, and the signing key (Istio's ``cacerts``: ``ca-cert.pem`` + ``cert-chain.pem``)."""

    cert_file: Path
    key_file: Path


def open_ca(
    storage: CaStorage, trust_domain: str, now: datetime, operator: OperatorCa | None = None
) -> ca_mod.CertificateAuthority:
    """The operator's CA if given; else the one kept in ``storage``; else a new self-signed root,
    written to ``storage`` (istiod does the same with its ``istio-ca-secret``). ``ConfigError``
    when the material is unusable."""
    if operator is not None:
        return _read_operator_ca(operator, trust_domain, now)
    pair = storage.read_ca()
    if pair is not None:
        where = storage.describe()
        return ca_mod.ca_from_pem(
            pair.cert_pem,
            pair.key_pem,
            trust_domain,
            now,
            cert_file=f"{where}: CA",
            key_file=f"{where}: CA key",
        )
    authority = ca_mod.self_signed_root(trust_domain, now)
    chain_pem = ca_mod.certificates_pem(authority.chain)
    storage.write_ca(
        StoredPair(chain_pem, ca_mod.private_key_pem(authority.key)),
        ca_mod.certificates_pem([authority.root]),
    )
    log.info("generated a self-signed root CA for trust domain %s in %s", trust_domain, storage.describe())
    return authority


def _read_operator_ca(operator: OperatorCa, trust_domain: str, now: datetime) -> ca_mod.CertificateAuthority:
    cert_pem, key_pem = _read_file(operator.cert_file), _read_file(operator.key_file)
    warn_if_readable_by_others(operator.key_file)
    names = {"cert_file": str(operator.cert_file), "key_file": str(operator.key_file)}
    return ca_mod.ca_from_pem(cert_pem, key_pem, trust_domain, now, **names)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(f"cannot read: {exc.strerror}", "", str(path))]) from None


def report_ca(ca: ca_mod.CertificateAuthority, hooks: CertHooks, inventory: Inventory) -> None:
    """Show the CA's own certificates in ``/debug`` and the expiry gauge: the root as ``ROOTCA``
    (its SDS name), an intermediate that signs as ``ca-signing``."""
    named = [("ROOTCA", ca.root)] + ([("ca-signing", ca.signing_cert)] if len(ca.chain) > 1 else [])
    for name, cert in named:
        inventory.record("ca", name, cert)
        hooks.on_cert_expiry(
            name, cert.not_valid_after_utc.timestamp(), cert.not_valid_before_utc.timestamp()
        )


# ---- inventory --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    """What ``/debug`` shows of one issued certificate: public facts only."""

    kind: CertKind
    name: str  # the SPIFFE id, the DNS secret name, or "server"
    serial: str  # lower-case hex
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "serial": self.serial,
            "sans": list(self.sans),
            "notBefore": self.not_before.isoformat(),
            "notAfter": self.not_after.isoformat(),
        }


class Inventory:
    """The current certificate per (kind, name); thread-safe (the CA server's TLS callback runs
    on a gRPC core thread)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], IssuedRecord] = {}
        self._lock = threading.Lock()

    def record(self, kind: CertKind, name: str, cert: x509.Certificate) -> None:
        entry = IssuedRecord(
            kind,
            name,
            f"{cert.serial_number:x}",
            tuple(ca_mod.all_sans(cert)),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
        )
        with self._lock:
            self._records[(kind, name)] = entry

    def forget(self, kind: CertKind, name: str) -> None:
        with self._lock:
            self._records.pop((kind, name), None)

    def records(self) -> tuple[IssuedRecord, ...]:
        with self._lock:
            return tuple(sorted(self._records.values(), key=lambda r: (r.kind, r.name)))

    def to_json(self) -> list[dict[str, Any]]:
        """The ``/debug/certs`` body: one object per certificate, sorted by kind and name."""
        return [record.to_json() for record in self.records()]
