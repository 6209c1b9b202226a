"""Process lifetime: turn SIGINT/SIGTERM into a clean stop, and make children die with their launcher."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = [
    "PARENT_PID_ENV",
    "exit_with_parent",
    "shutdown_requested",
    "stop_process_group",
    "terminate_with_parent",
]

_PR_SET_PDEATHSIG = 1

#: Set by a launcher (the client's fallback) to its own pid: ``hepsonic-triton`` then stops when it dies.
PARENT_PID_ENV = "HEPSONIC_PARENT_PID"


def _resolve_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved once, here: between fork and exec the child must not dlopen/dlsym, which take the loader's lock,
# and another thread of the parent may have held that lock at the fork (the child would hang before exec).
_PRCTL = _resolve_prctl()


def terminate_with_parent() -> None:
    """``preexec_fn`` for children in their own session: SIGTERM them when the launcher dies, even by SIGKILL.

    Our children get their own process group (so stopping one ends its stubs too); without this a launcher
    killed outright would leave them orphaned. Linux prctl; a no-op elsewhere. It only calls the function
    resolved at import, so it takes no lock in the forked child.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_with_parent(*, poll_s: float = 0.5) -> None:
    """SIGTERM this process once its launcher dies, when the launcher asked for it via ``HEPSONIC_PARENT_PID``.

    The thread-safe counterpart of :func:`terminate_with_parent` for launchers that may have other threads
    (a reconstruction job): nothing runs between their fork and exec; instead we watch our parent pid, which
    changes when the launcher process ends, whichever of its threads started us. Ignored unless the launcher
    is our direct parent (a wrapper such as a container runtime sits in between).
    """
    wanted = os.environ.pop(PARENT_PID_ENV, "")
    if not wanted.isdigit():
        return
    parent = int(wanted)
    if os.getppid() != parent:
        if not _alive(parent):  # it died before we got here
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
