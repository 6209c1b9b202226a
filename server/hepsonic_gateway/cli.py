"""``hepsonic-gateway``: the REST and gRPC fronts in one process, configured by HEPSONIC_* variables."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError

from ._dataplane import DataPlane
from ._grpc import create_grpc_server
from ._rest import create_rest_app
from ._routing import RoutingConfig, load_routing
from ._settings import Settings

__all__ = ["main", "serve"]


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, with the structured ``extra`` fields."""

    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        return json.dumps(entry, default=str)


def _routing(settings: Settings) -> RoutingConfig:
    if settings.routing_file is not None:
        return load_routing(settings.routing_file)
    return RoutingConfig.single(settings.triton_http, settings.triton_grpc)


async def serve(settings: Settings) -> None:
    """Run both fronts until SIGINT/SIGTERM."""
    plane = DataPlane(_routing(settings))
    await plane.start()
    tls = None
    if settings.tls_cert_file and settings.tls_key_file:
        tls = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
    grpc_server = await create_grpc_server(
        plane, f"{settings.gateway_host}:{settings.gateway_grpc_port}", tls=tls
    )
    config = uvicorn.Config(
        create_rest_app(plane, manage_lifecycle=False),
        host=settings.gateway_host,
        port=settings.gateway_http_port,
        log_config=None,
        access_log=False,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await grpc_server.stop(grace=2)
        await plane.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point: settings from the environment (flags for the common ones)."""
    parser = argparse.ArgumentParser(prog="hepsonic-gateway", description=__doc__)
    parser.add_argument("--host", help="HEPSONIC_GATEWAY_HOST")
    parser.add_argument("--http-port", type=int, help="HEPSONIC_GATEWAY_HTTP_PORT")
    parser.add_argument("--grpc-port", type=int, help="HEPSONIC_GATEWAY_GRPC_PORT")
    parser.add_argument("--routing", help="HEPSONIC_ROUTING_FILE")
    args = parser.parse_args(argv)
    overrides = {
        key: value
        for key, value in {
            "gateway_host": args.host,
            "gateway_http_port": args.http_port,
            "gateway_grpc_port": args.grpc_port,
            "routing_file": args.routing,
        }.items()
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        messages = "; ".join(error["msg"] for error in exc.errors())
        print(f"hepsonic-gateway: invalid settings: {messages}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    try:
        asyncio.run(serve(settings))
    except (OSError, ValueError, ValidationError) as exc:
        print(f"hepsonic-gateway: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
