"""Zero-downtime version rollout, orchestrated by the gateway over Triton's explicit model control.

1. **load**: on every healthy replica of the model's pool, ``POST /v2/repository/models/{m}/load`` with the
   model's own configuration (as Triton reports it) whose ``version_policy`` is ``specific`` with the versions
   it serves now plus the new one (Triton keeps serving the loaded ones meanwhile);
2. **warm up**: one real inference on the new version on every replica (zeros of the declared shapes);
3. **shift**: the ``stable``/``canary`` aliases and the split move step by step (e.g. 10 %, 50 %, 100 %);
   at 100 % ``stable`` is the new version and the split is gone;
4. **drain**: wait until no request is in flight on the old version (bounded by ``drain_timeout_s``);
5. **unload**: load again with a ``specific`` policy without the old version.

The alias/split state lives in the gateway's memory (a :class:`RouteOverride`), is reported by
``GET /admin/routes`` and survives routing-file reloads; write the outcome into the routing file to keep it
across restarts. With several gateway replicas (``HEPSONIC_PEERS``, see :mod:`._peers`), every shift is made on
the peers too, and the drain waits for the old version's requests on all of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ._dataplane import DataPlane, RouteOverride, Target
from ._errors import Conflict, GatewayError, InvalidRequest, NotFound, Unavailable
from ._peers import PeerGateways, PeerSession
from ._upstream import Replica

__all__ = ["RolloutPlan", "RolloutStatus", "Rollouts"]

log = logging.getLogger("hepsonic.gateway")


@dataclass(frozen=True, kw_only=True)
class RolloutPlan:
    """What to roll out and how fast."""

    model: str
    to_version: int
    #: Percent of unpinned traffic on the new version after each step; the last must be 100.
    steps: tuple[int, ...] = (10, 50, 100)
    interval_s: float = 5.0
    stable_alias: str = "stable"
    canary_alias: str = "canary"
    drain_timeout_s: float = 60.0
    unload_old: bool = True

    def __post_init__(self) -> None:
        if not self.steps or self.steps[-1] != 100 or any(not 0 < s <= 100 for s in self.steps):
            raise InvalidRequest(
                f"rollout of {self.model!r}: steps must be percentages ending at 100, got {self.steps}"
            )
        if list(self.steps) != sorted(self.steps):
            raise InvalidRequest(f"rollout of {self.model!r}: steps must increase, got {self.steps}")
        if self.interval_s < 0 or self.drain_timeout_s < 0:
            raise InvalidRequest(f"rollout of {self.model!r}: interval and drain timeout must be >= 0")


@dataclass(kw_only=True)
class RolloutStatus:
    """Progress of one rollout (what ``GET /admin/models/{m}/rollout`` returns)."""

    model: str
    to_version: int
    from_version: int | None = None
    state: Literal["running", "done", "failed"] = "running"
    percent: int = 0
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def event(self, step: str, **details: Any) -> None:
        """Record (and log) one step."""
        entry = {"t_s": round(time.time() - self.started, 3), "step": step, **details}
        self.events.append(entry)
        log.info("rollout", extra={"model": self.model, **entry})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model": self.model,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "state": self.state,
            "percent": self.percent,
            "error": self.error,
            "events": self.events,
        }


class Rollouts:
    """Runs at most one rollout per model at a time, in the background, on a :class:`DataPlane`."""

    def __init__(self, plane: DataPlane, peers: PeerGateways | None = None) -> None:
        self.plane = plane
        #: The other gateway replicas every shift is made on as well.
        self.peers = peers
        self._status: dict[str, RolloutStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, plan: RolloutPlan, *, authorization: str | None = None) -> RolloutStatus:
        """Start ``plan`` (:class:`Conflict` when one already runs for the model).

        ``authorization`` (the operator's ``Authorization`` header) is what the peers are driven with.
        """
        self.plane.policy(plan.model)  # NotFound for unrouted models, before anything starts
        running = self._status.get(plan.model)
        if running is not None and running.state == "running":
            raise Conflict(f"a rollout of {plan.model!r} to version {running.to_version} is already running")
        status = self._status[plan.model] = RolloutStatus(model=plan.model, to_version=plan.to_version)
        self._tasks[plan.model] = asyncio.create_task(
            self._run(plan, status, authorization), name=f"rollout-{plan.model}"
        )
        return status

    def status(self, model: str) -> RolloutStatus:
        """The latest rollout of ``model``."""
        status = self._status.get(model)
        if status is None:
            raise NotFound(f"no rollout of model {model!r} has run on this gateway")
        return status

    async def wait(self, model: str) -> RolloutStatus:
        """Wait for the latest rollout of ``model`` to end."""
        task = self._tasks.get(model)
        if task is not None:
            await asyncio.shield(task)
        return self.status(model)

    async def adopt_peer_routes(self) -> list[str]:
        """Take the run-time routes of a running peer (at start-up); the models whose route was taken.

        A gateway that replaces another after a rollout would otherwise serve the routing file's older aliases
        (perhaps a version already unloaded). Needs the replicas' shared key (or auth off); a peer that cannot
        be read leaves the routing file in force, with a warning.
        """
        peers = self.peers
        if peers is None or not peers.entries or (peers.key is None and self.plane.keys is not None):
            return []
        try:
            session = await peers.connect()
            await session.aclose()
            reports = list(session.reports.values())[:1]
        except GatewayError as exc:
            log.warning(
                "no run-time routes from the peers: the routing file applies", extra={"error": exc.message}
            )
            return []
        taken: list[str] = []
        # One running replica's view: a rollout in progress brings this gateway along at its next shift.
        for report in reports:
            for model, route in report.get("models", {}).items():
                if not route.get("override"):
                    continue
                try:
                    self.plane.set_route(model, RouteOverride(aliases=route["aliases"], split=route["split"]))
                except (GatewayError, ValueError, KeyError) as exc:
                    log.warning(
                        "a peer's run-time route was not taken", extra={"model": model, "error": str(exc)}
                    )
                    continue
                taken.append(model)
        if taken:
            log.info("run-time routes taken from a peer", extra={"models": taken})
        return taken

    async def close(self) -> None:
        """Cancel running rollouts (the routes stay where they were)."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, plan: RolloutPlan, status: RolloutStatus, authorization: str | None) -> None:
        plane = self.plane
        peers: PeerSession | None = None
        try:
            if self.peers is not None and self.peers.entries:
                peers = await self.peers.connect(authorization)
                status.event("peers", gateways=list(peers.urls), not_running=list(peers.down))
            await self._steps(plane, plan, status, peers)
        except GatewayError as exc:
            status.state, status.error = "failed", exc.message
            status.event("failed", error=exc.message)
        except Exception as exc:  # noqa: BLE001  (report any failure in the status, never crash the gateway)
            status.state, status.error = "failed", repr(exc)
            status.event("failed", error=repr(exc))
        else:
            status.state = "done"
            status.event("done")
        finally:
            plane.metrics.rollout_step.labels(plan.model).set(status.percent)
            if peers is not None:
                await peers.aclose()

    async def _steps(
        self, plane: DataPlane, plan: RolloutPlan, status: RolloutStatus, peers: PeerSession | None
    ) -> None:
        model, new = plan.model, plan.to_version
        policy = plane.policy(model)
        pool = plane.pools[policy.pool]
        replicas = [r for r in pool.replicas if r.healthy]
        if not replicas:
            raise Unavailable(f"rollout of {model!r}: no healthy replica in pool {pool.name!r}")
        served = pool.ready_versions(model)
        old = policy.aliases.get(plan.stable_alias)
        if old is None or old not in served:
            others = sorted(served - {new})
            old = others[-1] if others else None
        if old == new:
            raise InvalidRequest(
                f"rollout of {model!r}: version {new} is already the {plan.stable_alias!r} version"
            )
        status.from_version = old
        status.event("start", from_version=old, to_version=new, replicas=[r.name for r in replicas])

        # 1. load next to the old version(s)
        await asyncio.gather(
            *(_set_versions(r, model, r.ready_versions.get(model, set()) | {new}) for r in replicas)
        )
        await pool.probe_all()
        plane.forget_schemas(model)
        missing = [r.name for r in replicas if not r.serves(model, new)]
        if missing:
            raise Unavailable(f"rollout of {model!r}: version {new} is not READY on {', '.join(missing)}")
        status.event("loaded", version=new)

        # 2. warm up on every replica, before any traffic
        target = Target(model=model, version=new, policy=policy, pool=pool)
        schema = await plane.schema(target)
        if schema is None:
            raise Unavailable(f"rollout of {model!r}: cannot read the configuration of version {new}")
        body = {
            "inputs": [
                {
                    "name": spec.name,
                    "datatype": spec.datatype,
                    "shape": (shape := [1 if d < 0 else d for d in schema.expected_shape(spec)]),
                    "data": [0] * _prod(shape) if spec.datatype != "BYTES" else [""] * _prod(shape),
                }
                for spec in schema.inputs.values()
            ]
        }
        for replica in replicas:
            started = time.perf_counter()
            response = await replica.http.post(
                f"/v2/models/{model}/versions/{new}/infer", json=body, timeout=policy.timeout_s
            )
            if response.status_code != 200:
                raise InvalidRequest(
                    f"rollout of {model!r}: warm-up inference on {replica.name} failed: {response.text[:300]}"
                )
            status.event(
                "warmed_up", replica=replica.name, latency_ms=round(1e3 * (time.perf_counter() - started), 2)
            )

        # 3. shift traffic
        aliases = dict(policy.aliases)
        if old is None:
            plan_steps: tuple[int, ...] = (100,)
        else:
            plan_steps = plan.steps
        for index, percent in enumerate(plan_steps):
            if percent < 100 and old is not None:
                aliases.update({plan.stable_alias: old, plan.canary_alias: new})
                split = {plan.stable_alias: float(100 - percent), plan.canary_alias: float(percent)}
            else:
                aliases.update({plan.stable_alias: new, plan.canary_alias: new})
                split = {}
            plane.set_route(model, RouteOverride(aliases=aliases, split=split))
            if peers is not None:
                await _refresh(peers, status)
                await peers.set_route(model, aliases, split)
            status.percent = percent
            plane.metrics.rollout_step.labels(model).set(percent)
            status.event("shifted", percent=percent)
            if index < len(plan_steps) - 1:
                await asyncio.sleep(plan.interval_s)

        if old is None or not plan.unload_old:
            return
        # 4. drain the old version
        if peers is not None:
            await _refresh(peers, status)
        deadline = time.monotonic() + plan.drain_timeout_s
        while (inflight := await _inflight(plane, peers, model, old)) and time.monotonic() < deadline:
            await asyncio.sleep(0.02 if peers is None else 0.1)  # peers are asked over HTTP
        status.event("drained", version=old, still_inflight=inflight)

        # 5. unload it
        await asyncio.gather(
            *(_set_versions(r, model, (r.ready_versions.get(model, set()) | {new}) - {old}) for r in replicas)
        )
        await pool.probe_all()
        plane.forget_schemas(model)
        status.event("unloaded", version=old)


async def _refresh(peers: PeerSession, status: RolloutStatus) -> None:
    """Look the peers up again: a gateway pod that joined since gets the next shift too."""
    if await peers.refresh():
        status.event("peers", gateways=list(peers.urls), not_running=list(peers.down))


async def _inflight(plane: DataPlane, peers: PeerSession | None, model: str, version: int) -> int:
    """Requests on ``version`` in flight on this gateway and its peers."""
    here = plane.inflight_versions[(model, version)]
    return here + (await peers.inflight(model, version) if peers is not None else 0)


def _prod(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


async def _set_versions(replica: Replica, model: str, versions: set[int]) -> None:
    """Have ``replica`` serve exactly ``versions`` of ``model`` (explicit model control, config override)."""
    response = await replica.http.get(f"/v2/models/{model}/config", timeout=10.0)
    if response.status_code != 200:
        raise NotFound(f"replica {replica.name} has no configuration for {model!r}: {response.text[:300]}")
    config = response.json()
    config["version_policy"] = {"specific": {"versions": sorted(versions)}}
    response = await replica.http.post(
        f"/v2/repository/models/{model}/load",
        content=json.dumps({"parameters": {"config": json.dumps(config)}}),
        headers={"content-type": "application/json"},
        timeout=300.0,
    )
    if response.status_code != 200:
        raise InvalidRequest(
            f"replica {replica.name} could not load {model!r} versions {sorted(versions)}: {response.text[:300]}"
        )
