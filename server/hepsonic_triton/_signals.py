"""Process lifetime: turn SIGINT/SIGTERM into a clean stop, and make children die with their launcher."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["shutdown_requested", "stop_process_group", "terminate_with_parent"]

_PR_SET_PDEATHSIG = 1


def terminate_with_parent() -> None:
    """``preexec_fn`` for children in their own session: SIGTERM them when the launcher dies, even by SIGKILL.

    Our children get their own process group (so stopping one ends its stubs too); without this a launcher
    killed outright would leave them orphaned. Linux prctl; a no-op elsewhere.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def shutdown_requested() -> Iterator[threading.Event]:
    """Within the block, SIGINT/SIGTERM set the yielded event instead of ending the process.

    Enter it *before* announcing readiness: a supervisor (or a test) that signals right after the announcement
    must find the handlers in place, or Python's default action kills us without a clean stop.
    """
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
