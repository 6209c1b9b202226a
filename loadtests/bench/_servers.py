"""The servers a benchmark phase needs, started on free loopback ports and stopped by the PIDs we started."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hepsonic_client import free_port
from hepsonic_triton import TritonConfig, TritonServer, stop_process_group
from hepsonic_triton.stack import GatewayProcess

__all__ = ["Endpoints", "ServerSetup", "naive_peer", "triton_stack"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class ServerSetup:
    """A server configuration under test (what the capacity plan recommends from)."""

    dynamic_batching: bool = True
    #: None = the repository's max_queue_delay_microseconds.
    queue_delay_us: int | None = None
    instances: int = 1
    threads: int = 1
    device: str = "cpu"

    def label(self, default_delay_us: int) -> dict[str, object]:
        """Labels of this setup for results and reports."""
        return {
            "dynamic_batching": self.dynamic_batching,
            "queue_delay_us": self.queue_delay_us if self.queue_delay_us is not None else default_delay_us,
            "instances": self.instances,
            "threads": self.threads,
            "device": self.device,
        }


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    """host:port of every endpoint of a running phase ("" when not started)."""

    triton_http: str = ""
    triton_grpc: str = ""
    gateway_http: str = ""
    gateway_grpc: str = ""
    naive_http: str = ""


@contextlib.contextmanager
def triton_stack(
    repository: Path, model: str, setup: ServerSetup, *, with_gateway: bool
) -> Iterator[Endpoints]:
    """Triton serving only ``model`` (a one-model view of ``repository``), optionally with the gateway."""
    with tempfile.TemporaryDirectory(prefix="hepsonic-bench-") as tmp:
        view = Path(tmp) / "repository"
        view.mkdir()
        (view / model).symlink_to((repository / model).resolve())
        config = TritonConfig(
            repository=view,
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            device="gpu" if setup.device == "gpu" else "cpu",
            instances=setup.instances,
            threads=setup.threads,
            dynamic_batching=setup.dynamic_batching,
            queue_delay_us=setup.queue_delay_us,
            workdir=Path(tmp) / "triton",
        )
        with TritonServer(config) as triton:
            gateway = None
            if with_gateway:
                gateway = GatewayProcess(
                    host="127.0.0.1",
                    http_port=free_port(),
                    grpc_port=free_port(),
                    triton_http=triton.http_url,
                    triton_grpc=triton.grpc_url,
                ).start()
            try:
                yield Endpoints(
                    triton_http=triton.http_url,
                    triton_grpc=triton.grpc_url,
                    gateway_http=f"127.0.0.1:{gateway.http_port}" if gateway else "",
                    gateway_grpc=f"127.0.0.1:{gateway.grpc_port}" if gateway else "",
                )
            finally:
                if gateway is not None:
                    gateway.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def naive_peer(
    onnx_file: Path, model: str, setup: ServerSetup, *, timeout_s: float = 60.0
) -> Iterator[Endpoints]:
    """The naive FastAPI + onnxruntime baseline (``loadtests/naive_peer.py``) in its own process."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "loadtests.naive_peer", "--model-file", str(onnx_file)]
    command += ["--model-name", model, "--port", str(port), "--threads", str(setup.threads)]
    command += ["--device", setup.device]
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bench: the naive peer exited with code {process.returncode}")
            if _ready(f"http://127.0.0.1:{port}/v2/health/ready"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench: the naive peer was not ready after {timeout_s:.0f} s")
            time.sleep(0.1)
        yield Endpoints(naive_http=f"127.0.0.1:{port}")
    finally:
        stop_process_group(process, timeout_s=10)
