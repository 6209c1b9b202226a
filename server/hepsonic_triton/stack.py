"""``hepsonic-serve`` (= ``make serve``): Triton + gateway in the foreground; Ctrl-C stops everything it started.

A component that exits on its own is restarted on the same ports, within a restart budget (``_supervise``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ._errors import TritonError, TritonStartError
from ._server import TritonServer, check_port_free
from ._signals import shutdown_requested, stop_process_group, terminate_with_parent
from ._supervise import supervise
from .cli import _env, add_restart_arguments, add_triton_arguments, budget_from_args, config_from_args

__all__ = ["GatewayProcess", "main"]


class GatewayProcess:
    """The gateway as a child process (its own interpreter: its event loop never competes with ours)."""

    #: Its name in the supervisor's messages.
    name = "the gateway"

    def __init__(
        self,
        *,
        host: str,
        http_port: int,
        grpc_port: int,
        triton_http: str,
        triton_grpc: str,
        routing_file: Path | None = None,
    ) -> None:
        self.host, self.http_port, self.grpc_port = host, http_port, grpc_port
        self.env = dict(os.environ)
        self.env.update(
            {
                "HEPSONIC_GATEWAY_HOST": host,
                "HEPSONIC_GATEWAY_HTTP_PORT": str(http_port),
                "HEPSONIC_GATEWAY_GRPC_PORT": str(grpc_port),
                "HEPSONIC_TRITON_HTTP": triton_http,
                "HEPSONIC_TRITON_GRPC": triton_grpc,
            }
        )
        if routing_file is not None:
            self.env["HEPSONIC_ROUTING_FILE"] = str(routing_file)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the gateway process, when running."""
        return self.process.pid if self.process else None

    @property
    def exit_code(self) -> int | None:
        """Its exit status once it has exited (a signal as its negative number); None while it runs."""
        return self.process.poll() if self.process is not None else None

    def restart(self, *, cancel: threading.Event | None = None) -> str:
        """Stop what is left of it and start it again; its log is the launcher's stderr, so returns ""."""
        self.stop()
        self.start(cancel=cancel)
        return ""

    def start(self, *, timeout_s: float = 30.0, cancel: threading.Event | None = None) -> GatewayProcess:
        """Start and wait for ``/v2/health/ready``; setting ``cancel`` stops it and raises
        :class:`TritonStartError`."""
        check_port_free(self.host, self.http_port, "gateway HTTP")
        check_port_free(self.host, self.grpc_port, "gateway gRPC")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hepsonic_gateway"],
            env=self.env,
            start_new_session=True,
            preexec_fn=terminate_with_parent,  # noqa: PLW1509  (prctl only; no locks taken)
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                self.stop()
                raise TritonStartError("start cancelled")
            if self.process.poll() is not None:
                raise TritonStartError(f"the gateway exited with code {self.process.returncode}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                url = f"http://{self.host}:{self.http_port}/v2/health/ready"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return self
            time.sleep(0.1)
        self.stop()
        raise TritonStartError(f"the gateway was not ready after {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        process, self.process = self.process, None
        stop_process_group(process, timeout_s=timeout_s)


def main(argv: list[str] | None = None) -> int:
    """Run the embedded stack until Ctrl-C / SIGTERM (exit 0), or until a component exits beyond its restart
    budget (exit 1); 2 when it cannot start."""
    parser = argparse.ArgumentParser(prog="hepsonic-serve", description=__doc__)
    add_triton_arguments(parser)
    group = parser.add_argument_group("gateway")
    group.add_argument(
        "--http-port",
        type=int,
        default=int(_env("GATEWAY_HTTP_PORT", "8080")),
        help="gateway HTTP port (HEPSONIC_GATEWAY_HTTP_PORT)",
    )
    group.add_argument(
        "--grpc-port",
        type=int,
        default=int(_env("GATEWAY_GRPC_PORT", "8081")),
        help="gateway gRPC port (HEPSONIC_GATEWAY_GRPC_PORT)",
    )
    group.add_argument(
        "--routing",
        type=Path,
        default=os.environ.get("HEPSONIC_ROUTING_FILE"),
        help="routing file (HEPSONIC_ROUTING_FILE); default: every model to the embedded Triton",
    )
    add_restart_arguments(parser)
    args = parser.parse_args(argv)
    budget = budget_from_args(parser, args)
    config = config_from_args(args)
    print(f"hepsonic-serve: starting Triton on {config.repository} ...", flush=True)
    started = time.monotonic()
    try:
        # Fail fast on the gateway ports too, before Triton spends time loading models.
        check_port_free(args.host, args.http_port, "gateway HTTP")
        check_port_free(args.host, args.grpc_port, "gateway gRPC")
        triton = TritonServer(config).start()
    except TritonError as exc:
        print(f"hepsonic-serve: error: {exc}", file=sys.stderr)
        return 2
    gateway = GatewayProcess(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        triton_http=triton.http_url,
        triton_grpc=triton.grpc_url,
        routing_file=args.routing,
    )
    try:
        gateway.start()
    except TritonError as exc:
        triton.stop()
        print(f"hepsonic-serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        with shutdown_requested() as stop:
            _print_banner(triton, gateway, args, time.monotonic() - started)
            status = supervise([triton, gateway], stop, budget, say=_stderr)
            print("hepsonic-serve: stopping ...", flush=True)
    finally:
        gateway.stop()
        triton.stop()
    print("hepsonic-serve: stopped (Triton, its python-backend stubs and the gateway)", flush=True)
    return status


def _print_banner(
    triton: TritonServer, gateway: GatewayProcess, args: argparse.Namespace, elapsed_s: float
) -> None:
    front = f"{args.host}:{args.http_port}"
    lines = [
        f"hepsonic is ready ({elapsed_s:.1f} s)",
        f"  gateway  HTTP  http://{front}      (KServe v2; OpenAPI docs at /docs, metrics at /metrics)",
        f"  gateway  gRPC  {args.host}:{args.grpc_port}   (pid {gateway.pid})",
        (
            f"  Triton   HTTP  http://{triton.http_url}   gRPC {triton.grpc_url}   "
            f"metrics {triton.metrics_url}   (pid {triton.pid})"
        ),
        "  models:",
    ]
    width = max((len(entry.name) for entry in triton.models), default=0) + 2
    lines += [
        f"    {entry.name:<{width}} versions {', '.join(map(str, triton.served_versions(entry)))}"
        for entry in triton.models
    ]
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _stderr(message: str) -> None:
    print(f"hepsonic-serve: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
