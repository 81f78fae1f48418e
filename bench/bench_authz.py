"""ext_authz Check server throughput and the latency it adds through Envoy (issue "ext_authz").

Part 1 — direct gRPC. A Check server process (one grpc.aio server, as one ``--authz-workers``
worker runs it) and a load-generator process (grpc.aio, several channels, many concurrent calls,
pre-serialized requests) run for a fixed time. Two runs on the same harness:
  real     — ``CheckService`` with 20 AuthorizationPolicies selecting the workload (2 DENY that do
             not match, 18 ALLOW with the matching rule in the last one) and a RequestAuthentication
             verifying an RS256 token (inline JWKS; the verified-token cache is on, as in Envoy);
  trivial  — a handler that returns a prebuilt OK response.
It reports both throughputs, their ratio, and the server CPU per Check (the load generator
shares the 2 cores, so the CPU figure says what the handler itself costs).

Part 2 — through Envoy. Echo upstream; Envoy with the ext_authz filter (gRPC to one Check
worker process, ``AuthzWorkers``) and the same Envoy without it. An open-loop generator
(asyncio + aiohttp in its own process) sends a fixed rate for a fixed time; each latency is
measured from the request's *scheduled* send time (no coordinated omission). The added latency
is the difference of the percentiles.

    .venv/bin/python bench/bench_authz.py [--duration 10] [--rate 1000] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import grpc  # noqa: E402
import jwt as pyjwt  # noqa: E402
import yaml  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from envoy.service.auth.v3 import external_auth_pb2  # noqa: E402
from google.rpc import code_pb2, status_pb2  # noqa: E402
from harness.echo import EchoProcess  # noqa: E402
from harness.envoy import EnvoyProcess  # noqa: E402
from jwt.algorithms import RSAAlgorithm  # noqa: E402

from pilotfish.config.loader import load_text  # noqa: E402
from pilotfish.extauthz.bundle import AuthzBundle  # noqa: E402
from pilotfish.extauthz.server import CheckService, start_server  # noqa: E402
from pilotfish.extauthz.workers import AuthzWorkers  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ISS = "https://issuer.example.com"
CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
CONTEXT = {
    "namespace": "foo",
    "labels": json.dumps({"app": "httpbin", "version": "v1"}),
    "workload": "httpbin",
}
SPAWN = multiprocessing.get_context("spawn")


# ---- config: 20 policies and an RS256 issuer -------------------------------------------------------


def make_key() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": "k1", "alg": "RS256"}
    return private, json.dumps({"keys": [jwk]})


def make_token(private: Any) -> str:
    claims = {
        "iss": ISS,
        "sub": "alice",
        "aud": "httpbin",
        "exp": int(time.time()) + 3600,
        "scope": "read write",
    }
    return pyjwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})


def _doc(kind: str, name: str, spec: dict[str, Any]) -> str:
    meta = {"name": name, "namespace": "foo"}
    return yaml.safe_dump(
        {"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec}
    )


def config_text(jwks: str) -> str:
    selector = {"matchLabels": {"app": "httpbin"}}
    docs = [
        _doc(
            "RequestAuthentication",
            "jwt",
            {"selector": selector, "jwtRules": [{"issuer": ISS, "jwks": jwks}]},
        ),
        _doc(
            "AuthorizationPolicy",
            "a-deny-admin",
            {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]},
        ),
        _doc(
            "AuthorizationPolicy",
            "a-deny-evil",
            {"action": "DENY", "rules": [{"when": [{"key": "request.headers[x-evil]", "values": ["*"]}]}]},
        ),
    ]
    for i in range(17):  # ALLOW policies that do not match this request
        rule = {
            "from": [{"source": {"principals": [f"cluster.local/ns/other/sa/sa{i}"]}}],
            "to": [{"operation": {"methods": ["POST", "PUT"], "paths": [f"/v{i}/*"]}}],
            "when": [{"key": "request.auth.claims[group]", "values": [f"team{i}"]}],
        }
        docs.append(_doc("AuthorizationPolicy", f"b-allow-{i:02d}", {"selector": selector, "rules": [rule]}))
    matching = {
        "from": [{"source": {"requestPrincipals": [f"{ISS}/*"]}}],
        "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}],
        "when": [{"key": "request.auth.claims[scope]", "values": ["read"]}],
    }
    docs.append(_doc("AuthorizationPolicy", "z-allow-api", {"selector": selector, "rules": [matching]}))
    return "---\n".join(docs)


def make_bundle(jwks: str) -> AuthzBundle:
    result = load_text(config_text(jwks), "bench.yaml")
    if result.errors:
        raise SystemExit(f"bench config does not load: {[str(p) for p in result.errors]}")
    bundle = AuthzBundle.build(result.resources)
    assert len(bundle.policies) == 20
    return bundle


def check_request_bytes(token: str) -> bytes:
    request = external_auth_pb2.CheckRequest()
    attrs = request.attributes
    attrs.source.address.socket_address.address = "10.0.0.5"
    attrs.source.address.socket_address.port_value = 40000
    attrs.destination.address.socket_address.address = "10.0.0.9"
    attrs.destination.address.socket_address.port_value = 8000
    http = attrs.request.http
    http.method, http.path, http.host, http.protocol = (
        "GET",
        "/api/items?page=2",
        "httpbin.foo:8000",
        "HTTP/1.1",
    )
    http.headers.update(
        {
            ":authority": "httpbin.foo:8000",
            ":method": "GET",
            ":path": "/api/items?page=2",
            "authorization": f"Bearer {token}",
            "user-agent": "bench/1.0",
            "accept": "application/json",
            "x-request-id": "6f1f7c5e-0c5b-4f4e-9d1c-000000000000",
            "x-forwarded-proto": "http",
        }
    )
    attrs.context_extensions.update(CONTEXT)
    return bytes(request.SerializeToString())


# ---- part 1: direct gRPC ------------------------------------------------------------------------


class TrivialService:
    """The baseline handler: no parsing beyond gRPC's, a prebuilt OK."""

    OK = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))

    async def check(self, request: Any, metadata: Any = ()) -> Any:
        return self.OK


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_main(mode: str, jwks: str, conn: Connection) -> None:
    asyncio.run(_server(mode, jwks, conn))


async def _server(mode: str, jwks: str, conn: Connection) -> None:
    service: Any = CheckService(make_bundle(jwks)) if mode == "real" else TrivialService()
    server, port = await start_server(service, "127.0.0.1", 0)
    conn.send(port)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "start": the load begins
    started = cpu_seconds()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    conn.send(cpu_seconds() - started)
    await server.stop(None)


def grpc_load_main(
    port: int, payload: bytes, duration: float, channels: int, concurrency: int, conn: Connection
) -> None:
    conn.send(asyncio.run(_grpc_load(port, payload, duration, channels, concurrency)))


async def _grpc_load(
    port: int, payload: bytes, duration: float, channels: int, concurrency: int
) -> dict[str, Any]:
    opened = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    calls = [
        ch.unary_unary(CHECK_METHOD, request_serializer=None, response_deserializer=None) for ch in opened
    ]
    first = external_auth_pb2.CheckResponse.FromString(await calls[0](payload))
    counts = {"ok": 0, "errors": 0}
    deadline = time.monotonic() + duration

    async def worker(call: Any) -> None:
        while time.monotonic() < deadline:
            try:
                await call(payload, timeout=5)
                counts["ok"] += 1
            except grpc.aio.AioRpcError:
                counts["errors"] += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(calls[i % channels]) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    for ch in opened:
        await ch.close()
    return {**counts, "elapsed": elapsed, "first_code": first.status.code}


@dataclass
class GrpcResult:
    mode: str
    rps: float
    cpu_us_per_check: float
    errors: int
    seconds: float = 0.0


def grpc_run(mode: str, jwks: str, payload: bytes, duration: float) -> GrpcResult:
    parent, child = SPAWN.Pipe()
    server = SPAWN.Process(target=server_main, args=(mode, jwks, child), daemon=True)
    server.start()
    try:
        port = parent.recv()
        result = _load_against(port, payload, 1.0)  # warm-up (token cache, code paths)
        parent.send("start")
        result = _load_against(port, payload, duration)
        parent.send("stop")
        cpu = parent.recv()
    finally:
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join()
    if result["first_code"] != code_pb2.OK:
        raise SystemExit(
            f"{mode}: the Check did not allow (code {result['first_code']}); the bench config is wrong"
        )
    rps = result["ok"] / result["elapsed"]
    return GrpcResult(mode, rps, cpu / max(result["ok"], 1) * 1e6, result["errors"], result["elapsed"])


GRPC_ROUNDS = 3


def grpc_rounds(jwks: str, payload: bytes, duration: float) -> tuple[GrpcResult, GrpcResult]:
    """``grpc_run`` for each handler in alternating rounds, pooled: Checks, time and CPU add up."""
    runs: dict[str, list[GrpcResult]] = {"trivial": [], "real": []}
    for _round in range(GRPC_ROUNDS):
        for mode in runs:
            runs[mode].append(grpc_run(mode, jwks, payload, duration / GRPC_ROUNDS))
    pooled = []
    for mode, results in runs.items():
        checks = sum(r.rps * r.seconds for r in results)
        cpu = sum(r.cpu_us_per_check * r.rps * r.seconds for r in results)
        seconds = sum(r.seconds for r in results)
        pooled.append(
            GrpcResult(mode, checks / seconds, cpu / max(checks, 1), sum(r.errors for r in results), seconds)
        )
    return pooled[0], pooled[1]


def _load_against(port: int, payload: bytes, duration: float) -> dict[str, Any]:
    parent, child = SPAWN.Pipe()
    load = SPAWN.Process(target=grpc_load_main, args=(port, payload, duration, 4, 64, child), daemon=True)
    load.start()
    try:
        result: dict[str, Any] = parent.recv()
    finally:
        load.join(10)
    return result


# ---- part 2: through Envoy ---------------------------------------------------------------------


API = "type.googleapis.com/envoy.extensions.filters"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": f"{API}.http.router.v3.Router"}}
EXT_AUTHZ = {
    "name": "envoy.filters.http.ext_authz",
    "typed_config": {
        "@type": f"{API}.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "failure_mode_allow": False,
        "grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "1s"},
    },
}


def _cluster(name: str, port: str, http2: bool) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def bootstrap(with_authz: bool) -> dict[str, Any]:
    per_route = {
        "envoy.filters.http.ext_authz": {
            "@type": f"{API}.http.ext_authz.v3.ExtAuthzPerRoute",
            "check_settings": {"context_extensions": CONTEXT},
        }
    }
    route = {
        "match": {"prefix": "/"},
        "route": {"cluster": "echo"},
        **({"typed_per_filter_config": per_route} if with_authz else {}),
    }
    hcm = {
        "@type": f"{API}.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [EXT_AUTHZ, ROUTER] if with_authz else [ROUTER],
    }
    clusters = [_cluster("echo", "{echo_port}", False)]
    if with_authz:
        clusters.append(_cluster("authz", "{authz_port}", True))
    listener = {
        "name": "ingress",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": "{listener_port}"}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
    return {
        "node": {"id": "bench-authz", "cluster": "bench"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{admin_port}"}}},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def http_load_main(url: str, token: str, rate: float, duration: float, conn: Connection) -> None:
    conn.send(asyncio.run(_open_loop(url, token, rate, duration)))


async def _open_loop(url: str, token: str, rate: float, duration: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    lateness: list[float] = []
    statuses: dict[int, int] = {}
    headers = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def one(scheduled: float) -> None:
            lateness.append(time.perf_counter() - scheduled)  # the generator's own delay
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
            except aiohttp.ClientError:
                statuses[0] = statuses.get(0, 0) + 1
                return
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(int(rate * duration)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        achieved = len(tasks) / (time.perf_counter() - start)
    return {"latencies": latencies, "lateness": lateness, "statuses": statuses, "achieved_rate": achieved}


@dataclass
class HttpResult:
    name: str
    p50_ms: float
    p99_ms: float
    late_p99_ms: float  # how late the generator itself sent (CPU contention on the load side)
    busy_max: float  # the busiest round: the machine's CPU use, all processes, all tenants
    statuses: dict[int, int]


ROUNDS = 5  # the two Envoys alternate in rounds, so bursts of load from elsewhere hit both


def http_runs(urls: dict[str, str], token: str, rate: float, duration: float) -> list[HttpResult]:
    """Open-loop load on each URL in turn, ``ROUNDS`` times, ``duration / ROUNDS`` seconds each."""
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    lateness: dict[str, list[float]] = {name: [] for name in urls}
    statuses: dict[str, Counter[int]] = {name: Counter() for name in urls}
    for url in urls.values():
        _http_load(url, token, rate, 1.0)  # warm-up: connections, caches
    busy: dict[str, list[float]] = {name: [] for name in urls}
    for _round in range(ROUNDS):
        for name, url in urls.items():
            before = _cpu_ticks()
            result = _http_load(url, token, rate, duration / ROUNDS)
            busy[name].append(_busy_fraction(before, _cpu_ticks()))
            latencies[name] += result["latencies"]
            lateness[name] += result["lateness"]
            statuses[name].update(result["statuses"])
    return [
        _summary(name, latencies[name], lateness[name], max(busy[name]), dict(statuses[name]))
        for name in urls
    ]


def _summary(
    name: str, latencies: list[float], lateness: list[float], busy: float, statuses: dict[int, int]
) -> HttpResult:
    q = statistics.quantiles(latencies, n=100)
    late = statistics.quantiles(lateness, n=100)
    return HttpResult(name, q[49] * 1e3, q[98] * 1e3, late[98] * 1e3, busy, statuses)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (``/proc/stat``): other tenants' load shows here."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def _http_load(url: str, token: str, rate: float, duration: float) -> dict[str, Any]:
    parent, child = SPAWN.Pipe()
    load = SPAWN.Process(target=http_load_main, args=(url, token, rate, duration, child), daemon=True)
    load.start()
    try:
        result: dict[str, Any] = parent.recv()
    finally:
        load.join(10)
    return result


def through_envoy(jwks: str, token: str, rate: float, duration: float) -> tuple[HttpResult, HttpResult]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-authz-"))
    workers = AuthzWorkers(0, 1, bundle=make_bundle(jwks))
    workers.start()
    try:
        with EchoProcess("httpbin") as echo:
            plain = EnvoyProcess(bootstrap(False), ports={"echo_port": echo.port}, workdir=workdir / "plain")
            authz = EnvoyProcess(
                bootstrap(True),
                ports={"echo_port": echo.port, "authz_port": workers.port},
                workdir=workdir / "authz",
            )
            with plain, authz:
                urls = {
                    "without ext_authz": plain.url(path="/api/items"),
                    "with ext_authz": authz.url(path="/api/items"),
                }
                base, with_authz = http_runs(urls, token, rate, duration)
    finally:
        workers.stop()
    return base, with_authz


# ---- report -------------------------------------------------------------------------------------


def grpc_table(real: GrpcResult, trivial: GrpcResult) -> str:
    return f"""| handler | Checks/s | server CPU per Check | errors |
|---|---|---|---|
| real (pilotfish CheckService) | {real.rps:,.0f} | {real.cpu_us_per_check:.0f} µs | {real.errors} |
| trivial always-OK | {trivial.rps:,.0f} | {trivial.cpu_us_per_check:.0f} µs | {trivial.errors} |

Ratio real/trivial throughput: **{real.rps / trivial.rps:.2f}**; server capacity (trivial/real CPU
per Check, what the throughput ratio is when the server's core is the bottleneck):
**{trivial.cpu_us_per_check / real.cpu_us_per_check:.2f}** (aim ≥ 0.8). The two handlers alternate in
{GRPC_ROUNDS} rounds each, so load from elsewhere hits both."""


def envoy_table(base: HttpResult, authz: HttpResult) -> str:
    added_p50, added_p99 = authz.p50_ms - base.p50_ms, authz.p99_ms - base.p99_ms
    rows = "\n".join(
        f"| {r.name} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.late_p99_ms:.2f} ms | {r.busy_max:.0%} "
        f"| {r.statuses} |"
        for r in (base, authz)
    )
    return f"""| Envoy | p50 | p99 | generator send delay p99 | machine CPU, busiest round | statuses |
|---|---|---|---|---|---|
{rows}

Added by ext_authz: p50 **{added_p50:.2f} ms** (aim ≤ 1.5 ms), p99 **{added_p99:.2f} ms** (aim ≤ 3 ms)."""


def report(
    real: GrpcResult, trivial: GrpcResult, base: HttpResult, authz: HttpResult, args: argparse.Namespace
) -> str:
    return f"""## ext_authz

`.venv/bin/python bench/bench_authz.py --duration {args.duration:g} --rate {args.rate:g} --write-results`

Part 1 — direct gRPC, one Check server process vs a load-generator process (grpc.aio, 4
channels, 64 concurrent calls, pre-serialized 1 KB CheckRequest), {args.duration:g} s each, same
harness. "real": 20 AuthorizationPolicies select the workload (2 DENY not matching, 18 ALLOW, the
match in the last), RS256 token verified via RequestAuthentication (inline JWKS, verified-token
cache on, as Envoy's jwt_cache). "trivial": a handler returning a prebuilt OK.

{grpc_table(real, trivial)}

Part 2 — through Envoy 1.40 (concurrency 1) to a Python echo upstream, open loop at
{args.rate:g} req/s for {args.duration:g} s (asyncio + aiohttp in its own process; latency from
each request's scheduled send time; the two Envoys alternate in {ROUNDS} rounds), one Check
worker process (`AuthzWorkers(port, 1)`).

{envoy_table(base, authz)}

({time.strftime("%Y-%m-%d")}, 2 shared cores: the load generators, Envoy, the echo upstream and the
Check server all run on them.)

Where the Check time goes. A first Check of a request costs ~110-190 µs in-process before
gRPC (CheckRequest → Attributes, JWT authentication with a token-cache hit, `evaluate` over 20
policies, the response). A repeated one is answered from the decision cache
(`extauthz/decision_cache.py`): the key is read straight from the CheckRequest (bundle version,
JWKS generation, workload, method, path, host, peer, destination, SNI and the headers the policies
and token locations name), ~20-25 µs in-process, so the real handler's server CPU per Check is
close to the trivial handler's, whose ~150 µs is grpc.aio's own cost per unary call. The bench
repeats one request, the best case; distinct requests pay the first-Check cost.
p99 through Envoy is fragile on this box: on a contended machine single rounds reach tens to
hundreds of ms p99 while the Check itself stays in the sub-millisecond range; the CPU column
shows whether a run was contended; rerun when it is high.
"""


def write_section(section: str) -> None:
    """Replace the ``## ext_authz`` section of RESULTS.md (or append it); other sections stay."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = text.find("\n## ext_authz\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + (text[end:] if end >= 0 else "\n")
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second through Envoy")
    parser.add_argument(
        "--write-results", action="store_true", help="update the ext_authz section of RESULTS.md"
    )
    parser.add_argument("--only", choices=["grpc", "envoy"], help="run one part (nothing is written)")
    args = parser.parse_args()
    private, jwks = make_key()
    token = make_token(private)
    payload = check_request_bytes(token)
    if args.only == "envoy":
        print(envoy_table(*through_envoy(jwks, token, args.rate, args.duration)))
        return 0
    trivial, real = grpc_rounds(jwks, payload, args.duration)
    if args.only == "grpc":
        print(grpc_table(real, trivial))
        return 0
    base, authz = through_envoy(jwks, token, args.rate, args.duration)
    section = report(real, trivial, base, authz, args)
    print(section)
    if args.write_results:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
