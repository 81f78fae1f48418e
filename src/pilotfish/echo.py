"""An HTTP echo server: the upstream behind Envoy in tests and the apps of the bookinfo-like demo.

Every response is JSON describing who answered and what arrived::

    {"name": ..., "labels": {...},
     "request": {"method", "path", "query", "headers", "body", "remote"}}

``query`` is the raw query string (lossless; parse it with ``urllib.parse.parse_qs``), ``headers``
maps lower-case names to values (repeated headers joined with ", "), ``body`` is the body as text.

Faults can be injected three ways, so tests can exercise retries, outlier detection and timeouts:
at start (``--delay``, ``--fail-rate``, ``--fail-status``), per request (``x-echo-delay: 0.5``,
``x-echo-status: 500``, which win over the configuration) and at runtime through the control
endpoints ``POST /__echo/config`` (partial JSON update) and ``GET /__echo/stats``. Control requests
are never delayed, failed or counted.

Run as ``python -m pilotfish.echo --name NAME --port 0``; once listening it prints exactly one line,
``READY <port>``, so a parent process learns the port it got. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from aiohttp import web

CONTROL_PREFIX = "/__echo/"
DELAY_HEADER = "x-echo-delay"
STATUS_HEADER = "x-echo-status"


T = TypeVar("T")


class EchoConfigError(ValueError):
    """A fault setting is out of range; the control endpoint answers 400 with the message."""


@dataclass(slots=True)
class FaultConfig:
    """Fault settings that may change at runtime; mutable on purpose, one instance per server."""

    delay: float = 0.0
    fail_rate: float = 0.0
    fail_status: int = 503

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update atomically: validate every field first, then assign."""
        unknown = set(changes) - {"delay", "fail_rate", "fail_status"}
        if unknown:
            raise EchoConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        merged = {**asdict(self), **changes}
        checked = FaultConfig(
            delay=parse_delay(merged["delay"]),
            fail_rate=parse_fail_rate(merged["fail_rate"]),
            fail_status=parse_status(merged["fail_status"]),
        )
        self.delay, self.fail_rate, self.fail_status = checked.delay, checked.fail_rate, checked.fail_status


@dataclass(slots=True)
class EchoState:
    """Everything one running echo server knows: identity, faults, counters and its random source."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    faults: FaultConfig = field(default_factory=FaultConfig)
    rng: random.Random = field(default_factory=random.Random)
    by_status: Counter[int] = field(default_factory=Counter)

    def stats(self) -> dict[str, Any]:
        """Counts of answered (non-control) requests, in total and per HTTP status."""
        return {
            "requests": sum(self.by_status.values()),
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
        }


def parse_delay(value: object) -> float:
    """A delay in seconds: a finite number >= 0 (strings accepted, they come from headers)."""
    number = _to_float(value, "delay")
    if not 0.0 <= number <= 3600.0:
        raise EchoConfigError(f"delay must be between 0 and 3600 seconds, got {value!r}")
    return number


def parse_fail_rate(value: object) -> float:
    """A probability in [0, 1]."""
    number = _to_float(value, "fail_rate")
    if not 0.0 <= number <= 1.0:
        raise EchoConfigError(f"fail_rate must be between 0 and 1, got {value!r}")
    return number


def parse_status(value: object) -> int:
    """An HTTP status code in [200, 599] (1xx cannot carry a JSON body)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise EchoConfigError(f"status must be an integer, got {value!r}")
    try:
        code = int(value)
    except ValueError:
        raise EchoConfigError(f"status must be an integer, got {value!r}") from None
    if not 200 <= code <= 599:
        raise EchoConfigError(f"status must be between 200 and 599, got {value!r}")
    return code


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k=v`` as on the command line; an empty string means no labels."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EchoConfigError(f"label {item!r} is not of the form key=value")
        labels[key.strip()] = value.strip()
    return labels


def _to_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EchoConfigError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise EchoConfigError(f"{what} must be a number, got {value!r}") from None
    if number != number:  # NaN compares unequal to itself and would pass every range check
        raise EchoConfigError(f"{what} must be a number, got {value!r}")
    return number


STATE_KEY = web.AppKey("echo_state", EchoState)


def choose_status(state: EchoState, headers: Mapping[str, str]) -> int:
    """The status to answer with: the request's ``x-echo-status``, else a fault draw, else 200."""
    if STATUS_HEADER in headers:
        return parse_status(headers[STATUS_HEADER])
    faults = state.faults
    if faults.fail_rate > 0.0 and state.rng.random() < faults.fail_rate:
        return faults.fail_status
    return 200


def choose_delay(state: EchoState, headers: Mapping[str, str]) -> float:
    """The seconds to wait before answering: the request's ``x-echo-delay``, else the configured delay."""
    if DELAY_HEADER in headers:
        return parse_delay(headers[DELAY_HEADER])
    return state.faults.delay


def lowercase_headers(request: web.BaseRequest) -> dict[str, str]:
    """All request headers with lower-case names; repeated headers are joined as HTTP allows."""
    merged: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        merged.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(values) for name, values in merged.items()}


async def describe_request(request: web.Request, headers: dict[str, str]) -> dict[str, Any]:
    """The ``request`` part of the echo body."""
    body = await request.read()
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "headers": headers,
        "body": body.decode("utf-8", errors="replace"),
        "remote": request.remote,
    }


async def handle_echo(request: web.Request) -> web.Response:
    """Answer any method on any path with the JSON description, after the chosen delay."""
    state: EchoState = request.app[STATE_KEY]
    headers = lowercase_headers(request)
    try:
        status = choose_status(state, headers)
        delay = choose_delay(state, headers)
    except EchoConfigError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    if delay > 0:
        await asyncio.sleep(delay)
    state.by_status[status] += 1
    body = {"name": state.name, "labels": state.labels, "request": await describe_request(request, headers)}
    return web.json_response(body, status=status)


async def handle_get_config(request: web.Request) -> web.Response:
    """Current fault settings."""
    state: EchoState = request.app[STATE_KEY]
    return web.json_response(asdict(state.faults))


async def handle_post_config(request: web.Request) -> web.Response:
    """Partially update fault settings from a JSON object; answer with the settings now in force."""
    state: EchoState = request.app[STATE_KEY]
    try:
        changes = json.loads(await request.read() or b"{}")
        if not isinstance(changes, dict):
            raise EchoConfigError("body must be a JSON object")
        state.faults.update(changes)
    except (EchoConfigError, json.JSONDecodeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(asdict(state.faults))


async def handle_stats(request: web.Request) -> web.Response:
    """Request counters, for load-balancing and retry assertions."""
    state: EchoState = request.app[STATE_KEY]
    return web.json_response(state.stats())


def build_app(state: EchoState) -> web.Application:
    """The aiohttp application; control routes are registered before the catch-all so they win."""
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_get(CONTROL_PREFIX + "config", handle_get_config)
    app.router.add_post(CONTROL_PREFIX + "config", handle_post_config)
    app.router.add_get(CONTROL_PREFIX + "stats", handle_stats)
    app.router.add_route("*", "/{tail:.*}", handle_echo)
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving so ``port=0`` yields a known port without reaching into aiohttp internals."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(state: EchoState, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, announcing ``READY <port>`` on stdout once listening."""
    sock = bind_socket(host, port)
    runner = web.AppRunner(build_app(state), handle_signals=False, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.SockSite(runner, sock).start()
        print(f"READY {sock.getsockname()[1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(OSError):
            sock.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pilotfish.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="reported as 'name' in every response")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port (see READY line)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--labels", type=_cli(parse_labels), default={}, help="k=v,k=v")
    parser.add_argument("--delay", type=_cli(parse_delay), default=0.0, help="seconds before answering")
    parser.add_argument("--fail-rate", type=_cli(parse_fail_rate), default=0.0, help="0..1")
    parser.add_argument("--fail-status", type=_cli(parse_status), default=503)
    return parser


def _cli(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Turn our validation error into argparse's, so bad flags print usage and exit 2."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except EchoConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = FaultConfig(delay=args.delay, fail_rate=args.fail_rate, fail_status=args.fail_status)
    state = EchoState(name=args.name, labels=args.labels, faults=faults)
    try:
        asyncio.run(serve(state, args.host, args.port))
    except OSError as exc:
        print(f"echo: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
