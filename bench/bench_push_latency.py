"""Config change → Envoy ACK latency (issue "xDS server" performance line).

A real ``pilotfish serve`` watches a config directory; a real Envoy is connected over ADS. Each
trial rewrites one WorkloadEntry (its weight), atomically, and measures the time until pilotfish
reports Envoy's ACK of the new EDS version (polling /debug/syncz every 2 ms).

Two runs in the same process, same machine:
  default  — Istio's debounce: 100 ms quiet period (PILOT_DEBOUNCE_AFTER);
  baseline — debounce 0: the same pipeline (watch, load, translate, push, ACK) with no quiet period.
The ratio default/baseline shows what the debounce costs; Istio measured 120–375 ms end to end.

    .venv/bin/python bench/bench_push_latency.py [--trials 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.echo import EchoProcess  # noqa: E402
from harness.envoy import EnvoyProcess  # noqa: E402
from harness.mesh import node_id, sidecar_bootstrap  # noqa: E402
from harness.pilotfish import PilotfishProcess  # noqa: E402

SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: prod}
spec:
  hosts: [ratings.prod.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: ratings}}
"""


def workload(port: int, weight: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-1, namespace: prod}}
spec: {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{app: ratings}}, weight: {weight}}}
"""


def acked_eds(pf: PilotfishProcess) -> tuple[str, str]:
    status = pf.type_status(node_id(), "EDS")
    return str(status.get("acked_version", "")), str(status.get("state", ""))


def run(debounce: float, trials: int, workdir: Path) -> list[float]:
    config = workdir / f"config-{debounce}"
    config.mkdir()
    with EchoProcess("ratings-1") as echo:
        (config / "service.yaml").write_text(SERVICE)
        (config / "we.yaml").write_text(workload(echo.port, 1))
        pf = PilotfishProcess(
            config, workdir / f"pf-{debounce}", extra_args=["--debounce-after", str(debounce)]
        )
        pf.start()
        try:
            with EnvoyProcess(sidecar_bootstrap(pf.xds_port), workdir=workdir / f"envoy-{debounce}") as envoy:
                envoy.wait_for(lambda: bool(envoy.endpoints("outbound|9080||ratings.prod.svc.cluster.local")))
                pf.wait_synced(node_id())
                return [trial(pf, config, echo.port, weight) for weight in range(2, trials + 2)]
        finally:
            pf.stop()


def trial(pf: PilotfishProcess, config: Path, port: int, weight: int) -> float:
    before, _ = acked_eds(pf)
    time.sleep(0.3)  # let the previous push settle, so trials are independent
    tmp = config / ".we.tmp"
    tmp.write_text(workload(port, weight))
    t0 = time.perf_counter()
    tmp.rename(config / "we.yaml")
    deadline = t0 + 15
    while time.perf_counter() < deadline:
        version, state = acked_eds(pf)
        if version != before and state == "SYNCED":
            return time.perf_counter() - t0
        time.sleep(0.002)
    raise TimeoutError(f"no ACK of weight {weight} within 15 s")


def describe(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{name}: p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (n={len(ordered)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        default = run(0.1, args.trials, Path(tmp))
        baseline = run(0.0, args.trials, Path(tmp))
    print(describe("default (debounce 100 ms)", default) + "   target p50 <= 150 ms")
    print(describe("baseline (debounce 0)", baseline))
    print(f"ratio p50 default/baseline: {statistics.median(default) / statistics.median(baseline):.2f}")


if __name__ == "__main__":
    main()
