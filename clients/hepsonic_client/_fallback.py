"""The embedded fallback server: ``hepsonic-triton`` started as a subprocess on free ports.

The client never imports the server package; it spawns the ``hepsonic-triton`` command (as SONIC's
``cmsTriton`` does), waits for its ``hepsonic-triton ready`` line (the command prints it once every model
is READY), and stops the whole process group when the client closes, at interpreter exit, or when the
job dies, even by SIGKILL (the child watches its parent pid).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ._exceptions import FallbackError
from ._ports import free_port

__all__ = ["EmbeddedTriton"]

log = logging.getLogger("hepsonic_client")

_READY_LINE = "hepsonic-triton ready"


#: ``hepsonic-triton`` stops when the process with this pid, its parent, dies (hepsonic_triton's
#: ``exit_with_parent``; kept as a literal: the client never imports the server package).
_PARENT_PID_ENV = "HEPSONIC_PARENT_PID"


class EmbeddedTriton:
    """A local ``hepsonic-triton`` on free ports, owned by this process."""

    def __init__(
        self,
        repository: str | Path,
        *,
        command: tuple[str, ...] = ("hepsonic-triton",),
        start_timeout: float = 120.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.repository = Path(repository)
        self.command = command
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()
        self._log_file: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def grpc_address(self) -> str:
        """``127.0.0.1:PORT`` of its gRPC endpoint."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_address(self) -> str:
        """``127.0.0.1:PORT`` of its HTTP endpoint."""
        return f"127.0.0.1:{self.http_port}"

    def _log_tail(self) -> str:
        if self._log_file is None:
            return ""
        text = Path(self._log_file.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-20:])

    def start(self) -> EmbeddedTriton:
        """Spawn and wait until every model is READY; raises :class:`FallbackError` on failure."""
        if not (self.repository / ".").is_dir():
            msg = f"fallback model repository {self.repository} does not exist"
            raise FallbackError(msg)
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        argv = [
            *self.command,
            "--repository", str(self.repository),
            "--host", "127.0.0.1",
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        self._log_file = tempfile.NamedTemporaryFile(prefix="hepsonic-fallback-", suffix=".log")  # noqa: SIM115
        self._owner = os.getpid()
        try:
            # No preexec_fn: a reconstruction job has threads, and code run between fork and exec can hang
            # on a lock another thread held. The child watches its parent pid instead.
            self.process = subprocess.Popen(
                argv,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopping it stops Triton and the stubs
                env={**os.environ, _PARENT_PID_ENV: str(os.getpid())},
            )
        except OSError as exc:
            msg = f"cannot start the fallback server {argv[0]!r}: {exc}"
            raise FallbackError(msg) from exc
        atexit.register(self.stop)
        log.warning(
            "hepsonic: started fallback Triton pid %d on gRPC %s", self.process.pid, self.grpc_address
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self._log_tail()
                self.stop()
                msg = f"fallback server exited with code {self.process.returncode} before ready:\n{tail}"
                raise FallbackError(msg)
            if _READY_LINE in Path(self._log_file.name).read_text(errors="replace"):
                return self
            time.sleep(0.2)
        tail = self._log_tail()
        self.stop()
        msg = f"fallback server not ready after {self.start_timeout:.0f} s:\n{tail}"
        raise FallbackError(msg)

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after ``stop_timeout``). Idempotent; a no-op in a forked
        child (a worker process of the job), whose exit must not take the parent's server down."""
        process = self.process
        if process is None or self._owner != os.getpid():
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.warning("hepsonic: stopped fallback Triton pid %d", process.pid)
        # Anything left in the group (python-backend stubs) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        atexit.unregister(self.stop)
