"""Gateway settings from ``HEPSONIC_*`` environment variables, validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything the gateway needs to start. Outside development, auth is mandatory."""

    model_config = SettingsConfigDict(env_prefix="HEPSONIC_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    gateway_host: str = "127.0.0.1"
    gateway_http_port: int = 8080
    gateway_grpc_port: int = 8081
    #: YAML routing file (pools of Triton replicas, per-model policy). Without it: one pool, the two URLs below.
    routing_file: Path | None = None
    triton_http: str = "127.0.0.1:8000"
    triton_grpc: str = "127.0.0.1:8001"
    #: YAML file of hashed API keys; without it every request is allowed (development only).
    api_keys_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment == "production" and self.api_keys_file is None:
            raise ValueError(
                "HEPSONIC_ENVIRONMENT=production requires HEPSONIC_API_KEYS_FILE (auth cannot be off)"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both HEPSONIC_TLS_CERT_FILE and HEPSONIC_TLS_KEY_FILE, or neither")
        for path in (self.routing_file, self.api_keys_file, self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist")
        return self
