"""Free TCP ports on the loopback interface, for processes that cannot be told to use port 0."""

from __future__ import annotations

import socket


def free_port(address: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``address`` (a loopback address).

    The socket is closed before returning, so another process could take the port in between;
    prefer port 0 where the program reports what it bound (the echo server, Envoy's admin).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])
