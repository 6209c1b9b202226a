"""Gateway settings from ``HEPSONIC_*`` environment variables, validated at start-up."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, PositiveInt, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._auth import WELL_KNOWN_KEYS, KeyStore
from ._peers import parse_peer
from ._routing import load_routing

__all__ = ["Settings"]

log = logging.getLogger("hepsonic.gateway")


class Settings(BaseSettings):
    """Everything the gateway needs to start. Outside development, auth is mandatory and example keys refused."""

    model_config = SettingsConfigDict(env_prefix="HEPSONIC_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    gateway_host: str = "127.0.0.1"
    gateway_http_port: int = Field(default=8080, ge=0, le=65535)
    gateway_grpc_port: int = Field(default=8081, ge=0, le=65535)
    #: YAML routing file (pools of Triton replicas, per-model policy). Without it: one pool, the two URLs below.
    routing_file: Path | None = None
    triton_http: str = "127.0.0.1:8000"
    triton_grpc: str = "127.0.0.1:8001"
    #: YAML file of hashed API keys; without it every request is allowed (development only).
    api_keys_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: Seconds between checks of the routing and keys files' modification times (0: reload on SIGHUP only).
    watch_interval_s: float = Field(default=2.0, ge=0)
    #: Hard cap on a gRPC message (per-model limits in the routing file are usually lower).
    max_message_bytes: PositiveInt = 256 * 1024 * 1024
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``auto``: uvloop when installed.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    #: The other gateway replicas, whose run-time routes a rollout moves in step: comma-separated ``host:port``
    #: of their HTTP fronts (or ``http(s)://host:port``); a name with several addresses (a headless Service)
    #: means each of them, and this gateway skips itself.
    peers: str = ""
    #: A file holding the key the gateway replicas use with each other (admin scope; the same on every replica):
    #: rollouts drive the peers with it, and a starting gateway reads their run-time routes with it.
    peer_key_file: Path | None = None

    @property
    def peer_entries(self) -> list[str]:
        """``peers`` as a list of entries."""
        return [entry.strip() for entry in self.peers.split(",") if entry.strip()]

    @property
    def peer_key(self) -> str | None:
        """The key in ``peer_key_file`` (None without one)."""
        return self.peer_key_file.read_text().strip() if self.peer_key_file is not None else None

    @model_validator(mode="after")
    def _refuse_unsafe_settings(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both HEPSONIC_TLS_CERT_FILE and HEPSONIC_TLS_KEY_FILE, or neither")
        for entry in self.peer_entries:
            parse_peer(entry)  # a typo must stop the start-up, not the first rollout
        for path in (
            self.routing_file,
            self.api_keys_file,
            self.tls_cert_file,
            self.tls_key_file,
            self.peer_key_file,
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist")
        peer_key = self.peer_key
        if peer_key is not None and (len(peer_key) < 16 or peer_key in WELL_KNOWN_KEYS):
            raise ValueError(
                f"{self.peer_key_file}: the peer key must be a random secret of 16 characters or more"
            )
        # Parse both files now: a typo must stop the start-up, not the first request.
        if self.routing_file is not None:
            load_routing(self.routing_file)
        keys = KeyStore.from_file(self.api_keys_file) if self.api_keys_file is not None else None
        if self.environment == "production":
            if keys is None:
                raise ValueError(
                    "HEPSONIC_ENVIRONMENT=production requires HEPSONIC_API_KEYS_FILE (auth cannot be off)"
                )
            example = keys.well_known_keys()
            if example:
                raise ValueError(
                    f"HEPSONIC_ENVIRONMENT=production refuses keys whose secret is a documented example "
                    f"(keys {', '.join(example)}): generate real ones"
                )
            if self.tls_cert_file is None and not _is_loopback(self.gateway_host):
                log.warning(
                    "production gateway on a non-loopback address without TLS: terminate TLS in front of it",
                    extra={"host": self.gateway_host},
                )
        return self


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
