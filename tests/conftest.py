"""Shared fixtures: free ports and a real embedded stack (Triton + gateway) on loopback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hepsonic_client import free_port as _free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO_ROOT / "model_repository"


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A factory of free loopback ports."""
    return _free_port


@dataclass(frozen=True)
class Stack:
    """Addresses of a running embedded stack (each ``127.0.0.1:PORT``)."""

    triton_http: str
    triton_grpc: str
    triton_metrics: str
    gateway_http: str
    gateway_grpc: str
    repository: Path


#: The session stack's Triton, while it runs (see _restart_if_crashed).
_STACK_TRITON: list[Any] = []
_RESTART = threading.Lock()


def _restart_if_crashed() -> None:
    """Triton 2.51 segfaults now and then under load (seen twice in CI: SIGSEGV in pthread_mutex_lock inside
    tritonserver; upstream reports such as triton-inference-server/server#8284). Restart it on the same ports,
    and say so in the log, so that one upstream crash does not fail every later test sharing the stack."""
    with _RESTART:
        if not _STACK_TRITON or (code := _STACK_TRITON[0].exit_code) is None:
            return
        tail = _STACK_TRITON[0].restart()
        logging.getLogger("tests.stack").warning(
            "the session's Triton had exited with code %s; restarted it. Its log ended with:\n%s", code, tail
        )


@pytest.fixture(autouse=True)
def _stack_triton_is_running(request: pytest.FixtureRequest) -> None:
    """Every test on the session stack starts with its Triton running (the watchdog of ``stack`` restarts a
    crashed one within a second, but a test may start during that second)."""
    if "stack" in request.fixturenames:
        _restart_if_crashed()


def _watch_stack_triton(stop: threading.Event) -> None:
    """Restart a crashed session Triton at once, also while a module-scoped fixture (a load generator, a
    Prometheus waiting for data) runs, when no test setup would."""
    while not stop.wait(0.5):
        _restart_if_crashed()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real Triton serving ``model_repository/`` and the gateway in front of it, for the whole session."""
    from hepsonic_triton import TritonConfig, TritonServer  # noqa: PLC0415
    from hepsonic_triton.stack import GatewayProcess  # noqa: PLC0415

    config = TritonConfig(
        repository=MODEL_REPOSITORY,
        http_port=_free_port(),
        grpc_port=_free_port(),
        metrics_port=_free_port(),
        threads=2,
        workdir=tmp_path_factory.mktemp("triton"),
    )
    stop_watching = threading.Event()
    watchdog = threading.Thread(target=_watch_stack_triton, args=(stop_watching,), daemon=True)
    with TritonServer(config) as triton:
        _STACK_TRITON.append(triton)
        watchdog.start()
        gateway = GatewayProcess(
            host="127.0.0.1",
            http_port=_free_port(),
            grpc_port=_free_port(),
            triton_http=triton.http_url,
            triton_grpc=triton.grpc_url,
        ).start()
        try:
            yield Stack(
                triton_http=triton.http_url,
                triton_grpc=triton.grpc_url,
                triton_metrics=f"127.0.0.1:{config.metrics_port}",
                gateway_http=f"127.0.0.1:{gateway.http_port}",
                gateway_grpc=f"127.0.0.1:{gateway.grpc_port}",
                repository=MODEL_REPOSITORY,
            )
        finally:
            stop_watching.set()
            watchdog.join(timeout=150)
            gateway.stop()
            _STACK_TRITON.clear()
