"""``hepsonic-triton``: run the embedded Triton on a model repository in the foreground."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._errors import TritonError
from ._server import TritonConfig, TritonServer
from ._signals import exit_with_parent, shutdown_requested
from ._supervise import RestartBudget, supervise

__all__ = ["add_restart_arguments", "add_triton_arguments", "budget_from_args", "config_from_args", "main"]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"HEPSONIC_{name}", default)


def add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    """The Triton options shared by ``hepsonic-triton`` and ``hepsonic-serve`` (flags override HEPSONIC_*)."""
    group = parser.add_argument_group("Triton")
    group.add_argument(
        "--repository",
        type=Path,
        default=Path(_env("MODEL_REPOSITORY", "model_repository")),
        help="source model repository (HEPSONIC_MODEL_REPOSITORY; default: model_repository)",
    )
    group.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to bind (HEPSONIC_HOST)")
    group.add_argument("--triton-http-port", type=int, default=int(_env("TRITON_HTTP_PORT", "8000")))
    group.add_argument("--triton-grpc-port", type=int, default=int(_env("TRITON_GRPC_PORT", "8001")))
    group.add_argument("--triton-metrics-port", type=int, default=int(_env("TRITON_METRICS_PORT", "8002")))
    group.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default=_env("TRITON_DEVICE", "cpu"),
        help="instance kind; gpu uses onnxruntime's CUDA provider (HEPSONIC_TRITON_DEVICE)",
    )
    group.add_argument(
        "--instances",
        type=int,
        default=int(_env("TRITON_INSTANCES", "1")),
        help="model instances per model (HEPSONIC_TRITON_INSTANCES)",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=int(_env("TRITON_THREADS", str(min(4, os.cpu_count() or 1)))),
        help="onnxruntime intra-op threads per instance (HEPSONIC_TRITON_THREADS)",
    )
    group.add_argument(
        "--workdir", type=Path, default=None, help="runtime repository folder (default: temporary)"
    )
    group.add_argument(
        "--exit-timeout-secs",
        type=int,
        default=int(_env("TRITON_EXIT_TIMEOUT_SECS", "5")),
        help="seconds Triton gives in-flight requests on shutdown (HEPSONIC_TRITON_EXIT_TIMEOUT_SECS)",
    )


def add_restart_arguments(parser: argparse.ArgumentParser) -> None:
    """How often a component that exits on its own is restarted before the launcher gives up."""
    group = parser.add_argument_group("restarts")
    group.add_argument(
        "--max-restarts",
        type=int,
        default=int(_env("MAX_RESTARTS", "3")),
        help="restarts of a crashed component allowed within --restart-window; 0: stop at the first exit "
        "(HEPSONIC_MAX_RESTARTS; default 3)",
    )
    group.add_argument(
        "--restart-window",
        type=float,
        default=float(_env("RESTART_WINDOW_S", "600")),
        metavar="SECONDS",
        help="the window --max-restarts counts in (HEPSONIC_RESTART_WINDOW_S; default 600)",
    )


def budget_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RestartBudget:
    """The :class:`RestartBudget` of parsed :func:`add_restart_arguments` options; a nonsense budget is a
    usage error of ``parser`` (exit 2 with the reason)."""
    try:
        return RestartBudget(max_restarts=args.max_restarts, window_s=args.restart_window)
    except ValueError as exc:
        parser.error(str(exc))


def config_from_args(args: argparse.Namespace) -> TritonConfig:
    """Build a :class:`TritonConfig` from parsed arguments."""
    return TritonConfig(
        repository=args.repository,
        host=args.host,
        http_port=args.triton_http_port,
        grpc_port=args.triton_grpc_port,
        metrics_port=args.triton_metrics_port,
        device=args.device,
        instances=args.instances,
        threads=args.threads,
        workdir=args.workdir,
        exit_timeout_s=args.exit_timeout_secs,
    )


def main(argv: list[str] | None = None) -> int:
    """Start Triton, print ``hepsonic-triton ready`` once every model is READY, run until SIGINT/SIGTERM
    (exit 0) or until Triton exits beyond its restart budget (exit 1); 2 when it cannot start."""
    parser = argparse.ArgumentParser(prog="hepsonic-triton", description=__doc__)
    add_triton_arguments(parser)
    # Short aliases so a client's fallback can spawn us with plain names.
    parser.add_argument(
        "--http-port", type=int, dest="triton_http_port", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--grpc-port", type=int, dest="triton_grpc_port", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        dest="triton_metrics_port",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    add_restart_arguments(parser)
    args = parser.parse_args(argv)
    budget = budget_from_args(parser, args)
    exit_with_parent()
    try:
        server = TritonServer(config_from_args(args), log=sys.stderr).start()
    except TritonError as exc:
        print(f"hepsonic-triton: error: {exc}", file=sys.stderr)
        return 2
    try:
        with shutdown_requested() as stop:
            print(
                f"hepsonic-triton ready http={server.http_url} grpc={server.grpc_url} metrics={server.metrics_url}",
                flush=True,
            )
            status = supervise([server], stop, budget, say=_stderr)
    finally:
        server.stop()
    return status


def _stderr(message: str) -> None:
    print(f"hepsonic-triton: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
