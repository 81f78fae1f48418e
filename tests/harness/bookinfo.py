"""The bookinfo example (examples/bookinfo) running for real: pilotfish, one echo app and one Envoy
sidecar per workload, and an ingress gateway — every workload on its own loopback IP.

The example's fixed ports are replaced by free ones: the service port (9080 in the example) and
each app's local port (the echo binds port 0 and reports it), so a test run never collides with a
demo or another run.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port
from pilotfish.bootstrap import BootstrapOptions, bootstrap

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
NAMESPACE = "default"


@dataclass
class Workload:
    name: str
    ip: str
    outbound_bind: str
    echo: EchoProcess | None = None
    envoy: EnvoyProcess | None = None

    @property
    def app_port(self) -> int:
        """The port the echo app bound (port 0, reported back: no race with other processes)."""
        assert self.echo is not None, f"{self.name}: the app is not started"
        return self.echo.port

    @property
    def node_id(self) -> str:
        return BootstrapOptions(self.name, NAMESPACE, ip=self.ip).full_node_id()


@dataclass
class Bookinfo:
    root: Path
    port: int  # the services' port (9080 in the example)
    workloads: dict[str, Workload] = field(default_factory=dict)
    gateway: EnvoyProcess | None = None
    gateway_ip: str = ""
    gateway_port: int = 0
    pilotfish: PilotfishProcess | None = None
    pilotfish_args: list[str] = field(default_factory=list)  # extra ``pilotfish serve`` flags
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def config(self) -> Path:
        return self.root / "config"

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Bookinfo:
        topology = json.loads((EXAMPLE / "topology.json").read_text())
        self.config.mkdir(parents=True)
        text = (EXAMPLE / "bookinfo.yaml").read_text()
        self.gateway_port = free_port()
        text = text.replace("number: 8080", f"number: {self.gateway_port}")
        for doc in re.sub(r"\b9080\b", str(self.port), text).split("\n---\n"):
            # One file per resource (kind-name.yaml): a test replaces a resource by rewriting its file.
            kind = re.search(r"^kind: (\w+)", doc, re.M)
            name = re.search(r"^  name: ([\w.-]+)", doc, re.M)
            assert kind and name, doc
            (self.config / f"{kind.group(1).lower()}-{name.group(1)}.yaml").write_text(doc)
        for entry in topology["workloads"]:
            w = Workload(entry["name"], entry["ip"], entry["outbound_bind"])
            self.workloads[w.name] = w
        pilotfish = PilotfishProcess(self.config, self.root / "pf", extra_args=self.pilotfish_args)
        self.pilotfish = self._stack.enter_context(_stopping(pilotfish))
        self.pilotfish.start()
        for w in self.workloads.values():
            app, version = w.name.rsplit("-", 1)
            w.echo = self._stack.enter_context(EchoProcess(w.name, labels={"app": app, "version": version}))
            w.envoy = self._start_envoy(self._sidecar(w), w.name)
        gw = topology["gateway"]
        self.gateway_ip = gw["ip"]
        opts = BootstrapOptions(
            gw["name"],
            gw["namespace"],
            gw["labels"],
            gateway=True,
            ip=gw["ip"],
            xds_port=self.pilotfish.xds_port,
            admin_port=0,
        )
        self.gateway = self._start_envoy(bootstrap(opts), "gateway")
        return self

    def _sidecar(self, w: Workload) -> dict[str, Any]:
        app, version = w.name.rsplit("-", 1)
        assert self.pilotfish is not None
        opts = BootstrapOptions(
            w.name,
            NAMESPACE,
            {"app": app, "version": version},
            service_account=f"bookinfo-{app}",
            ip=w.ip,
            xds_port=self.pilotfish.xds_port,
            admin_port=0,
            app_ports={self.port: w.app_port},
            outbound_bind=w.outbound_bind,
        )
        return bootstrap(opts)

    def _start_envoy(self, config: dict[str, Any], name: str) -> EnvoyProcess:
        envoy = EnvoyProcess(config, workdir=self.root / f"envoy-{name}", name=name)
        self._stack.enter_context(_stopping(envoy))
        envoy.start(wait=False)
        return envoy

    def wait_ready(self, timeout: float = 30.0) -> None:
        for envoy in [*(w.envoy for w in self.workloads.values()), self.gateway]:
            assert envoy is not None
            envoy.wait_ready(timeout)

    def stop(self) -> None:
        self._stack.close()

    def diagnostics(self) -> str:
        parts = [f"--- pilotfish\n{self.pilotfish.log_text()[-4000:] if self.pilotfish else ''}"]
        for w in self.workloads.values():
            if w.envoy is not None:
                parts.append(f"--- envoy {w.name}\n{w.envoy.log_tail(40)}")
        return "\n".join(parts)

    # ---- config and traffic -------------------------------------------------------------------

    def apply(self, name: str, text: str) -> None:
        """Write a config file atomically and wait until every proxy ACKs the resulting push."""
        assert self.pilotfish is not None
        before = self._rds_versions()
        tmp = self.config / f".{name}.tmp"
        tmp.write_text(re.sub(r"\b9080\b", str(self.port), text))
        tmp.rename(self.config / name)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = self._rds_versions()
            if now != before and all(self._synced(node) for node in now):
                return
            time.sleep(0.02)
        raise AssertionError(f"no RDS push ACKed after writing {name}: {self.pilotfish.syncz()}")

    def _rds_versions(self) -> dict[str, str]:
        assert self.pilotfish is not None
        return {
            row["proxy"]: row["types"].get("RDS", {}).get("acked_version", "")
            for row in self.pilotfish.syncz()
        }

    def _synced(self, node: str) -> bool:
        assert self.pilotfish is not None
        return all(
            self.pilotfish.type_status(node, t).get("state") in ("SYNCED", None)
            for t in ("CDS", "LDS", "RDS")
        )

    def url(self, via: str, path: str = "/") -> str:
        """The outbound listener of ``via``'s sidecar, on the services' port."""
        return f"http://{self.workloads[via].outbound_bind}:{self.port}{path}"

    def gateway_url(self, path: str = "/") -> str:
        return f"http://{self.gateway_ip}:{self.gateway_port}{path}"

    def call(self, host: str, path: str = "/", via: str = "productpage-v1", **headers: str) -> http.Response:
        return http.get(self.url(via, path), headers={"host": host, **headers}, timeout=10)


class _stopping:
    """Context manager that stops a process wrapper on exit (start is the caller's business)."""

    def __init__(self, process: Any) -> None:
        self.process = process

    def __enter__(self) -> Any:
        return self.process

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


def copy_example(target: Path) -> None:
    shutil.copytree(EXAMPLE, target)
