"""Run the real ``tritonserver`` on a runtime repository, and stop everything it started."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Self

from ._distribution import TritonDistribution
from ._errors import PortInUseError, TritonStartError
from ._repository import ModelEntry, derive_runtime_repository, load_repository
from ._signals import stop_process_group, terminate_with_parent

__all__ = ["TritonConfig", "TritonServer", "check_port_free", "sweep_stale_shm_regions"]

_SHM_DIR = Path("/dev/shm")


def sweep_stale_shm_regions() -> list[Path]:
    """Remove python-backend shm regions of launchers that no longer run (``hepsonic_<pid>_*``)."""
    removed = []
    for region in _SHM_DIR.glob("hepsonic_*_*"):
        pid = region.name.split("_")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            region.unlink(missing_ok=True)
            removed.append(region)
    return removed


def check_port_free(host: str, port: int, what: str) -> None:
    """Raise :class:`PortInUseError` naming ``what`` when ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the servers themselves: a port in TIME_WAIT (after a restart) is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(f"{what} port {host}:{port} is already in use ({exc.strerror})") from exc


@dataclass(frozen=True, kw_only=True)
class TritonConfig:
    """How to run the embedded Triton. Defaults follow ARCHITECTURE.md."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    device: Literal["cpu", "gpu"] = "cpu"
    instances: int = 1
    threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    #: False serves every model without Triton's dynamic batcher (a benchmark baseline).
    dynamic_batching: bool = True
    #: Overrides every model's max_queue_delay_microseconds when set.
    queue_delay_us: int | None = None
    #: Where the runtime repository and backend folder go; a temporary folder when None.
    workdir: Path | None = None
    #: Seconds Triton gets on shutdown to finish in-flight requests.
    exit_timeout_s: int = 5
    log_verbose: int = 0


class TritonServer:
    """One ``tritonserver`` process (and its python-backend stubs) in its own process group.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. Every model of the repository is loaded at
    start (explicit model control, so the gateway can later load and unload versions for rollouts).
    """

    #: Its name in the supervisor's messages.
    name = "Triton"

    def __init__(self, config: TritonConfig, *, log: IO[str] | None = None) -> None:
        self.config = config
        self.models: list[ModelEntry] = load_repository(config.repository)
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._log_file: IO[str] | None = None
        # Prefix of the python backend's shared-memory regions: unique per launch so we can remove ours only.
        self._shm_prefix = f"hepsonic_{os.getpid()}_{config.grpc_port}_"

    @property
    def http_url(self) -> str:
        """``host:port`` of the KServe v2 HTTP endpoint."""
        return f"{self.config.host}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the KServe v2 gRPC endpoint."""
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """URL of Triton's Prometheus metrics."""
        return f"http://{self.config.host}:{self.config.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """PID of the tritonserver process, when running."""
        return self._process.pid if self._process else None

    @property
    def exit_code(self) -> int | None:
        """tritonserver's exit status once it has exited (a signal as its negative number, -11 for a
        segfault); None while it runs or before it started."""
        return self._process.poll() if self._process is not None else None

    def restart(self, *, timeout_s: float = 120.0, cancel: threading.Event | None = None) -> str:
        """Stop whatever is left of this Triton and start it again on the same ports and repository.

        Returns the last lines of the previous run's log (why it ended); see :meth:`start` for ``cancel``."""
        tail = self._log_tail()
        self.stop()
        self.start(timeout_s=timeout_s, cancel=cancel)
        return tail

    def command(self, runtime: Path, backends: Path, dist: TritonDistribution) -> list[str]:
        """The tritonserver command line."""
        cfg = self.config
        return [
            str(dist.binary),
            f"--model-repository={runtime}",
            f"--backend-directory={backends}",
            f"--cache-directory={dist.caches}",
            "--model-control-mode=explicit",
            "--load-model=*",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--http-address={cfg.host}",
            f"--http-port={cfg.http_port}",
            f"--grpc-address={cfg.host}",
            f"--grpc-port={cfg.grpc_port}",
            "--allow-metrics=true",
            f"--allow-gpu-metrics={'true' if cfg.device == 'gpu' else 'false'}",
            f"--metrics-address={cfg.host}",
            f"--metrics-port={cfg.metrics_port}",
            f"--exit-timeout-secs={cfg.exit_timeout_s}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            "--backend-config=python,shm-default-byte-size=4194304",
            "--backend-config=python,shm-growth-byte-size=8388608",
            f"--log-verbose={cfg.log_verbose}",
        ]

    def start(self, *, timeout_s: float = 120.0, cancel: threading.Event | None = None) -> Self:
        """Start Triton and wait until it and every model version are ready.

        Setting ``cancel`` (a Ctrl-C while waiting) stops it and raises :class:`TritonStartError`."""
        cfg = self.config
        for port, what in (
            (cfg.http_port, "Triton HTTP"),
            (cfg.grpc_port, "Triton gRPC"),
            (cfg.metrics_port, "Triton metrics"),
        ):
            check_port_free(cfg.host, port, what)
        dist = TritonDistribution.from_pytriton()
        sweep_stale_shm_regions()
        if cfg.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hepsonic-triton-")
            workdir = Path(self._tmp.name)
        else:
            workdir = cfg.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        runtime = derive_runtime_repository(
            self.models,
            workdir / "runtime",
            device=cfg.device,
            instances=cfg.instances,
            threads=cfg.threads,
            dynamic_batching=cfg.dynamic_batching,
            queue_delay_us=cfg.queue_delay_us,
        )
        backends = dist.prepare_backends(workdir / "backends")
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(dist.libs), env.get("LD_LIBRARY_PATH")]))
        # The stub imports numpy/onnxruntime from the first Python on PATH: make it ours.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self._log_path = workdir / "tritonserver.log"
        if self._log is None:
            self._log_file = self._log_path.open("w")
        stdout = self._log if self._log is not None else self._log_file
        self._process = subprocess.Popen(
            self.command(runtime, backends, dist),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: stopping it ends the stubs too
            preexec_fn=terminate_with_parent,  # noqa: PLW1509  (prctl only; no locks taken)
        )
        try:
            self._wait_ready(timeout_s, cancel)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, lines: int = 30) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(log went to the caller's stream)"
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _wait_ready(self, timeout_s: float, cancel: threading.Event | None) -> None:
        deadline = time.monotonic() + timeout_s
        assert self._process is not None
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise TritonStartError("start cancelled")
            if self._process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {self._process.returncode} before becoming ready:\n"
                    f"{self._log_tail()}"
                )
            with contextlib.suppress(OSError):
                if self._get("/v2/health/ready")[0] == 200 and self.unready_models() == []:
                    return
            time.sleep(0.2)
        raise TritonStartError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self._log_tail()}")

    def model_states(self) -> list[dict[str, str]]:
        """Triton's repository index: name, version, state (and reason) of every model version."""
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/repository/index", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            states: list[dict[str, str]] = json.loads(response.read())
        return states

    def unready_models(self) -> list[str]:
        """``model:version`` of every repository version that is not READY."""
        served = {(s["name"], s.get("version", "")): s.get("state", "") for s in self.model_states()}
        return [
            f"{entry.name}:{version}"
            for entry in self.models
            for version in self.served_versions(entry)
            if served.get((entry.name, str(version))) != "READY"
        ]

    @staticmethod
    def served_versions(entry: ModelEntry) -> tuple[int, ...]:
        """Versions Triton serves for ``entry`` under its version policy."""
        policy = entry.config.version_policy
        if policy.HasField("all"):
            return entry.versions
        if policy.HasField("specific"):
            return tuple(v for v in entry.versions if v in set(policy.specific.versions))
        count = policy.latest.num_versions if policy.HasField("latest") else 1
        return entry.versions[-count:]

    def stop(self) -> None:
        """Stop tritonserver and its stubs, then remove our shm regions.

        SIGTERM lets Triton finish in-flight requests for ``exit_timeout_s``; SIGKILL follows if it overruns.
        """
        process, self._process = self._process, None
        stop_process_group(process, timeout_s=self.config.exit_timeout_s + 10.0)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        for region in _SHM_DIR.glob(f"{self._shm_prefix}*"):
            region.unlink(missing_ok=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
