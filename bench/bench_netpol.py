"""NetworkPolicy enforcement: the latency it adds to allowed HTTP requests (issue "NetworkPolicy").

One ``pilotfish serve``, a server sidecar (``api``, 127.0.14.11, echo app behind it) and a client
sidecar (``web``, 127.0.14.21), both real Envoy 1.40 (concurrency 1) configured over ADS. The
policy file alternates between nothing ("off") and a NetworkPolicy that isolates ``api`` and
admits ``web`` on the HTTP port ("on": network RBAC first in the server's inbound chains, the
client's clusters bound to its IP). The same Envoys serve every round; after each switch the
script waits until the server's RBAC stats appear (on) or vanish (off) and for old connections
to drain (``--drain-time-s 1``). Per round and mode, two closed-loop series:

  keep-alive  — requests over one kept-alive connection through the client sidecar's outbound
                listener (the common path: RBAC ran once, when the pooled connection opened);
  new-conn    — one new TCP connection per request, straight to the server sidecar from the
                client's IP (RBAC evaluates every request's connection).

The ratio on/off of the medians is printed per series (1.00 = no difference); the rounds
alternate so drift on a shared machine hits both modes alike.

    .venv/bin/python bench/bench_netpol.py [--rounds 5] [--requests 1500] [--write-results]
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.echo import EchoProcess  # noqa: E402
from harness.envoy import EnvoyProcess  # noqa: E402
from harness.pilotfish import PilotfishProcess  # noqa: E402
from harness.waiting import wait_for  # noqa: E402

from pilotfish.bootstrap import BootstrapOptions, bootstrap  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
NONE = "# no NetworkPolicy\n"  # not an empty file: one truncated to 0 bytes keeps its last content
API_IP, WEB_IP = "127.0.14.11", "127.0.14.21"
HOST = "api.prod.svc.cluster.local"
POLICY = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: PORT}]}]
"""


def free_port() -> int:
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((API_IP, 0))
            port = int(probe.getsockname()[1])
        try:
            for address in ("127.0.0.1", WEB_IP):
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def world(port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: prod}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: api}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api, namespace: prod}}
spec: {{address: {API_IP}, labels: {{app: api}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web, namespace: prod}}
spec: {{address: {WEB_IP}, labels: {{app: web}}}}
"""


def keep_alive(port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection(WEB_IP, port, timeout=5)
    out = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            conn.request("GET", "/bench", headers={"host": HOST})
            response = conn.getresponse()
            response.read()
            out.append(time.perf_counter() - start)
            assert response.status == 200, response.status
    finally:
        conn.close()
    return out


def new_connections(port: int, n: int) -> list[float]:
    request = f"GET /bench HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        with socket.create_connection((API_IP, port), timeout=5, source_address=(WEB_IP, 0)) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        out.append(time.perf_counter() - start)
        assert data.startswith(b"HTTP/1.1 200"), data[:80]
    return out


def rbac_present(server: EnvoyProcess) -> bool:
    return any(k.startswith("netpol_ingress.") for k in server.stats())


def switch(policies: Path, server: EnvoyProcess, port: int, on: bool) -> None:
    policies.write_text(POLICY.replace("PORT", str(port)) if on else NONE)
    wait_for(lambda: rbac_present(server) == on, timeout=20, message=f"enforcement {'on' if on else 'off'}")
    time.sleep(1.5)  # connections of the previous config drain (--drain-time-s 1)
    keep_alive(port, 50)  # warm the pools


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    rounds: int, requests: int
) -> tuple[dict[str, dict[str, list[float]]], dict[tuple[str, str], list[float]]]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-netpol-"))
    config = workdir / "config"
    config.mkdir()
    (config / "world.yaml").write_text(world(port))
    policies = config / "policies.yaml"
    policies.write_text(NONE)
    echo = EchoProcess("api", labels={"app": "api"})
    pf = PilotfishProcess(config, workdir / "pilotfish")
    envoys: list[EnvoyProcess] = []
    samples: dict[str, dict[str, list[float]]] = {
        mode: {"keep-alive": [], "new-conn": []} for mode in ("off", "on")
    }
    # The median of each series in each round, by (mode, series): the noise between rounds.
    rounds_p50: dict[tuple[str, str], list[float]] = {}
    try:
        echo.start()
        pf.start()
        for name, ip, extra in (
            ("api", API_IP, {"app_ports": {port: echo.port}}),
            ("web", WEB_IP, {"outbound_bind": WEB_IP}),
        ):
            opts = BootstrapOptions(
                name, "prod", {"app": name}, ip=ip, xds_port=pf.xds_port, admin_port=0, **extra
            )  # type: ignore[arg-type]
            envoy = EnvoyProcess(
                bootstrap(opts), workdir=workdir / name, name=name, extra_args=["--drain-time-s", "1"]
            )
            envoys.append(envoy)
            envoy.start()
        server = envoys[0]
        wait_for(lambda: keep_alive(port, 1), timeout=20, message="the mesh answers")
        for _ in range(rounds):
            for mode in ("off", "on"):
                switch(policies, server, port, mode == "on")
                for name, values in (
                    ("keep-alive", keep_alive(port, requests)),
                    ("new-conn", new_connections(port, requests // 3)),
                ):
                    rounds_p50.setdefault((mode, name), []).append(statistics.median(values))
                    samples[mode][name] += values
    finally:
        for envoy in envoys:
            envoy.stop()
        pf.stop()
        echo.stop()
    return samples, rounds_p50


def report(
    samples: dict[str, dict[str, list[float]]],
    rounds_p50: dict[tuple[str, str], list[float]],
    rounds: int,
    requests: int,
) -> str:
    lines = [
        "| series | enforcement | requests | p50 | p90 | p99 |",
        "|---|---|---|---|---|---|",
    ]
    ratios = []
    for series in ("keep-alive", "new-conn"):
        for mode in ("off", "on"):
            values = samples[mode][series]
            cells = " | ".join(f"{percentile(values, q) * 1000:.3f} ms" for q in (0.5, 0.9, 0.99))
            lines.append(f"| {series} | {mode} | {len(values)} | {cells} |")
        ratio = statistics.median(samples["on"][series]) / statistics.median(samples["off"][series])
        ratios.append(f"{series} p50 on/off **{ratio:.3f}**")
    lines.append("")
    lines.append(
        "Ratio: "
        + ", ".join(ratios)
        + f" ({rounds} alternating rounds, {requests} keep-alive requests each)."
    )
    for series in ("keep-alive", "new-conn"):
        off, on = rounds_p50[("off", series)], rounds_p50[("on", series)]
        per_round = ", ".join(f"{b / a:.3f}" for a, b in zip(off, on, strict=True))
        lines.append(
            f"Noise ({series}): the p50 of the off rounds alone spans a factor of {max(off) / min(off):.3f}; "
            f"on/off per round: {per_round}."
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    samples, rounds_p50 = run(args.rounds, args.requests)
    text = report(samples, rounds_p50, args.rounds, args.requests)
    print(text)
    if args.write_results:
        with RESULTS.open("a") as out:
            out.write(
                "\n## NetworkPolicy enforcement: added latency of allowed HTTP requests\n\n"
                "`.venv/bin/python bench/bench_netpol.py --write-results` "
                f"({time.strftime('%Y-%m-%d')}; see the script's docstring for the setup)\n\n{text}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
