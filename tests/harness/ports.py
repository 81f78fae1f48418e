"""Free TCP ports on the loopback interface, for processes that cannot be told to use port 0."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (Linux: 32768-60999): a port picked here is never handed out
# by the kernel to a port-0 bind or to an outgoing connection while the caller starts its
# process, which is how a port chosen from inside that range got taken (the Envoy probe
# listener's "Address already in use").
_LOW, _HIGH = 20000, 32767
_rng = random.SystemRandom()


def free_port(address: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``address`` (a loopback address), outside the
    ephemeral range.

    The socket is closed before returning, so another process could still take the port in
    between; prefer port 0 where the program reports what it bound (the echo server, Envoy's
    admin).
    """
    for _ in range(200):
        port = _rng.randint(_LOW, _HIGH)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: any port
        sock.bind((address, 0))
        return int(sock.getsockname()[1])
