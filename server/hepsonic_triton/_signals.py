"""Block until SIGINT/SIGTERM, so foreground commands stop what they started."""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["wait_for_shutdown_signal"]


def wait_for_shutdown_signal(*, poll: threading.Event | None = None) -> int:
    """Return the signal number of the first SIGINT/SIGTERM (or 0 when ``poll`` is set by a watcher)."""
    stop = poll or threading.Event()
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return received[0] if received else 0
