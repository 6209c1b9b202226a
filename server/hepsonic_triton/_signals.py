"""Process lifetime: block until SIGINT/SIGTERM, and make children die with their launcher."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from types import FrameType

__all__ = ["stop_process_group", "terminate_with_parent", "wait_for_shutdown_signal"]

_PR_SET_PDEATHSIG = 1


def terminate_with_parent() -> None:
    """``preexec_fn`` for children in their own session: SIGTERM them when the launcher dies, even by SIGKILL.

    Our children get their own process group (so stopping one ends its stubs too); without this a launcher
    killed outright would leave them orphaned. Linux prctl; a no-op elsewhere.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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


def stop_process_group(process: subprocess.Popen[bytes] | None, *, timeout_s: float) -> None:
    """End the process group led by ``process``: SIGTERM, SIGKILL after ``timeout_s``, then SIGKILL stragglers.

    The last step matters for Triton: its python-backend stubs can outlive a parent that had to be killed.
    """
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
