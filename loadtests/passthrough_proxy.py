"""A reference for the gateway benchmark, not a product: the cheapest possible Python gRPC hop.

    python -m loadtests.passthrough_proxy --listen 127.0.0.1:9001 --upstream 127.0.0.1:8001

It forwards ``ModelInfer`` as raw bytes to one Triton, with no routing, validation, auth, admission, metrics or
provenance (every other method is UNIMPLEMENTED). ``bench_gateway.py`` measures it next to the gateway, so the
report separates what the Python gRPC stack costs per hop from what the gateway's own logic adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

import grpc

_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


async def serve(listen: str, upstream: str) -> None:
    """Forward ModelInfer from ``listen`` to ``upstream`` until SIGTERM or SIGINT."""
    channel = grpc.aio.insecure_channel(upstream, options=_OPTIONS)
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    async def model_infer(raw: bytes, context: Any) -> bytes:  # noqa: ARG001
        answer: bytes = await infer(raw)
        return answer

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer)}
    )
    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"cannot bind {listen}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(grace=1)
    await channel.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listen", required=True, help="host:port to serve gRPC on")
    parser.add_argument("--upstream", required=True, help="host:port of Triton's gRPC endpoint")
    args = parser.parse_args(argv)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415  (the gateway's loop too, when installed)

        runner = uvloop.run
    try:
        runner(serve(args.listen, args.upstream))
    except OSError as exc:
        print(f"passthrough_proxy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
