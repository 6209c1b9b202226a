"""The restart budget and the supervisor loop, with fake components (no processes)."""

from __future__ import annotations

import threading

import pytest

from hepsonic_triton._errors import TritonStartError
from hepsonic_triton._supervise import RestartBudget, describe_exit, supervise


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeComponent:
    """Exits (with ``code``) each time ``crash()`` is called; ``restart`` brings it back or fails."""

    def __init__(self, name: str, *, fail_restart: bool = False) -> None:
        self.name = name
        self.code: int | None = None
        self.restarts = 0
        self.fail_restart = fail_restart

    @property
    def exit_code(self) -> int | None:
        return self.code

    def crash(self, code: int = -11) -> None:
        self.code = code

    def restart(self, *, cancel: threading.Event | None = None) -> str:
        if self.fail_restart:
            raise TritonStartError("port 8001 is already in use")
        self.restarts += 1
        self.code = None
        return f"log line of run {self.restarts}"


def test_the_budget_allows_max_restarts_per_window_then_refuses_until_the_window_slides() -> None:
    clock = FakeClock()
    budget = RestartBudget(max_restarts=2, window_s=60.0, clock=clock)
    assert budget.take()
    clock.now = 10.0
    assert budget.take()
    clock.now = 59.0
    assert not budget.take()
    assert budget.used == 2
    clock.now = 60.0  # the first restart leaves the window
    assert budget.take()
    assert not budget.take()


def test_a_zero_budget_never_restarts() -> None:
    assert not RestartBudget(max_restarts=0).take()


@pytest.mark.parametrize(("max_restarts", "window_s"), [(-1, 600.0), (3, 0.0)])
def test_a_nonsense_budget_is_refused(max_restarts: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="restart budget"):
        RestartBudget(max_restarts=max_restarts, window_s=window_s)


def test_exits_are_described_by_code_or_signal_name() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-11) == "was killed by SIGSEGV"
    assert describe_exit(-200) == "was killed by signal 200"


def _run(
    components: list[FakeComponent], budget: RestartBudget, stop: threading.Event
) -> tuple[int, list[str]]:
    said: list[str] = []
    return supervise(components, stop, budget, say=said.append, poll_s=0.001), said


def test_a_crashed_component_is_restarted_and_the_supervisor_goes_on_until_stopped() -> None:
    triton, gateway = FakeComponent("Triton"), FakeComponent("the gateway")
    stop = threading.Event()
    triton.crash()
    said: list[str] = []

    def say(message: str) -> None:
        said.append(message)
        if message == "Triton is serving again":
            gateway.crash(1)
        if message == "the gateway is serving again":
            stop.set()

    status = supervise([triton, gateway], stop, RestartBudget(max_restarts=3), say=say, poll_s=0.001)
    assert status == 0
    assert (triton.restarts, gateway.restarts) == (1, 1)
    assert (
        said[0]
        == "Triton was killed by SIGSEGV; restarting it on the same ports (restart 1 of 3 allowed in 600 s)"
    )
    assert "the end of its previous log:\nlog line of run 1" in said
    assert said[-3].startswith(
        "the gateway exited with code 1; restarting it on the same ports (restart 2 of 3"
    )


def test_a_component_that_keeps_crashing_stops_the_stack_with_a_failure() -> None:
    triton = FakeComponent("Triton")
    triton.crash()
    original_restart = triton.restart

    def crash_again(*, cancel: threading.Event | None = None) -> str:
        tail = original_restart(cancel=cancel)
        triton.crash()
        return tail

    triton.restart = crash_again  # type: ignore[method-assign]
    status, said = _run([triton], RestartBudget(max_restarts=2), threading.Event())
    assert status == 1
    assert triton.restarts == 2
    assert said[-1] == "Triton was killed by SIGSEGV; 2 restart(s) in 600 s already used: stopping the stack"


def test_a_restart_that_fails_stops_the_stack_and_says_why() -> None:
    triton = FakeComponent("Triton", fail_restart=True)
    triton.crash(-9)
    status, said = _run([triton], RestartBudget(), threading.Event())
    assert status == 1
    assert said[-1] == "Triton did not come back: port 8001 is already in use"


def test_a_stop_during_a_restart_is_a_clean_stop() -> None:
    stop = threading.Event()
    triton = FakeComponent("Triton", fail_restart=True)
    triton.crash()

    def cancelled(*, cancel: threading.Event | None = None) -> str:
        stop.set()  # Ctrl-C arrives while Triton is coming back
        raise TritonStartError("start cancelled")

    triton.restart = cancelled  # type: ignore[method-assign]
    assert _run([triton], RestartBudget(), stop)[0] == 0
