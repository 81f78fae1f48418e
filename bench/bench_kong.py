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
import multiprocessing
import os
import resource
import statistics
import subprocess
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import struct_pb2

from pilotfish.config.loader import load_text
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.server import CheckService, start_server
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
            "{minute: 100000000, policy: redis, redis_host: 127.0.0.1, redis_port: 6379,"
            " fault_tolerant: false}",
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


GRPC_REQUESTS = 20_000
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


# ---- part 2: the Check server process behind gRPC ---------------------------------------------------

SPAWN = multiprocessing.get_context("spawn")
CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_main(text: str, conn: Connection) -> None:
    asyncio.run(_server(text, conn))


async def _server(text: str, conn: Connection) -> None:
    service = CheckService(bundle(text))
    server, port = await start_server(service, "127.0.0.1", 0)
    conn.send(port)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "start"
    started = cpu_seconds()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    conn.send(cpu_seconds() - started)
    await server.stop(None)
    await service.close()


def load_main(port: int, payloads: list[bytes], duration: float, conn: Connection) -> None:
    conn.send(asyncio.run(_load(port, payloads, duration)))


async def _load(port: int, payloads: list[bytes], duration: float) -> dict[str, Any]:
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(4)
    ]
    calls = [
        ch.unary_unary(CHECK_METHOD, request_serializer=None, response_deserializer=None) for ch in channels
    ]
    counts = {"ok": 0, "denied": 0, "errors": 0}
    deadline = time.monotonic() + duration
    cursor = iter(range(10**9))

    async def worker(call: Any) -> None:
        while time.monotonic() < deadline:
            payload = payloads[next(cursor) % len(payloads)]
            try:
                raw = await call(payload, timeout=5, metadata=METADATA)
            except grpc.aio.AioRpcError:
                counts["errors"] += 1
                continue
            ok = external_auth_pb2.CheckResponse.FromString(raw).status.code == 0
            counts["ok" if ok else "denied"] += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(calls[i % 4]) for i in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    for ch in channels:
        await ch.close()
    return {**counts, "elapsed": elapsed}


def grpc_run(text: str, payloads: list[bytes], duration: float) -> dict[str, float]:
    parent, child = SPAWN.Pipe()
    server = SPAWN.Process(target=server_main, args=(text, child), daemon=True)
    server.start()
    try:
        port = parent.recv()
        _load_against(port, payloads[:500], 1.0)  # warm-up
        parent.send("start")
        result = _load_against(port, payloads, duration)
        parent.send("stop")
        cpu = parent.recv()
    finally:
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join()
    checks = result["ok"] + result["denied"]
    return {
        "rps": checks / result["elapsed"],
        "cpu_us": cpu / max(checks, 1) * 1e6,
        "allowed": result["ok"],
        "checks": checks,
        "errors": result["errors"],
    }


def _load_against(port: int, payloads: list[bytes], duration: float) -> dict[str, Any]:
    parent, child = SPAWN.Pipe()
    load = SPAWN.Process(target=load_main, args=(port, payloads, duration, child), daemon=True)
    load.start()
    try:
        result: dict[str, Any] = parent.recv()
    finally:
        load.join(10)
    return result


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


async def run(n: int, rounds: int, duration: float) -> dict[str, Any]:
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
    out: dict[str, Any] = {"requests": n, "rounds": rounds, "duration": duration}
    for name, rows in series.items():
        out[name] = {
            "cpu_us": statistics.median(r[0] for r in rows) * 1e6,
            "wall_us": statistics.median(r[1] for r in rows) * 1e6,
            "allowed": rows[-1][2],
        }
    out["ratio"] = out["kong"]["cpu_us"] / out["plain"]["cpu_us"]
    # Enough distinct requests that none repeats within the decision cache's 1 s at these rates.
    payloads = [r.SerializeToString() for r in requests(GRPC_REQUESTS, tag)]
    grpc_rows: dict[str, list[dict[str, float]]] = {"plain": [], "kong": []}
    for _ in range(rounds):
        for name, text in (("plain", POLICY), ("kong", kong_config(tag))):
            grpc_rows[name].append(await asyncio.to_thread(grpc_run, text, payloads, duration))
    out["grpc"] = {
        name: {
            "cpu_us": statistics.median(r["cpu_us"] for r in rows),
            "rps": statistics.median(r["rps"] for r in rows),
            "allowed": sum(r["allowed"] for r in rows),
            "checks": sum(r["checks"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
        }
        for name, rows in grpc_rows.items()
    }
    out["grpc_ratio"] = out["grpc"]["kong"]["cpu_us"] / out["grpc"]["plain"]["cpu_us"]
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
    lines += ["", f"Decision only (in process): kong/plain CPU per Check **{result['ratio']:.2f}**."]
    lines += [
        "",
        f"The Check server process behind gRPC (what a `--authz-workers` worker spends per Check: "
        f"grpc.aio transport + decision), a load-generator process with 4 channels and {CONCURRENCY} "
        f"calls in flight cycling through {GRPC_REQUESTS:,} distinct requests "
        f"(none repeats within the decision cache's 1 s), {result['rounds']} alternating runs of "
        f"{result['duration']:g} s:",
        "",
        "| series | Checks/s | server CPU per Check | allowed / Checks | errors |",
        "|---|---|---|---|---|",
    ]
    for name in ("plain", "kong"):
        g = result["grpc"][name]
        lines.append(
            f"| {name} | {g['rps']:,.0f} | {g['cpu_us']:.0f} µs "
            f"| {g['allowed']}/{g['checks']} | {g['errors']} |"
        )
    lines += ["", f"Ratio kong/plain server CPU per Check: **{result['grpc_ratio']:.2f}** (aim ≤ 1.50)."]
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
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of gRPC load per run")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.requests, args.rounds, args.duration))
    command = (
        f".venv/bin/python bench/bench_kong.py --requests {args.requests} --rounds {args.rounds}"
        f" --duration {args.duration:g} --write-results"
    )
    text = markdown(result, command)
    print(text)
    print(json.dumps(result))
    grpc_ok = all(r["allowed"] == r["checks"] and not r["errors"] for r in result["grpc"].values())
    if (
        result["plain"]["allowed"] != args.requests
        or result["kong"]["allowed"] != args.requests
        or not grpc_ok
    ):
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
