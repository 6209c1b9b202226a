"""``hepsonic-serve`` (what ``make serve`` runs): ready banner, clean stop, clear start-up errors."""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration


def _serve(repository: Path, ports: list[int], *extra: str) -> subprocess.Popen[bytes]:
    th, tg, tm, gh, gg = ports
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hepsonic_triton.stack",
            "--repository",
            str(repository),
            "--triton-http-port",
            str(th),
            "--triton-grpc-port",
            str(tg),
            "--triton-metrics-port",
            str(tm),
            "--http-port",
            str(gh),
            "--grpc-port",
            str(gg),
            "--threads",
            "1",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def _reaped(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The launched process; killed at the end if the test left it running, and its pipe closed."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _read_until(process: subprocess.Popen[bytes], marker: str, timeout_s: float = 60) -> str:
    """Collect output until ``marker`` appears (or the process exits / time runs out).

    Reads the raw file descriptor: a buffered reader could hold the marker while select() waits.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while marker.encode() not in seen and time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_serve_is_ready_then_stops_everything_on_ctrl_c(
    toy_repository: Callable[..., Path], free_port: Callable[[], int]
) -> None:
    with _reaped(_serve(toy_repository((1, 2)), [free_port() for _ in range(5)])) as process:
        banner = _read_until(process, "Press Ctrl-C")
        assert "hepsonic is ready" in banner, banner
        assert re.search(r"^    toy +versions 1, 2$", banner, flags=re.MULTILINE), banner
        descendants = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(p.name() for p in descendants)
        assert "tritonserver" in names
        assert "triton_python_backend_stub" in names or "triton_python" in names
        assert len(descendants) >= 4  # Triton, two stubs, the gateway
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(descendants, timeout=5)
    assert alive == [], f"left running: {alive}"
    assert not list(Path("/dev/shm").glob(f"hepsonic_{process.pid}_*"))


def test_taken_port_is_a_clear_error(
    toy_repository: Callable[..., Path], free_port: Callable[[], int]
) -> None:
    ports = [free_port() for _ in range(5)]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports[3]))
        blocker.listen()
        process = _serve(toy_repository(), ports)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 2
    assert f"gateway HTTP port 127.0.0.1:{ports[3]} is already in use" in output


def test_invalid_repository_is_a_clear_error(tmp_path: Path, free_port: Callable[[], int]) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.pbtxt").write_text('name: "broken"\nplatform: "onnxruntime_onnx"\n')
    process = _serve(tmp_path, [free_port() for _ in range(5)])
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 2
    assert "model 'broken': no numeric version folder" in output
    assert "Traceback" not in output


def test_triton_cli_runs_until_sigterm(
    toy_repository: Callable[..., Path], free_port: Callable[[], int]
) -> None:
    with _reaped(_triton_cli(toy_repository(), [free_port() for _ in range(3)])) as process:
        assert "hepsonic-triton ready" in _read_until(process, "ready")
        process.terminate()
        assert process.wait(timeout=30) == 0


def _triton_cli(repository: Path, ports: list[int], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hepsonic_triton",
            "--repository",
            str(repository),
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Triton's log and the launcher's messages
    )


@pytest.mark.parametrize(
    ("launch", "ready_marker", "child"),
    [(_triton_cli, "hepsonic-triton ready", "tritonserver"), (_serve, "Press Ctrl-C", "hepsonic_gateway")],
    ids=["hepsonic-triton", "hepsonic-serve"],
)
def test_killing_a_launcher_outright_leaves_nothing_running(
    toy_repository: Callable[..., Path],
    free_port: Callable[[], int],
    launch: Callable[[Path, list[int]], subprocess.Popen[bytes]],
    ready_marker: str,
    child: str,
) -> None:
    """SIGKILL gives the launcher no chance to clean up: its children must still go (parent-death signal)."""
    with _reaped(launch(toy_repository(), [free_port() for _ in range(5)])) as process:
        assert ready_marker in _read_until(process, ready_marker)
        descendants = psutil.Process(process.pid).children(recursive=True)
        assert any(child in " ".join(p.cmdline()) for p in descendants)
        process.kill()
        process.wait(timeout=10)
        _, alive = psutil.wait_procs(descendants, timeout=20)
        assert alive == [], f"orphaned: {alive}"


def test_a_crashed_triton_restarts_on_the_same_ports(
    toy_repository: Callable[..., Path], free_port: Callable[[], int], tmp_path: Path
) -> None:
    """What the test session's stack relies on when Triton segfaults (tests/conftest.py)."""
    from hepsonic_triton import TritonConfig, TritonServer  # noqa: PLC0415

    config = TritonConfig(
        repository=toy_repository((1,)),
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        threads=1,
        workdir=tmp_path / "triton",
    )
    with TritonServer(config) as triton:
        assert triton.exit_code is None
        assert triton.pid is not None
        os.kill(triton.pid, signal.SIGSEGV)
        deadline = time.monotonic() + 30
        while triton.exit_code is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert triton.exit_code is not None
        tail = triton.restart()
        assert "Signal (11)" in tail
        assert triton.exit_code is None
        assert triton.unready_models() == []
        assert triton.grpc_url == f"127.0.0.1:{config.grpc_port}"


def _banner_pid(banner: str, component: str) -> int:
    match = re.search(rf"^  {component} .*\(pid (\d+)\)$", banner, flags=re.MULTILINE)
    assert match, banner
    return int(match.group(1))


def _infer_toy(url: str) -> list[float]:
    import tritonclient.http as httpclient  # noqa: PLC0415

    with httpclient.InferenceServerClient(url) as client:
        x = httpclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.arange(4, dtype=np.float32).reshape(1, 4))
        result = client.infer("toy", [x])
        return [float(v) for v in result.as_numpy("y").ravel()]


def test_serve_restarts_a_crashed_triton_and_serves_again(
    toy_repository: Callable[..., Path], free_port: Callable[[], int]
) -> None:
    """Triton segfaults now and then (upstream): the stack brings it back on the same ports by itself."""
    ports = [free_port() for _ in range(5)]
    with _reaped(_serve(toy_repository((1,)), ports)) as process:
        banner = _read_until(process, "Press Ctrl-C")
        triton_pid = _banner_pid(banner, "Triton")
        gateway = f"127.0.0.1:{ports[3]}"
        assert _infer_toy(gateway) == [1.0, 2.0, 3.0, 4.0]
        os.kill(triton_pid, signal.SIGSEGV)
        output = _read_until(process, "Triton is serving again")
        assert "Triton was killed by SIGSEGV; restarting it on the same ports (restart 1 of 3" in output
        assert "Signal (11) received" in output  # the end of the crashed run's log
        restarted = [p for p in psutil.Process(process.pid).children() if p.name() == "tritonserver"]
        assert [p.pid for p in restarted] != [triton_pid]
        assert len(restarted) == 1
        # The gateway finds the new Triton behind the same address (its health check may need a moment).
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _infer_toy(gateway) == [1.0, 2.0, 3.0, 4.0]
                break
            except InferenceServerException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        descendants = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(descendants, timeout=5)
    assert alive == [], f"left running: {alive}"


@pytest.mark.parametrize(
    ("launch", "ready_marker", "prog"),
    [(_triton_cli, "hepsonic-triton ready", "hepsonic-triton"), (_serve, "Press Ctrl-C", "hepsonic-serve")],
    ids=["hepsonic-triton", "hepsonic-serve"],
)
def test_without_restarts_a_crash_stops_the_launcher_with_a_failure(
    toy_repository: Callable[..., Path],
    free_port: Callable[[], int],
    launch: Callable[..., subprocess.Popen[bytes]],
    ready_marker: str,
    prog: str,
) -> None:
    """A launcher never waits on behind ports where nothing serves: it exits non-zero, leaving nothing."""
    with _reaped(launch(toy_repository(), [free_port() for _ in range(5)], "--max-restarts", "0")) as process:
        assert ready_marker in _read_until(process, ready_marker)
        descendants = psutil.Process(process.pid).children(recursive=True)
        triton = next(p for p in descendants if p.name() == "tritonserver")
        triton.send_signal(signal.SIGKILL)
        output = process.communicate(timeout=60)[0].decode()
        assert process.returncode == 1, output
        assert (
            f"{prog}: Triton was killed by SIGKILL; 0 restart(s) in 600 s already used: stopping the stack"
            in (output)
        )
        assert "Traceback" not in output
    _, alive = psutil.wait_procs(descendants, timeout=20)
    assert alive == [], f"left running: {alive}"


def test_backends_are_prepared_again_while_the_old_stubs_still_run(tmp_path: Path) -> None:
    """A restart after a crash copies the python backend again while the crashed Triton's stubs may still be
    running the old stub binary: writing into it fails (ETXTBSY, seen once in CI), replacing it must not."""
    import shutil  # noqa: PLC0415

    from hepsonic_triton._distribution import TritonDistribution  # noqa: PLC0415

    distribution = TritonDistribution.from_pytriton()
    backends = distribution.prepare_backends(tmp_path / "backends")
    stub = backends / "python" / "triton_python_backend_stub"
    running = tmp_path / "running"  # an executable that runs while we replace it, as a leftover stub would
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", running)
    process = subprocess.Popen([str(running), "30"])
    try:
        with pytest.raises(OSError, match="Text file busy"):
            running.write_bytes(b"")  # what copying into a running binary does
        running.replace(stub)  # the old stub, still running, now at the stub's place
        assert distribution.prepare_backends(tmp_path / "backends") == backends
        assert stub.read_bytes() == distribution.stub.read_bytes()
        assert process.poll() is None  # the running process kept its binary
    finally:
        process.kill()
        process.wait()
