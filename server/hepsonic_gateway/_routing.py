"""The routing file: which Triton pool serves which model, with versions, aliases, splits and limits."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

__all__ = ["DiscoverySpec", "EndpointSpec", "ModelPolicy", "PoolSpec", "RoutingConfig", "load_routing"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointSpec(_Strict):
    """One Triton replica."""

    http: str
    grpc: str


class DiscoverySpec(_Strict):
    """Replicas from DNS: every A record of ``host`` is one replica (a Kubernetes headless Service)."""

    host: str
    http_port: PositiveInt = 8000
    grpc_port: PositiveInt = 8001
    interval_s: PositiveFloat = 10.0


class PoolSpec(_Strict):
    """A set of interchangeable Triton replicas."""

    endpoints: tuple[EndpointSpec, ...] = ()
    discover: DiscoverySpec | None = None
    health_interval_s: PositiveFloat = 2.0

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if bool(self.endpoints) == (self.discover is not None):
            raise ValueError("a pool needs either `endpoints` or `discover` (exactly one)")
        return self


class ModelPolicy(_Strict):
    """How requests for one model are routed and limited."""

    pool: str = "default"
    #: Upper bound of one request's time at Triton; a shorter client deadline wins (it is propagated).
    timeout_s: PositiveFloat = 30.0
    #: Requests served at once; beyond it they wait in a queue of at most ``max_queue``, then get 429.
    max_inflight: PositiveInt = 256
    max_queue: int = Field(default=1024, ge=0)
    #: Other replicas a request may be retried on after a connection failure or UNAVAILABLE.
    retries: int = Field(default=2, ge=0, le=10)
    #: Largest request body (HTTP) / message (gRPC), and largest tensor, accepted for this model.
    max_request_bytes: PositiveInt = 64 * 1024 * 1024
    max_tensor_elements: PositiveInt = 16 * 1024 * 1024
    #: Merge concurrent gRPC requests for one version into fewer upstream calls (only for models Triton batches
    #: dynamically, whose rows are independent). A request waits only while ``coalesce_calls`` calls per replica
    #: are in flight (default: as many as Triton runs the model at once, its ``instance_group``), and then
    #: leaves with the others waiting, as one call.
    coalesce: bool = True
    coalesce_calls: PositiveInt | None = None
    #: alias -> version, e.g. {stable: 1, canary: 2}
    aliases: dict[str, PositiveInt] = Field(default_factory=dict)
    #: alias or version -> weight, for requests that name no version
    split: dict[str, PositiveFloat] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _split_targets_exist(self) -> Self:
        for target in self.split:
            if not target.isdigit() and target not in self.aliases:
                raise ValueError(f"split target {target!r} is neither a version nor an alias")
        return self


class RoutingConfig(_Strict):
    """The whole routing file."""

    pools: dict[str, PoolSpec]
    models: dict[str, ModelPolicy] = Field(default_factory=lambda: {"*": ModelPolicy()})

    @model_validator(mode="after")
    def _pools_exist(self) -> Self:
        for name, policy in self.models.items():
            if policy.pool not in self.pools:
                raise ValueError(f"model {name!r} routes to unknown pool {policy.pool!r}")
        return self

    def policy(self, model: str) -> ModelPolicy | None:
        """The policy for ``model``: its own entry, else the ``"*"`` default, else None (not routed)."""
        return self.models.get(model) or self.models.get("*")

    @classmethod
    def single(cls, http: str, grpc: str) -> RoutingConfig:
        """Every model to one Triton."""
        return cls(pools={"default": PoolSpec(endpoints=(EndpointSpec(http=http, grpc=grpc),))})


def load_routing(path: Path) -> RoutingConfig:
    """Read and validate a routing file (raises ``ValueError``/``pydantic.ValidationError`` with the reason)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a routing file is a YAML mapping with `pools` and `models`")  # noqa: TRY004
    return RoutingConfig.model_validate(data)
