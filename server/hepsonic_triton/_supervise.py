"""Keep a foreground stack running: restart a component that exits on its own, within a restart budget.

Triton 2.51 segfaults now and then under load (an upstream crash), and a launcher that then sat waiting for
Ctrl-C with nothing behind its ports would be a silent outage. Like systemd's ``StartLimitBurst`` /
``StartLimitIntervalSec`` (and a Kubernetes restart policy), a component is restarted on the same ports at
most ``max_restarts`` times in ``window_s``; beyond that the stack stops with a non-zero exit status, so
whatever supervises the launcher sees a failure rather than a clean stop.

Restarts run on the caller's (main) thread: a child started from a helper thread would receive its
parent-death signal when that thread ends (``PR_SET_PDEATHSIG`` follows the creating thread).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._errors import TritonError

__all__ = ["RestartBudget", "Supervised", "describe_exit", "supervise"]


class Supervised(Protocol):
    """A component the supervisor can watch and restart."""

    #: Its name in messages ("Triton", "the gateway").
    name: str

    @property
    def exit_code(self) -> int | None:
        """Exit status once it has exited on its own (a signal as its negative number); None while it runs."""

    def restart(self, *, cancel: threading.Event | None = None) -> str:
        """Start it again on the same ports; returns the end of the previous run's log ("" when there is
        none). Raises :class:`~hepsonic_triton.TritonError` when it cannot start or ``cancel`` is set."""


@dataclass
class RestartBudget:
    """At most ``max_restarts`` restarts in any ``window_s`` seconds (0: never restart)."""

    max_restarts: int = 3
    window_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _recent: deque[float] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_s <= 0:
            raise ValueError(
                f"restart budget: max_restarts must be >= 0 and window_s > 0, got {self.max_restarts} and "
                f"{self.window_s}"
            )

    def take(self) -> bool:
        """Use one restart if the budget allows it now."""
        now = self.clock()
        while self._recent and now - self._recent[0] >= self.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.max_restarts:
            return False
        self._recent.append(now)
        return True

    @property
    def used(self) -> int:
        """Restarts counted in the current window."""
        return len(self._recent)


def describe_exit(code: int) -> str:
    """``"exited with code 3"`` or ``"was killed by SIGSEGV"`` for a subprocess return code."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def supervise(
    components: Sequence[Supervised],
    stop: threading.Event,
    budget: RestartBudget,
    *,
    say: Callable[[str], None],
    poll_s: float = 0.5,
) -> int:
    """Watch ``components`` until ``stop`` is set (returns 0) or one exits beyond the budget or cannot be
    restarted (returns 1). What happens is told to ``say`` (the launcher prints it on stderr)."""
    while not stop.wait(poll_s):
        for component in components:
            code = component.exit_code
            if code is None:
                continue
            what = f"{component.name} {describe_exit(code)}"
            if not budget.take():
                say(
                    f"{what}; {budget.max_restarts} restart(s) in {budget.window_s:.0f} s already used: "
                    "stopping the stack"
                )
                return 1
            say(
                f"{what}; restarting it on the same ports "
                f"(restart {budget.used} of {budget.max_restarts} allowed in {budget.window_s:.0f} s)"
            )
            try:
                tail = component.restart(cancel=stop)
            except TritonError as exc:
                if stop.is_set():
                    return 0
                say(f"{component.name} did not come back: {exc}")
                return 1
            if tail:
                say(f"the end of its previous log:\n{tail}")
            say(f"{component.name} is serving again")
    return 0
