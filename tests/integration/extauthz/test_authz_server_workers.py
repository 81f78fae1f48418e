"""AuthzWorkers: N spawned Check servers on one SO_REUSEPORT port, bundle publishing, restarts."""

from __future__ import annotations

import os
import signal

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
