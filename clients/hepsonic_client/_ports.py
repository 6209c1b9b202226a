"""Free loopback ports for the servers a process starts itself (the fallback Triton, tests, benchmarks)."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port"]

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000
_handed_out: set[int] = set()
_lock = threading.Lock()


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux default 32768)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, below the kernel's ephemeral range, and new to this process.

    A port the kernel picks (bind to port 0) comes from the ephemeral range, which outgoing connections draw
    their source ports from too: any client connection, such as the readiness probe of the very server being
    started, may take it before that server binds it (seen in CI: "port ... is already in use"). A port below
    the range is only ever taken by an explicit bind.
    """
    high = _ephemeral_start() - 1
    if high - _LOWEST_PORT < 1000:  # an unusual kernel set-up: let the kernel choose
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(1000):
        port = random.randint(_LOWEST_PORT, high)
        with _lock:
            if port in _handed_out:
                continue
        if _bindable(port):
            with _lock:
                _handed_out.add(port)
            return port
    raise OSError(f"no free loopback port in {_LOWEST_PORT}-{high}")
