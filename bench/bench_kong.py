"""Kong's plugins in the Check server: per-request CPU of key-auth + ACL + redis rate limiting
against a plain AuthorizationPolicy Check (issue "Kong's model on Envoy": aim ≤ +50 %).

One process runs ``CheckService`` (the code a Check worker runs) on real ``CheckRequest``
messages from a gateway, 64 in flight (a loaded server's concurrency), twice per round,
alternating for ``--rounds`` rounds (gRPC transport cost, equal for both, is left out):

  plain — an AuthorizationPolicy (ALLOW GET on /api/*) selects the gateway;
  kong  — the same policy, plus 200 Consumers with API keys and groups, and Plugins key-auth,
          acl (allow gold) and rate-limiting (policy redis, limit_by consumer, a limit never
          reached) scoped to the route: every request is authenticated, authorized by group and
          counted in the real Redis at 127.0.0.1:6379 (INCR+EXPIRE per request).

Every request has its own path, so the decision cache (which never holds rate-limited answers)
serves neither series: both pay for a full decision. CPU is this process's user+system time
(``time.process_time``) per Check, including the Redis client's work; the Redis server's own
CPU is reported separately (from /proc, when the server runs on this machine). Prints the
median of the rounds and the ratio kong/plain.

    .venv/bin/python bench/bench_kong.py [--requests 3000] [--rounds 5] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import struct_pb2

from pilotfish.config.loader import load_text
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.server import CheckService
from pilotfish.kong.check import KONG_METADATA, PROXY_TYPE_KEY

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CONSUMERS = 200
METADATA = (
    ("x-pilotfish-namespace", "istio-system"),
    ("x-pilotfish-labels", json.dumps({"istio": "ingressgateway"})),
    ("x-pilotfish-workload", "gw"),
    (PROXY_TYPE_KEY, "router"),
)

POLICY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{to: [{operation: {methods: [GET], paths: [/api/*]}}]}]
"""


def kong_config(run: str) -> str:
    docs = [POLICY]
    for i in range(CONSUMERS):
        group = "gold" if i % 2 == 0 else "silver"
        docs.append(
            "apiVersion: pilotfish.io/v1alpha1\nkind: Consumer\n"
            f"metadata: {{name: c{i}, namespace: default}}\n"
            f"spec: {{username: c{i}, keyAuth: [{{key: key-{run}-{i}}}], acls: [{{group: {group}}}]}}\n"
        )
    plugins = [
        ("key-auth", "{}"),
        ("acl", "{allow: [gold]}"),
        (
            "rate-limiting",
            "{minute: 100000000, policy: redis, redis_host: 127.0.0.1, redis_port: 6379, fault_tolerant: false}",
        ),
    ]
    for name, config in plugins:
        docs.append(
            "apiVersion: pilotfish.io/v1alpha1\nkind: Plugin\n"
            f"metadata: {{name: {name}, namespace: default}}\n"
            f"spec: {{plugin: {name}, route: api, config: {config}}}\n"
        )
    return "---\n".join(docs)


def bundle(text: str) -> AuthzBundle:
    loaded = load_text(text)
    assert not loaded.errors, loaded.errors
    return AuthzBundle.build(loaded.resources, credential_key=b"bench-credential-key-0123456789ab")


def requests(n: int, run: str) -> list[external_auth_pb2.CheckRequest]:
    out = []
    for i in range(n):
        req = external_auth_pb2.CheckRequest()
        attrs = req.attributes
        http = attrs.request.http
        http.method, http.path, http.host, http.protocol = (
            "GET",
            f"/api/items/{i}",
            "api.example.com",
            "HTTP/1.1",
        )
        consumer = (2 * i) % CONSUMERS  # gold consumers: allowed
        http.headers.update(
            {
                "apikey": f"key-{run}-{consumer}",
                "user-agent": "bench",
                "accept": "*/*",
                "x-request-id": str(i),
            }
        )
        attrs.source.address.socket_address.address = "10.0.0.7"
        attrs.source.address.socket_address.port_value = 40000 + i % 1000
        attrs.destination.address.socket_address.address = "127.0.16.30"
        attrs.destination.address.socket_address.port_value = 8080
        kong = struct_pb2.Struct()
        kong.update({"route": "api", "service": "api.default.svc.cluster.local"})
        attrs.route_metadata_context.filter_metadata[KONG_METADATA].CopyFrom(kong)
        out.append(req)
    return out


CONCURRENCY = 64  # Checks in flight, as bench_authz.py's load generator keeps them


async def measure(
    service: CheckService, reqs: list[external_auth_pb2.CheckRequest]
) -> tuple[float, float, int]:
    """CPU and wall seconds per Check, and how many were allowed (``CONCURRENCY`` in flight)."""
    allowed = 0
    queue = iter(reqs)

    async def worker() -> None:
        nonlocal allowed
        for req in queue:
            response = await service.check(req, METADATA)
            allowed += response.status.code == 0

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - cpu) / len(reqs), (time.perf_counter() - wall) / len(reqs), allowed


def redis_cpu_seconds() -> float | None:
    """The local redis-server's CPU time so far (utime+stime), or None."""
    try:
        pid = subprocess.run(
            ["pidof", "redis-server"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (subprocess.CalledProcessError, IndexError, OSError, ValueError):
        return None


async def run(n: int, rounds: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    plain = CheckService(bundle(POLICY))
    kong = CheckService(bundle(kong_config(tag)))
    reqs = requests(n, tag)
    await measure(plain, reqs[:200])  # warm-up: imports, compiled matchers, Redis connection
    await measure(kong, reqs[:200])
    series: dict[str, list[tuple[float, float, int]]] = {"plain": [], "kong": []}
    redis_before = redis_cpu_seconds()
    for _ in range(rounds):
        for name, service in (("plain", plain), ("kong", kong)):
            plain.answers._answers.clear()  # noqa: SLF001 - each round starts cold, as distinct paths do
            kong.answers._answers.clear()  # noqa: SLF001
            series[name].append(await measure(service, reqs))
    redis_after = redis_cpu_seconds()
    await kong.close()
    out: dict[str, Any] = {"requests": n, "rounds": rounds}
    for name, rows in series.items():
        out[name] = {
            "cpu_us": statistics.median(r[0] for r in rows) * 1e6,
            "wall_us": statistics.median(r[1] for r in rows) * 1e6,
            "allowed": rows[-1][2],
        }
    out["ratio"] = out["kong"]["cpu_us"] / out["plain"]["cpu_us"]
    if redis_before is not None and redis_after is not None:
        out["redis_server_cpu_us"] = (redis_after - redis_before) / (n * rounds) * 1e6
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        "## Kong plugins in the Check server",
        "",
        f"`{command}`",
        "",
        f"One process, `CheckService.check` on {result['requests']} gateway CheckRequests per series, "
        f"{result['rounds']} alternating rounds (median shown), {CONCURRENCY} Checks in flight as a loaded "
        "server has them; every request has its own path, so the "
        "decision cache serves neither series. kong = key-auth (200 consumers) + acl (allow gold) + "
        "rate-limiting policy redis (real Redis, INCR+EXPIRE per request) on top of the plain policy.",
        "",
        "| series | CPU per Check | wall per Check | allowed |",
        "|---|---|---|---|",
    ]
    for name in ("plain", "kong"):
        r = result[name]
        lines.append(
            f"| {name} | {r['cpu_us']:.0f} µs | {r['wall_us']:.0f} µs | {r['allowed']}/{result['requests']} |"
        )
    lines += ["", f"Ratio kong/plain CPU per Check: **{result['ratio']:.2f}** (aim ≤ 1.50)."]
    if "redis_server_cpu_us" in result:
        lines.append(
            f"Redis server CPU per counted request (all rounds, both series' time): "
            f"{result['redis_server_cpu_us']:.0f} µs (not in the ratio: another process)."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.requests, args.rounds))
    command = f".venv/bin/python bench/bench_kong.py --requests {args.requests} --rounds {args.rounds}"
    text = markdown(result, command)
    print(text)
    print(json.dumps(result))
    if result["plain"]["allowed"] != args.requests or result["kong"]["allowed"] != args.requests:
        print("unexpected denials: the bench measured the wrong path")
        return 1
    if args.write_results:
        results = RESULTS.read_text()
        head = "## Kong plugins in the Check server"
        if head in results:
            before, _, after = results.partition(head)
            rest = after.split("\n## ", 1)
            results = before + text + ("\n## " + rest[1] if len(rest) > 1 else "")
        else:
            results = results.rstrip("\n") + "\n\n" + text
        RESULTS.write_text(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
