"""``proto/ca.proto`` is Istio's wire contract, and the committed ``_gen`` code is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pilotfish._gen import ca_pb2
from pilotfish.certs.server import CREATE_CERTIFICATE

REPO = Path(__file__).resolve().parents[3]
GEN = REPO / "src" / "pilotfish" / "_gen"


def fields(message) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_field_names_and_numbers_match_istio_api():
    """istio/api security/v1alpha1/ca.proto: these numbers are what Istio clients send."""
    assert ca_pb2.DESCRIPTOR.package == "istio.v1.auth"
    assert fields(ca_pb2.IstioCertificateRequest) == {"csr": 1, "validity_duration": 3, "metadata": 4}
    assert fields(ca_pb2.IstioCertificateResponse) == {"cert_chain": 1, "root_cert": 2}
    service = ca_pb2.DESCRIPTOR.services_by_name["IstioCertificateService"]
    assert [m.name for m in service.methods] == ["CreateCertificate"]
    assert CREATE_CERTIFICATE == "/istio.v1.auth.IstioCertificateService/CreateCertificate"


def test_generated_code_is_current(tmp_path):
    """Regenerate as ``make proto`` does (messages only: the service is registered from the
    descriptor in ``certs/server.py``) and compare with _gen/."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'proto'}",
            f"--python_out={tmp_path}",
            str(REPO / "proto" / "ca.proto"),
        ],
        check=True,
    )
    assert (GEN / "ca_pb2.py").read_text() == (tmp_path / "ca_pb2.py").read_text()
    assert not (GEN / "ca_pb2_grpc.py").exists()
