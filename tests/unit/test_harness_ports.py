"""The test harness's ``free_port`` picks below the kernel's ephemeral range, where no port-0 bind
or outgoing connection of another process can take the port before the caller binds it."""

from __future__ import annotations

import socket

from harness.ports import free_port


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except OSError:  # not Linux: its documented default
        return 32768, 60999
    return low, high


def test_free_ports_are_bindable_and_outside_the_ephemeral_range() -> None:
    low, _high = _ephemeral_range()
    ports = {free_port() for _ in range(20)}
    assert all(1024 < p < low for p in ports), sorted(ports)
    assert len(ports) > 1, "a random pick, not one fixed port"
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
