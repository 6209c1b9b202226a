"""``hepsonic-gateway``: run the gateway (REST and gRPC fronts in one process), or drive a running one.

    hepsonic-gateway [serve] [--host H] [--http-port P] [--grpc-port P] [--routing FILE]
    hepsonic-gateway rollout ringer --to 2 --steps 10,50,100 --interval 5 [--url http://127.0.0.1:8080]
    hepsonic-gateway routes | reload [--url ...]
    hepsonic-gateway hash-key            # reads a key on stdin, prints the sha256 for the keys file

Admin commands read the API key from ``HEPSONIC_API_KEY`` (never from the command line, which other users of
the machine can see).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from pydantic import ValidationError

from ._auth import KeyStore, hash_key
from ._dataplane import GATEWAY_ID, DataPlane
from ._grpc import create_grpc_server
from ._metrics import Metrics
from ._peers import PeerGateways
from ._rest import create_rest_app
from ._routing import RoutingConfig, load_routing
from ._settings import Settings

__all__ = ["main", "serve"]

log = logging.getLogger("hepsonic.gateway")


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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed and not refused (it cuts the event loop's cost per request), else asyncio's."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _routing(settings: Settings) -> RoutingConfig:
    if settings.routing_file is not None:
        return load_routing(settings.routing_file)
    return RoutingConfig.single(settings.triton_http, settings.triton_grpc)


def build_dataplane(settings: Settings) -> DataPlane:
    """The data plane described by ``settings`` (not started)."""
    return DataPlane(
        _routing(settings),
        metrics=Metrics(),
        keys=(
            KeyStore.from_file(
                settings.api_keys_file,
                peer_key_sha256=hash_key(settings.peer_key) if settings.peer_key else None,
            )
            if settings.api_keys_file
            else None
        ),
        routing_file=settings.routing_file,
        keys_file=settings.api_keys_file,
        watch_interval_s=settings.watch_interval_s or None,
    )


async def serve(settings: Settings) -> None:
    """Run both fronts until SIGINT/SIGTERM; SIGHUP reloads the routing and keys files."""
    plane = build_dataplane(settings)
    await plane.start()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[Any]] = set()

    async def reload() -> None:
        try:
            await plane.reload()
        except Exception as exc:  # noqa: BLE001  (keep serving with the previous configuration)
            log.error("reload failed; keeping the previous configuration", extra={"error": str(exc)})

    def on_sighup() -> None:
        task = asyncio.ensure_future(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    tls = None
    if settings.tls_cert_file and settings.tls_key_file:
        tls = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
    grpc_server = await create_grpc_server(
        plane,
        f"{settings.gateway_host}:{settings.gateway_grpc_port}",
        tls=tls,
        max_message_bytes=settings.max_message_bytes,
    )
    config = uvicorn.Config(
        create_rest_app(
            plane,
            manage_lifecycle=False,
            peers=(
                PeerGateways(
                    settings.peer_entries,
                    self_id=GATEWAY_ID,
                    key=settings.peer_key,
                    own_certificate=settings.tls_cert_file,
                )
                if settings.peer_entries
                else None
            ),
        ),
        host=settings.gateway_host,
        port=settings.gateway_http_port,
        log_config=None,
        access_log=False,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
    )
    log.info(
        "gateway starting",
        extra={
            "http": f"{settings.gateway_host}:{settings.gateway_http_port}",
            "grpc": f"{settings.gateway_host}:{settings.gateway_grpc_port}",
            "tls": tls is not None,
            "auth": plane.keys is not None,
            "routing_file": str(settings.routing_file) if settings.routing_file else None,
        },
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await grpc_server.stop(grace=2)
        await plane.close()


# -- admin client commands ----------------------------------------------------------------------------------
def _client(args: argparse.Namespace) -> httpx.Client:
    headers = {}
    key = os.environ.get("HEPSONIC_API_KEY")
    if key:
        headers["authorization"] = f"Bearer {key}"
    verify: bool | ssl.SSLContext = ssl.create_default_context(cafile=args.cacert) if args.cacert else True
    return httpx.Client(base_url=args.url, headers=headers, timeout=30.0, verify=verify)


def _check(response: httpx.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code >= 400:
        raise SystemExit(f"hepsonic-gateway: {response.status_code}: {body.get('error', body)}")
    return body


def _rollout(args: argparse.Namespace) -> int:
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    request = {
        "to_version": args.to,
        "steps": steps,
        "interval_s": args.interval,
        "drain_timeout_s": args.drain_timeout,
        "unload_old": not args.keep_old,
    }
    with _client(args) as client:
        _check(client.post(f"/admin/models/{args.model}/rollout", json=request))
        print(f"rollout of {args.model} to version {args.to}: steps {steps} every {args.interval:g} s")
        shown = 0
        while True:
            status = _check(client.get(f"/admin/models/{args.model}/rollout"))
            for event in status["events"][shown:]:
                details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in {"t_s", "step"})
                print(f"  {event['t_s']:7.2f} s  {event['step']:<10} {details}", flush=True)
            shown = len(status["events"])
            if status["state"] != "running":
                print(f"rollout {status['state']}" + (f": {status['error']}" if status["error"] else ""))
                return 0 if status["state"] == "done" else 1
            time.sleep(0.5)


def _admin_get(args: argparse.Namespace, method: str, path: str) -> int:
    with _client(args) as client:
        print(json.dumps(_check(client.request(method, path)), indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
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
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            messages = "; ".join(str(error["msg"]) for error in exc.errors())
        else:
            messages = str(exc)
        print(f"hepsonic-gateway: invalid settings: {messages}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            runner.run(serve(settings))
    except (OSError, ValueError, ValidationError) as exc:
        print(f"hepsonic-gateway: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        prog="hepsonic-gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")

    def serve_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="HEPSONIC_GATEWAY_HOST")
        p.add_argument("--http-port", type=int, help="HEPSONIC_GATEWAY_HTTP_PORT")
        p.add_argument("--grpc-port", type=int, help="HEPSONIC_GATEWAY_GRPC_PORT")
        p.add_argument("--routing", help="HEPSONIC_ROUTING_FILE")

    serve_arguments(parser)
    serve_arguments(sub.add_parser("serve", help="run the gateway (the default)"))

    def admin_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=os.environ.get("HEPSONIC_GATEWAY_URL", "http://127.0.0.1:8080"))
        p.add_argument("--cacert", help="CA bundle to verify a TLS gateway")

    rollout = sub.add_parser("rollout", help="roll a model out to a new version with zero downtime")
    rollout.add_argument("model")
    rollout.add_argument("--to", type=int, required=True, help="the new version")
    rollout.add_argument(
        "--steps", default="10,50,100", help="percent of traffic per step (default 10,50,100)"
    )
    rollout.add_argument("--interval", type=float, default=5.0, help="seconds between steps")
    rollout.add_argument(
        "--drain-timeout", type=float, default=60.0, help="seconds to wait for the old version"
    )
    rollout.add_argument("--keep-old", action="store_true", help="do not unload the old version")
    admin_arguments(rollout)
    admin_arguments(sub.add_parser("routes", help="print the routing in force (GET /admin/routes)"))
    admin_arguments(sub.add_parser("reload", help="reload the routing and keys files (POST /admin/reload)"))
    sub.add_parser("hash-key", help="print the sha256 of the key given on stdin (for the keys file)")

    args = parser.parse_args(argv)
    if args.command == "rollout":
        return _rollout(args)
    if args.command == "routes":
        return _admin_get(args, "GET", "/admin/routes")
    if args.command == "reload":
        return _admin_get(args, "POST", "/admin/reload")
    if args.command == "hash-key":
        print(hash_key(sys.stdin.readline().strip()))
        return 0
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
