"""``pilotfish register --keepalive``: keep one registration alive across control-plane restarts.

Theory of operation. The client registers, then renews the lease every ``ttl / 3`` seconds (a
lease survives two lost heartbeats, as Consul's and Eureka's agents renew well inside the TTL).
It never gives up while it is meant to run:

* no answer (connection refused or reset, timeout) or a 5xx (the store is down, the server is
  restarting): retry with exponential backoff and jitter (``supervise.Backoff``), capped at
  ``ttl / 3`` (bounded to 0.5..5 s) so a control plane that comes back is noticed quickly and a
  fleet of clients does not retry in step;
* a heartbeat answered 404: the lease is gone (it lapsed and was reaped — a server that comes
  back spares leases that lapsed while it was down for its recovery grace, so this is rare —
  or the server came back with another store): register again at once — the registration is
  the client's state, re-established by replaying it;
* a 4xx to the *first* registration is a mistake no retry fixes (a bad address, a missing
  token): exit 1 with the server's message. Later 4xx answers (tokens rotated, a policy changed)
  are retried with the same backoff, so a fix on the server side brings the target back
  without a restart.

It exits only when told to (SIGINT or SIGTERM: ``stop`` is set), and then deregisters, best
effort: if the server cannot be reached the lease lapses after its TTL anyway. Progress goes to
``say`` (stdout), trouble to ``warn`` (stderr), once per change of state, not once per retry.

The HTTP client is the seam (``LeaseApi``): ``AdminClient`` is the real one; tests of the retry
rules pass a scripted one, and the integration and e2e tests run the real command.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from pilotfish.supervise import Backoff

NO_ANSWER = 0  # Reply.status when the server did not answer at all


@dataclass(frozen=True, slots=True)
class Reply:
    status: int  # HTTP status; NO_ANSWER when the call failed before a response
    body: Any  # the decoded JSON, or the error text

    @property
    def transient(self) -> bool:
        """A failure worth retrying as is: no answer, or the server's own failure."""
        return self.status == NO_ANSWER or self.status >= 500

    def describe(self) -> str:
        if self.status == NO_ANSWER:
            return str(self.body)
        message = self.body.get("error", self.body) if isinstance(self.body, dict) else self.body
        return f"HTTP {self.status}: {message}"


class LeaseApi(Protocol):
    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Reply: ...


class AdminClient:
    """The admin API over HTTP (urllib: no dependency for a command that runs beside each target)."""

    def __init__(self, admin: str, token: str = "", timeout: float = 5.0) -> None:
        self.base, self.token, self.timeout = f"http://{admin}", token, timeout

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Reply:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return Reply(response.status, _decode(response.read()))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, _decode(exc.read()))
        except (OSError, ValueError) as exc:  # refused, reset, timeout, a torn response
            return Reply(NO_ANSWER, f"cannot reach the pilotfish admin API at {self.base}: {exc}")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def retry_backoff(ttl: float) -> Backoff:
    """Retries start at 0.1 s and are capped at a third of the TTL, within 0.5..5 s."""
    return Backoff(initial=0.1, maximum=min(max(ttl / 3, 0.5), 5.0), jitter=0.5)


class Keepalive:
    """One registration kept alive until ``stop`` is set; see the module docstring."""

    def __init__(
        self,
        api: LeaseApi,
        registration: Mapping[str, Any],
        stop: threading.Event,
        say: Callable[[str], None],
        warn: Callable[[str], None] | None = None,
        *,
        backoff: Backoff | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.api, self.registration, self.stop, self.say = api, dict(registration), stop, say
        self.warn = warn or say
        self.ttl = float(registration.get("ttlSeconds", 30.0))
        self.backoff = backoff or retry_backoff(self.ttl)
        self.draw = draw
        self.id: str | None = None
        self.registrations = 0  # successful registrations, the first included
        self._failures = 0  # failed calls in a row

    def run(self) -> int:
        """0 once stopped (and deregistered, best effort); 1 when the first registration is refused."""
        if not self._register(first=True):
            return 0 if self.stop.is_set() else 1
        while not self.stop.wait(self.ttl / 3):
            self._renew()
        self._deregister()
        return 0

    # one step each

    def _register(self, first: bool = False) -> bool:
        """Register, retrying until it works or ``stop``; False if it never did."""
        while not self.stop.is_set():
            reply = self.api.call("POST", "/registrations", self.registration)
            if reply.status in (200, 201):
                self.id = str(reply.body["id"])
                self.registrations += 1
                verb = "registered" if first else "registered again"
                self.say(f"{verb} {self.id} (ttl {float(reply.body['ttlSeconds']):g}s)")
                self._failures = 0
                return True
            if first and not reply.transient and reply.status not in (404, 408, 429):
                self.warn(f"registration refused: {reply.describe()}")
                return False
            self._wait_after(reply, "register")
        return False

    def _renew(self) -> None:
        """One heartbeat, retried until it lands, the lease is re-established, or ``stop``."""
        assert self.id is not None
        path = f"/registrations/{quote(self.id, safe='')}/heartbeat"
        while not self.stop.is_set():
            reply = self.api.call("PUT", path)
            if reply.status == 200:
                if self._failures:
                    self.say(f"renewed {self.id} again")
                self._failures = 0
                return
            if reply.status == 404:  # the lease is gone: the registration is our state, replay it
                self.warn(f"lease {self.id} is gone ({reply.describe()}); registering again")
                self._register()
                return
            self._wait_after(reply, "renew")

    def _deregister(self) -> None:
        if self.id is None:
            return
        reply = self.api.call("DELETE", f"/registrations/{quote(self.id, safe='')}")
        if reply.status in (200, 204, 404):
            self.say(f"deregistered {self.id}")
        else:
            lapse = f"the lease lapses in {self.ttl:g}s"
            self.warn(f"could not deregister {self.id} ({reply.describe()}); {lapse}")

    def _wait_after(self, reply: Reply, what: str) -> None:
        self._failures += 1
        delay = self.backoff.delay(self._failures, self.draw())
        if self._failures == 1:  # once per outage, not once per retry
            self.warn(f"cannot {what} ({reply.describe()}); retrying with backoff until it works")
        self.stop.wait(delay)
