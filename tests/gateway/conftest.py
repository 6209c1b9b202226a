"""Fixtures of the gateway tests: a tiny ONNX repository, two real Triton processes, gateways in subprocesses.

``toy`` (versions 1 and 2, both served): y = x * version + 1, so every answer says exactly which version ran.
``toyroll`` (versions 1 and 2 on disk, only 1 served at start): the subject of the rollout test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hepsonic_client import free_port
from hepsonic_gateway import hash_key

KEYS = {
    "reader": "reader-key-5f1c9d0e7a",  # toy only, any version
    "pinned": "pinned-key-0b7e2c41f8",  # toy only, pinned to the stable alias
    "admin": "admin-key-93d1a6c2e4",  # everything, admin scope
}

CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 64
version_policy {{ {policy} }}
input [ {{ name: "x" data_type: TYPE_FP32 dims: [4] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [4] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
{parameters}
"""


def _toy_onnx(version: int) -> bytes:
    from onnx import TensorProto, helper  # noqa: PLC0415

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [float(version)])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["xs"]), helper.make_node("Add", ["xs", "one"], ["y"])],
        f"toy_v{version}",
        [x],
        [y],
        [scale, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def write_toy_repository(root: Path) -> dict[tuple[str, int], str]:
    """Write ``toy`` and ``toyroll`` under ``root``; returns the sha256 of every (model, version)."""
    digests = {}
    for name, policy in (("toy", "all { }"), ("toyroll", "specific { versions: [1] }")):
        parameters = []
        for version in (1, 2):
            folder = root / name / str(version)
            folder.mkdir(parents=True, exist_ok=True)
            data = _toy_onnx(version)
            (folder / "model.onnx").write_bytes(data)
            digests[(name, version)] = hashlib.sha256(data).hexdigest()
            parameters.append(
                f'parameters {{ key: "sha256/{version}" value {{ string_value: "{digests[(name, version)]}" }} }}'
            )
        (root / name / "config.pbtxt").write_text(
            CONFIG.format(name=name, policy=policy, parameters="\n".join(parameters))
        )
    return digests


def http_status(url: str, *, headers: dict[str, str] | None = None, timeout: float = 2.0) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if predicate():
                return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Gateway:
    """A gateway subprocess (``python -m hepsonic_gateway``) with its own settings and log file."""

    workdir: Path
    env: dict[str, str]
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    scheme: str = "http"
    process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.http}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.http_port}.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout_s: float = 30.0) -> Gateway:
        env = dict(os.environ)
        env.update(self.env)
        env.update(
            {
                "HEPSONIC_GATEWAY_HOST": "127.0.0.1",
                "HEPSONIC_GATEWAY_HTTP_PORT": str(self.http_port),
                "HEPSONIC_GATEWAY_GRPC_PORT": str(self.grpc_port),
            }
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hepsonic_gateway"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.scheme == "http":

            def ready() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"gateway exited:\n{self.log_text()[-3000:]}")
                return http_status(f"{self.url}/v2/health/ready") == 200

            wait_until(ready, timeout_s, "the gateway to be ready")
        return self

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Cluster:
    """Two Triton replicas of the toy repository."""

    repository: Path
    digests: dict[tuple[str, int], str]
    tritons: list[Any]
    workdir: Path

    def endpoints(self) -> list[dict[str, str]]:
        return [{"http": t.http_url, "grpc": t.grpc_url} for t in self.tritons]

    def write_routing(self, path: Path, models: dict[str, Any] | None = None, **pool: Any) -> Path:
        default_models = {
            "*": {"pool": "default"},
            "toy": {
                "pool": "default",
                "aliases": {"stable": 1, "canary": 2},
                "split": {"stable": 70, "canary": 30},
            },
        }
        document = {
            "pools": {"default": {"endpoints": self.endpoints(), "health_interval_s": 0.5, **pool}},
            "models": default_models if models is None else models,
        }
        path.write_text(yaml.safe_dump(document))
        return path

    def gateway(self, name: str, *, routing: Path | None = None, keys: bool = True, **env: str) -> Gateway:
        routing = routing or self.write_routing(self.workdir / f"routing-{name}.yaml")
        settings = {"HEPSONIC_ROUTING_FILE": str(routing), "HEPSONIC_WATCH_INTERVAL_S": "0.3", **env}
        if keys:
            settings["HEPSONIC_API_KEYS_FILE"] = str(write_keys(self.workdir / f"keys-{name}.yaml"))
        return Gateway(workdir=self.workdir, env=settings)


def write_keys(path: Path) -> Path:
    document = {
        "keys": [
            {"name": "reader", "sha256": hash_key(KEYS["reader"]), "models": ["toy"]},
            {"name": "pinned", "sha256": hash_key(KEYS["pinned"]), "models": ["toy"], "versions": ["stable"]},
            {"name": "admin", "sha256": hash_key(KEYS["admin"]), "models": ["*"], "admin": True},
        ]
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two real Triton processes serving the toy repository (for the whole session of gateway tests)."""
    from hepsonic_triton import TritonConfig, TritonServer  # noqa: PLC0415

    workdir = tmp_path_factory.mktemp("gateway")
    repository = workdir / "repository"
    digests = write_toy_repository(repository)
    tritons = []
    try:
        for index in range(2):
            config = TritonConfig(
                repository=repository,
                http_port=free_port(),
                grpc_port=free_port(),
                metrics_port=free_port(),
                threads=1,
                exit_timeout_s=1,
                workdir=workdir / f"triton{index}",
            )
            tritons.append(TritonServer(config).start())
        yield Cluster(repository=repository, digests=digests, tritons=tritons, workdir=workdir)
    finally:
        for triton in tritons:
            triton.stop()


@pytest.fixture(scope="session")
def gateway(cluster: Cluster) -> Iterator[Gateway]:
    """The gateway with API keys in front of both replicas (shared by the read-only tests)."""
    gw = cluster.gateway("shared", HEPSONIC_LOG_LEVEL="DEBUG").start()
    yield gw
    gw.stop()
