"""AuthzWorkers: N spawned Check servers on one SO_REUSEPORT port, bundle publishing, restarts."""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import pytest
from authz_server_support import (
    RsaKey,
    bundle,
    check_request,
    check_sync,
    deny_path,
    request_authn,
    require_jwt,
)
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2
from harness.processes import is_running
from harness.waiting import wait_for

from pilotfish.extauthz.workers import AuthzWorkers

pytestmark = pytest.mark.integration

KEY = RsaKey()
CONNECTIONS = 40  # 2 workers: all on one worker has probability 2**-39


@pytest.fixture
def workers():
    created: list[AuthzWorkers] = []

    def make(n: int, **options) -> AuthzWorkers:
        w = AuthzWorkers(0, n, **options)
        created.append(w)
        w.start()
        return w

    yield make
    pids = [pid for w in created for pid in w.pids]
    for w in created:
        w.stop()
    assert not [pid for pid in pids if is_running(pid)]


def test_two_workers_share_the_port_and_both_serve(workers):
    w = workers(2, bundle=bundle(require_jwt(), request_authn({"jwks": KEY.jwks()})))
    assert len(set(w.pids)) == 2 and os.getpid() not in w.pids
    token = KEY.token()
    codes = [check_sync(w.port, check_request(token=token)).status.code for _ in range(CONNECTIONS)]
    assert codes == [code_pb2.OK] * CONNECTIONS
    stats = w.stats()
    assert {s["pid"] for s in stats} == set(w.pids)
    assert all(s["allow"] > 0 for s in stats), stats  # the kernel spread connections over both
    assert sum(s["allow"] for s in stats) == CONNECTIONS


def test_a_publish_reaches_every_worker(workers):
    first = bundle(require_jwt(), request_authn({"jwks": KEY.jwks()}))
    w = workers(2, bundle=first)
    assert {s["version"] for s in w.stats()} == {first.version}
    assert check_sync(w.port, check_request()).status.code == code_pb2.PERMISSION_DENIED
    second = bundle(deny_path("/admin*"))
    assert w.publish(second)
    assert not w.publish(bundle(deny_path("/admin*")))  # same content, same version: nothing sent
    w.wait_version(second.version)
    codes = {check_sync(w.port, check_request()).status.code for _ in range(CONNECTIONS)}
    assert codes == {code_pb2.OK}  # no worker still requires a JWT
    denied = check_sync(w.port, check_request(path="/admin"))
    assert denied.denied_response.body == "RBAC: access denied"


def test_a_killed_worker_is_restarted_with_the_latest_bundle(workers):
    w = workers(2, bundle=bundle(require_jwt()))
    latest = bundle(deny_path("/admin*"))
    w.publish(latest)
    w.wait_version(latest.version)
    victim = w.pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: w.restarts == 1 and len(w.pids) == 2, timeout=30, message="worker restarted")
    assert victim not in w.pids
    assert {s["version"] for s in w.stats()} == {latest.version}
    assert all(check_sync(w.port, check_request()).status.code == code_pb2.OK for _ in range(10))


def test_without_restart_a_dead_pool_refuses_checks(workers):
    w = workers(1, bundle=bundle(require_jwt()), restart=False)
    os.kill(w.pids[0], signal.SIGKILL)
    wait_for(lambda: not w.pids, timeout=10, message="worker gone")
    with pytest.raises(grpc.RpcError) as failure:
        check_sync(w.port, check_request())
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert w.restarts == 0


def decided(port: int, timeout: float) -> bool:
    """One Check on a fresh connection answered (allow or deny) within ``timeout``."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        try:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            stub.Check(check_request(path="/admin"), timeout=timeout)
        except grpc.RpcError:
            return False
    return True


class Traffic:
    """Checks on fresh connections from a few threads until stopped: (start time, decided)."""

    def __init__(self, port: int, threads: int = 3, timeout: float = 1.0) -> None:
        self.port, self.timeout = port, timeout
        self.results: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            ok = decided(self.port, self.timeout)
            with self._lock:
                self.results.append((started, ok))

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def decided_again_at(self, since: float) -> float:
        """The start time after which every Check was decided (``since`` if none failed)."""
        failed = [started for started, ok in self.results if not ok and started >= since]
        later = [started for started, _ok in self.results if started > max(failed, default=since)]
        return min(later, default=float("inf")) if failed else since


def test_a_stopped_worker_is_killed_and_replaced_and_checks_are_decided_again_within_2s(workers):
    """SIGSTOP leaves the worker's socket in the SO_REUSEPORT group: the kernel keeps handing it
    connections nobody accepts. The health probe finds it, kills it (which takes the socket out
    of the group) and starts a replacement."""
    reported: list[str] = []
    w = workers(2, bundle=bundle(deny_path("/admin*")), on_failure=reported.append)
    victim, other = w.pids
    with Traffic(w.port) as traffic:
        time.sleep(1.0)  # requests flow before the stop
        stopped_at = time.monotonic()
        os.kill(victim, signal.SIGSTOP)
        try:
            wait_for(lambda: not is_running(victim), timeout=10, message="the stopped worker was killed")
            killed_after = time.monotonic() - stopped_at
            time.sleep(3.0)  # requests keep flowing after the kill
        finally:
            if is_running(victim):
                os.kill(victim, signal.SIGCONT)  # let the fixture stop it if the test failed
    recovered_after = traffic.decided_again_at(stopped_at) - stopped_at
    failures = sum(1 for started, ok in traffic.results if not ok and started >= stopped_at)
    print(
        f"\nSIGSTOP → killed after {killed_after:.2f}s; every Check decided again after "
        f"{recovered_after:.2f}s ({failures} undecided of {len(traffic.results)})"
    )
    assert w.hung == 1 and other in w.pids
    assert reported == [f"authz worker 0 (pid {victim}) hung"], "reported to the supervisor"
    assert recovered_after <= 2.0, f"Checks undecided for {recovered_after:.2f}s after SIGSTOP"
    before = [ok for started, ok in traffic.results if started < stopped_at - traffic.timeout]
    assert before and all(before), "every Check that ended before the stop was decided"
    wait_for(lambda: len(w.pids) == 2 and w.restarts == 1, timeout=30, message="a replacement worker")
    assert victim not in w.pids
    assert decided(w.port, timeout=5)


def test_an_unreadable_message_does_not_silence_a_workers_mailbox(workers):
    w = workers(1, bundle=bundle(require_jwt()))
    slot = w._slots[0]
    assert slot.conn is not None
    slot.conn.send_bytes(b"not a pickle")
    latest = bundle(deny_path("/admin*"))
    assert w.publish(latest)
    w.wait_version(latest.version)  # the mailbox read past the garbage and installed the bundle
    assert check_sync(w.port, check_request()).status.code == code_pb2.OK
