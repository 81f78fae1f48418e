"""``register --keepalive`` retry rules, through the client seam (``LeaseApi``) with a scripted
server; the real command against a real server that restarts is in
tests/integration/admin/test_keepalive_restart.py and tests/e2e/test_keepalive_e2e.py."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from pilotfish.keepalive import NO_ANSWER, Keepalive, Reply, retry_backoff
from pilotfish.supervise import Backoff

ID = "10.0.0.9:80@ratings.prod.svc.cluster.local"
LEASE = {"id": ID, "ttlSeconds": 0.003}
REFUSED = Reply(NO_ANSWER, "cannot reach the pilotfish admin API: [Errno 111] Connection refused")


class ScriptedApi:
    """Answers each call with the next scripted reply; sets ``stop`` once the script is spent
    (the process got SIGTERM), after which every call is refused."""

    def __init__(self, stop: threading.Event, *replies: Reply) -> None:
        self.stop, self.replies = stop, list(replies)
        self.calls: list[str] = []

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Reply:
        self.calls.append(f"{method} {path}")
        if not self.replies:
            self.stop.set()
        return self.replies.pop(0) if self.replies else Reply(204, "")


def run(*replies: Reply) -> tuple[int, ScriptedApi, list[str], list[str]]:
    stop = threading.Event()
    api = ScriptedApi(stop, *replies)
    said: list[str] = []
    warned: list[str] = []
    tiny = Backoff(initial=0.0001, maximum=0.0001)
    keepalive = Keepalive(api, {"ttlSeconds": 0.003}, stop, said.append, warned.append, backoff=tiny)
    return keepalive.run(), api, said, warned


REGISTER = "POST /registrations"
HEARTBEAT = "PUT /registrations/10.0.0.9%3A80%40ratings.prod.svc.cluster.local/heartbeat"
DELETE = "DELETE /registrations/10.0.0.9%3A80%40ratings.prod.svc.cluster.local"


def test_it_survives_refused_connections_and_5xx_and_registers_again_when_the_lease_is_gone() -> None:
    code, api, said, warned = run(
        REFUSED,
        REFUSED,
        Reply(503, {"error": "store unavailable"}),
        Reply(201, LEASE),
        Reply(200, LEASE),
        REFUSED,  # the server restarts
        REFUSED,
        Reply(502, "bad gateway"),
        Reply(404, {"error": f"no registration {ID!r}: register again"}),  # back, lease lapsed
        REFUSED,
        Reply(201, LEASE),
        Reply(200, LEASE),
    )
    assert code == 0
    assert api.calls[:11] == [REGISTER] * 4 + [HEARTBEAT] * 5 + [REGISTER] * 2
    assert api.calls[-1] == DELETE  # after the stop: deregistered
    assert said[0] == f"registered {ID} (ttl 0.003s)" and f"registered again {ID} (ttl 0.003s)" in said
    assert said[-1] == f"deregistered {ID}"
    assert len([w for w in warned if w.startswith("cannot")]) == 3, "one line per outage, not per retry"
    assert any("is gone" in w and "registering again" in w for w in warned)


def test_a_first_registration_the_server_refuses_is_an_error_not_a_retry_loop() -> None:
    code, api, _said, warned = run(Reply(400, {"error": "invalid registration: address: not an IP"}))
    assert code == 1 and api.calls == [REGISTER]
    assert warned == ["registration refused: HTTP 400: invalid registration: address: not an IP"]


def test_stopped_before_the_server_ever_answered_it_exits_without_deregistering() -> None:
    stop = threading.Event()
    api = ScriptedApi(stop, REFUSED, REFUSED)
    keepalive = Keepalive(
        api, {"ttlSeconds": 1}, stop, print, backoff=Backoff(initial=0.0001, maximum=0.0001)
    )
    assert keepalive.run() == 0
    assert DELETE not in api.calls


def test_a_failed_deregistration_says_the_lease_will_lapse() -> None:
    stop = threading.Event()

    class Unreachable(ScriptedApi):
        def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Reply:
            reply = super().call(method, path, body)
            return REFUSED if method == "DELETE" else reply

    api = Unreachable(stop, Reply(201, LEASE))
    warned: list[str] = []
    tiny = Backoff(initial=0.0001, maximum=0.0001)
    assert Keepalive(api, {"ttlSeconds": 0.003}, stop, print, warned.append, backoff=tiny).run() == 0
    assert warned[-1].startswith(f"could not deregister {ID}") and "lapses in 0.003s" in warned[-1]


@pytest.mark.parametrize(("ttl", "cap"), [(1.0, 0.5), (6.0, 2.0), (30.0, 5.0), (3600.0, 5.0)])
def test_retries_are_capped_at_a_third_of_the_ttl_within_half_a_second_to_five(
    ttl: float, cap: float
) -> None:
    backoff = retry_backoff(ttl)
    assert backoff.maximum == cap and backoff.delay(100, 0.999999) == pytest.approx(cap)
