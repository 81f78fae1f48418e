"""Push status: istioctl-style states per type, NACK records, metric hooks, rows."""

from __future__ import annotations

import xds_unit_builders as b

from pilotfish.xds import resources as rt
from pilotfish.xds.proxy import parse_node
from pilotfish.xds.status import PushStatus, StatusHooks, StreamKind, SyncState, proxy_state, proxy_states


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_states_follow_sends_acks_and_nacks() -> None:
    clock, pushed, nacked, latencies = Clock(), [], [], []
    hooks = StatusHooks(
        pushed=pushed.append, nacked=nacked.append, acked=lambda t, s: latencies.append((t, s))
    )
    status = PushStatus(hooks, clock=clock)
    connection = status.connect(parse_node(b.node()), StreamKind.SOTW)
    cds = connection.of(rt.CLUSTER)
    assert cds.state is SyncState.NOT_SENT
    status.sent(connection, rt.CLUSTER, "v1", "1")
    assert cds.state is SyncState.STALE
    clock.now = 100.25
    status.acked(connection, rt.CLUSTER, "0")  # not the latest nonce: ignored
    assert cds.state is SyncState.STALE
    status.acked(connection, rt.CLUSTER, "1")
    status.acked(connection, rt.CLUSTER, "1")  # a repeated ACK is counted once
    assert (cds.state, cds.acked_version) == (SyncState.SYNCED, "v1")
    assert latencies == [(rt.CLUSTER, 0.25)]
    status.sent(connection, rt.CLUSTER, "v2", "2")
    status.nacked(connection, rt.CLUSTER, "1", "old")  # stale NACK: ignored
    assert cds.state is SyncState.STALE
    status.nacked(connection, rt.CLUSTER, "2", "bad cluster")
    assert cds.state is SyncState.NACKED
    assert cds.nack is not None and (cds.nack.version, cds.nack.message, cds.nack.at) == (
        "v2",
        "bad cluster",
        100.25,
    )
    assert cds.acked_version == "v1"
    assert (pushed, nacked, cds.pushes) == ([rt.CLUSTER, rt.CLUSTER], [rt.CLUSTER], 2)
    status.sent(connection, rt.CLUSTER, "v3", "3")
    assert cds.state is SyncState.STALE  # the NACK was of an older response


def test_rows_list_every_type_in_ads_order() -> None:
    status = PushStatus()
    proxy = parse_node(b.node(CLUSTER_ID="east"))
    connection = status.connect(proxy, StreamKind.DELTA)
    status.sent(connection, rt.CLUSTER, "v1", "1")
    status.acked(connection, rt.CLUSTER, "1")
    status.sent(connection, rt.LISTENER, "v1", "2")
    status.nacked(connection, rt.LISTENER, "2", "port in use")
    status.sent(connection, rt.ENDPOINT, "v1", "3")
    [row] = status.status_rows()
    assert row.as_dict() == {
        "NAME": b.NODE_ID,
        "CLUSTER": "east",
        "CDS": "SYNCED",
        "EDS": "STALE",
        "LDS": "NACKED",
        "RDS": "NOT SENT",
        "SDS": "NOT SENT",
        "KIND": "delta",
        "NACK": "LDS: port in use",
    }


def test_a_replaced_stream_is_not_forgotten_by_the_old_ones_disconnect() -> None:
    status = PushStatus()
    proxy = parse_node(b.node())
    old = status.connect(proxy, StreamKind.SOTW)
    new = status.connect(proxy, StreamKind.DELTA)
    status.disconnect(old)
    assert status.get(proxy.id) is new
    status.disconnect(new)
    assert status.connections() == () and status.status_rows() == []


def test_a_nack_blames_the_resources_envoy_names_else_all_it_carried() -> None:
    status = PushStatus()
    connection = status.connect(parse_node(b.node()), StreamKind.SOTW)
    status.sent(connection, rt.CLUSTER, "v1", "1", ("a", "backend", "backend-a"))
    status.nacked(connection, rt.CLUSTER, "1", "Error adding/updating cluster(s) backend: bad timeout")
    cds = connection.of(rt.CLUSTER)
    assert list(cds.rejected) == ["backend"] and cds.nack is not None
    assert cds.nack.resources == ("backend",)
    status.sent(connection, rt.ENDPOINT, "v1", "2", ("x", "y"))
    status.nacked(connection, rt.ENDPOINT, "2", "malformed IP address: not-an-ip!")
    assert sorted(connection.of(rt.ENDPOINT).rejected) == ["x", "y"]
    [row] = status.status_rows()
    assert row.nacks == {
        "CDS": "backend: Error adding/updating cluster(s) backend: bad timeout",
        "EDS": "x, y: malformed IP address: not-an-ip!",
    }
    assert connection.state is SyncState.NACKED


def test_the_proxy_is_synced_only_when_every_type_sent_is() -> None:
    status = PushStatus()
    connection = status.connect(parse_node(b.node()), StreamKind.DELTA)
    status.sent(connection, rt.CLUSTER, "v1", "1", ("a",))
    status.acked(connection, rt.CLUSTER, "1")
    assert connection.state is SyncState.SYNCED
    status.sent(connection, rt.ENDPOINT, "v1", "2", ("a",))
    assert connection.state is SyncState.STALE
    status.acked(connection, rt.ENDPOINT, "2")
    assert connection.state is SyncState.SYNCED


def test_a_newer_stream_closes_the_older_and_only_the_live_one_disconnects() -> None:
    status, closed = PushStatus(), []
    proxy = parse_node(b.node())
    old = status.connect(proxy, StreamKind.SOTW, close=lambda: closed.append("old"))
    new = status.connect(proxy, StreamKind.SOTW, close=lambda: closed.append("new"))
    assert closed == ["old"]
    assert status.disconnect(old) is False and status.get(proxy.id) is new
    assert status.disconnect(new) is True and status.get(proxy.id) is None


def test_a_proxy_counts_under_its_worst_state() -> None:
    status = PushStatus()
    assert proxy_states(status) == {"NACKED": 0, "STALE": 0, "SYNCED": 0}
    synced, stale, nacked = (
        status.connect(
            parse_node(b.node(f"sidecar~10.0.0.{i}~w{i}.ns~ns.svc.cluster.local")), StreamKind.SOTW
        )
        for i in (1, 2, 3)
    )
    for connection in (synced, stale, nacked):
        status.sent(connection, rt.CLUSTER, "v1", "1")
        status.acked(connection, rt.CLUSTER, "1")
    status.sent(stale, rt.LISTENER, "v1", "2")
    status.sent(nacked, rt.LISTENER, "v1", "2")
    status.nacked(nacked, rt.LISTENER, "2", "bad listener")
    status.sent(nacked, rt.ROUTE, "v1", "3")  # STALE too, but NACKED is worse
    assert [proxy_state(c) for c in (synced, stale, nacked)] == [
        SyncState.SYNCED,
        SyncState.STALE,
        SyncState.NACKED,
    ]
    assert proxy_states(status) == {"NACKED": 1, "STALE": 1, "SYNCED": 1}


def test_rejected_resources_are_counted_by_type_for_the_metric() -> None:
    from pilotfish.metrics import Metrics

    status, metrics = PushStatus(), Metrics()
    metrics.use_rejected_counts(status.rejected_counts)
    connection = status.connect(parse_node(b.node()), StreamKind.SOTW)
    status.sent(connection, rt.ENDPOINT, "v1", "1", ("x", "y"), ("y",))
    status.nacked(connection, rt.ENDPOINT, "1", "malformed IP address")
    assert status.rejected_counts() == {"EDS": 1}  # only the changed resource is suspect
    text = metrics.exposition().decode()
    assert 'pilotfish_xds_rejected_resources{type="EDS"} 1.0' in text
    assert 'pilotfish_xds_rejected_resources{type="CDS"} 0.0' in text
    status.sent(connection, rt.ENDPOINT, "v2", "2", ("y",))
    status.acked(connection, rt.ENDPOINT, "2")
    assert 'pilotfish_xds_rejected_resources{type="EDS"} 0.0' in metrics.exposition().decode()


def test_proxy_status_names_each_rejected_resource() -> None:
    from pilotfish.cli import _nack_text

    info = {
        "state": "NACKED",
        "nack": {"message": "malformed IP address: x"},
        "rejected": {"b": {"message": "malformed IP address: x"}, "a": {"message": "bad port"}},
    }
    assert _nack_text(info) == "a: bad port; b: malformed IP address: x"
    assert _nack_text({"state": "NACKED", "nack": {"message": "text"}, "rejected": {}}) == "text"
