"""locust users for a hepsonic stack (gateway or Triton): client wrappers, abstract users, scenarios.

Structure (the locust examples' pattern):

* :class:`HttpInferClient` / :class:`GrpcInferClient` wrap ``tritonclient`` and fire ``events.request`` for
  every inference with ``name = "model:version"`` (the version the server answered with, so a canary split
  shows up as two rows) and ``request_type`` ``HTTP`` or ``gRPC``;
* :class:`InferUser` (abstract) owns one client; :class:`HttpInferUser` and :class:`GrpcInferUser` pick the
  protocol;
* one user per model with realistic payloads (:mod:`loadtests.payloads`), and :class:`RecoJobUser`, a
  reconstruction job whose requests follow an event loop (:data:`RECO_EVENT_MIX`);
* thresholds: ``--max-fail-ratio`` and ``--max-p99-ms`` make locust exit non-zero when exceeded.

Import this module only inside a locust process: importing locust gevent-patches the interpreter.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import grpc.experimental.gevent as grpc_gevent

# tritonclient.grpc must find gRPC cooperating with gevent before it opens a channel.
grpc_gevent.init_gevent()

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from locust import User, between, events, task
from locust.exception import StopUser
from tritonclient.utils import InferenceServerException

from loadtests.payloads import MODEL_INPUTS, RECO_EVENT_MIX, PayloadPool

__all__ = [
    "CaloGanUser",
    "GrpcInferClient",
    "GrpcInferUser",
    "HttpInferClient",
    "HttpInferUser",
    "InferUser",
    "JetTaggerGrpcUser",
    "JetTaggerUser",
    "ParTUser",
    "PvFinderUser",
    "RecoJobGrpcUser",
    "RecoJobUser",
    "RingerUser",
]

log = logging.getLogger("hepsonic.loadtest")

Tensors = dict[str, np.ndarray[Any, Any]]


def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("hepsonic")
    group.add_argument(
        "--grpc-host",
        default=os.environ.get("HEPSONIC_GRPC_HOST", ""),
        help="host:port of the gRPC endpoint (default: --host's name with port 8081)",
    )
    group.add_argument(
        "--max-fail-ratio", type=float, default=0.01, help="fail the run above this failure ratio"
    )
    group.add_argument(
        "--max-p99-ms", type=float, default=2000.0, help="fail the run above this p99 latency (ms)"
    )
    group.add_argument(
        "--load-profile",
        default="ramp",
        choices=["ramp", "spike", "soak"],
        help="stages of loadtests/shapes.py (used only when that file is given with -f)",
    )
    group.add_argument(
        "--stage-scale",
        type=float,
        default=1.0,
        help="multiply every stage duration of the load profile (0.1 = a 10x shorter test)",
    )


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]


def _http_address(host: str) -> tuple[str, bool]:
    """``host:port`` and whether TLS is on, from locust's ``--host`` URL."""
    parts = urlsplit(host if "://" in host else f"http://{host}")
    if not parts.hostname:
        raise ValueError(f"loadtest: --host must look like http://HOST:PORT, got {host!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}", parts.scheme == "https"


def _grpc_address(environment: Any) -> str:
    explicit = getattr(environment.parsed_options, "grpc_host", "") if environment.parsed_options else ""
    if explicit:
        return str(explicit)
    hostname = _http_address(environment.host)[0].rsplit(":", 1)[0]
    return f"{hostname}:8081"


def _auth_headers() -> dict[str, str]:
    key = os.environ.get("HEPSONIC_API_KEY", "")
    return {"Authorization": f"Bearer {key}"} if key else {}


class _InferClient:
    """What both wrappers share: timing and firing ``events.request``."""

    request_type: ClassVar[str] = ""

    def __init__(self, environment: Any) -> None:
        self._fire: Callable[..., Any] = environment.events.request.fire

    def _call(self, model: str, version: str, tensors: Tensors) -> Tensors | None:
        start = time.perf_counter()
        served_version = version or "default"
        outputs: Tensors | None = None
        exception: Exception | None = None
        try:
            outputs, served_version = self._infer(model, version, tensors)
        except (InferenceServerException, ConnectionError, OSError) as exc:
            exception = exc
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self._fire(
            request_type=self.request_type,
            name=f"{model}:{served_version}",
            response_time=elapsed_ms,
            response_length=sum(int(a.nbytes) for a in outputs.values()) if outputs else 0,
            exception=exception,
            context={"batch_size": len(next(iter(tensors.values())))},
        )
        return outputs

    def infer(self, model: str, tensors: Tensors, *, version: str = "") -> Tensors | None:
        """Send one request; returns the outputs, or None when it failed (the failure is recorded)."""
        return self._call(model, version, tensors)

    def _infer(self, model: str, version: str, tensors: Tensors) -> tuple[Tensors, str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""


class HttpInferClient(_InferClient):
    """KServe v2 over HTTP (binary tensor extension), one keep-alive connection per user."""

    request_type = "HTTP"

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        address, tls = _http_address(environment.host)
        self._client = httpclient.InferenceServerClient(address, ssl=tls, concurrency=1, network_timeout=60.0)
        self._headers = _auth_headers()

    def _infer(self, model: str, version: str, tensors: Tensors) -> tuple[Tensors, str]:
        inputs = []
        for name, array in tensors.items():
            item = httpclient.InferInput(name, list(array.shape), "FP32")
            item.set_data_from_numpy(array, binary_data=True)
            inputs.append(item)
        result = self._client.infer(model, inputs, model_version=version, headers=self._headers)
        response = result.get_response()
        outputs = {out["name"]: result.as_numpy(out["name"]) for out in response.get("outputs", [])}
        return outputs, str(response.get("model_version", version or "default"))

    def close(self) -> None:
        self._client.close()


class GrpcInferClient(_InferClient):
    """KServe v2 over gRPC (one channel per user)."""

    request_type = "gRPC"

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self._client = grpcclient.InferenceServerClient(_grpc_address(environment))
        self._headers = _auth_headers()

    def _infer(self, model: str, version: str, tensors: Tensors) -> tuple[Tensors, str]:
        inputs = []
        for name, array in tensors.items():
            item = grpcclient.InferInput(name, list(array.shape), "FP32")
            item.set_data_from_numpy(array)
            inputs.append(item)
        headers = {key.lower(): value for key, value in self._headers.items()}
        result = self._client.infer(
            model, inputs, model_version=version, headers=headers, client_timeout=60.0
        )
        response = result.get_response()
        outputs = {out.name: result.as_numpy(out.name) for out in response.outputs}
        return outputs, str(response.model_version or version or "default")

    def close(self) -> None:
        self._client.close()


@dataclass
class _ServedModels:
    """Which models the target serves, asked once per locust process at test start."""

    ready: frozenset[str] = frozenset()
    checked: bool = False


_SERVED = _ServedModels()
_ALL_MODELS = tuple(MODEL_INPUTS)


def _model_ready(address: str, tls: bool, model: str) -> bool:
    scheme = "https" if tls else "http"
    request = urllib.request.Request(f"{scheme}://{address}/v2/models/{model}/ready", headers=_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _find_served_models(environment: Any, **_: Any) -> None:
    if environment.host is None:
        return
    address, tls = _http_address(environment.host)
    _SERVED.ready = frozenset(m for m in _ALL_MODELS if _model_ready(address, tls, m))
    _SERVED.checked = True
    missing = sorted(set(_ALL_MODELS) - _SERVED.ready)
    log.info("served models: %s; not served (their users stop): %s", sorted(_SERVED.ready), missing)


events.test_start.add_listener(_find_served_models)  # type: ignore[no-untyped-call]


def _apply_thresholds(environment: Any, **_: Any) -> None:
    """Exit non-zero when the failure ratio or the p99 latency is over its threshold (or nothing ran)."""
    options = environment.parsed_options
    total = environment.stats.total
    problems = []
    if total.num_requests == 0:
        problems.append("no request was sent")
    if total.fail_ratio > options.max_fail_ratio:
        problems.append(f"failure ratio {total.fail_ratio:.3%} > {options.max_fail_ratio:.3%}")
    p99 = total.get_response_time_percentile(0.99) or 0.0
    if p99 > options.max_p99_ms:
        problems.append(f"p99 {p99:.0f} ms > {options.max_p99_ms:.0f} ms")
    if problems:
        log.error("load test FAILED its thresholds: %s", "; ".join(problems))
        environment.process_exit_code = 3
    else:
        # Failures under the threshold are accepted (locust alone exits 1 on any failure).
        environment.process_exit_code = 0
        log.info(
            "load test passed: %d requests, failure ratio %.3f%%, p99 %.0f ms",
            total.num_requests,
            100 * total.fail_ratio,
            p99,
        )


events.quitting.add_listener(_apply_thresholds)  # type: ignore[no-untyped-call]


class InferUser(User):
    """A user owning one inference client; subclasses set :attr:`protocol` and the tasks."""

    abstract = True
    protocol: ClassVar[str] = "http"
    #: Models this user sends to: it stops when the target serves none of them.
    models: ClassVar[tuple[str, ...]] = ()
    wait_time = between(0.0, 0.01)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.client: _InferClient = (
            GrpcInferClient(environment) if self.protocol == "grpc" else HttpInferClient(environment)
        )

    def stop_unless_served(self) -> None:
        """Stop this user (quietly, from a task) when the target serves none of its models."""
        if _SERVED.checked and self.models and not set(self.models) & _SERVED.ready:
            log.warning("%s: %s not served by the target; user stops", type(self).__name__, self.models)
            raise StopUser

    def on_stop(self) -> None:
        """Close the connection."""
        self.client.close()

    def serves(self, model: str) -> bool:
        """Whether the target serves ``model`` (True when it was not checked)."""
        return not _SERVED.checked or model in _SERVED.ready


class HttpInferUser(InferUser):
    """Abstract user speaking KServe v2 HTTP."""

    abstract = True
    protocol = "http"


class GrpcInferUser(InferUser):
    """Abstract user speaking KServe v2 gRPC."""

    abstract = True
    protocol = "grpc"


class _SingleModelUser(HttpInferUser):
    """Sends batches of one model; batch sizes drawn from :attr:`batch_sizes`."""

    abstract = True
    model: ClassVar[str] = ""
    batch_sizes: ClassVar[tuple[int, ...]] = (1,)

    def on_start(self) -> None:
        """Build the payload pools once per user."""
        self._pools = [PayloadPool(self.model, size, size=4) for size in self.batch_sizes]
        self._rng = np.random.default_rng()

    @task
    def infer(self) -> None:
        """One request of a randomly chosen batch size."""
        self.stop_unless_served()
        pool = self._pools[int(self._rng.integers(len(self._pools)))]
        self.client.infer(self.model, pool.next())


class JetTaggerUser(_SingleModelUser):
    """ParticleNet-Lite jet tagging: a few jets per request, as a reconstruction module sends them."""

    model = "particlenet_lite"
    models = (model,)
    batch_sizes = (1, 2, 4, 8)


class JetTaggerGrpcUser(JetTaggerUser):
    """:class:`JetTaggerUser` over gRPC."""

    protocol = "grpc"


class ParTUser(_SingleModelUser):
    """ParT-small jet tagging."""

    model = "part_small"
    models = (model,)
    batch_sizes = (1, 4)


class RingerUser(_SingleModelUser):
    """Electron trigger candidates; no version named, so the gateway's stable/canary split decides."""

    model = "ringer"
    models = (model,)
    batch_sizes = (1, 8, 32)


class PvFinderUser(_SingleModelUser):
    """One bunch crossing's KDE per request."""

    model = "pv_finder"
    models = (model,)
    batch_sizes = (1,)


class CaloGanUser(_SingleModelUser):
    """Fast simulation: showers for a handful of particles per request."""

    model = "calo_gan"
    models = (model,)
    batch_sizes = (8, 64)


class RecoJobUser(HttpInferUser):
    """A reconstruction job: per event, the requests of :data:`loadtests.payloads.RECO_EVENT_MIX`.

    Objects of one kind in one event travel in one request (SONIC's per-event batching); the wait between
    events stands for the job's own CPU work.
    """

    models = tuple(RECO_EVENT_MIX)
    wait_time = between(0.02, 0.1)
    # The default mix (no user class named) is mostly reconstruction jobs, like production.
    weight = 3

    def on_start(self) -> None:
        """Payload pools per model and object count, built on first use."""
        self._rng = np.random.default_rng()
        self._pools: dict[tuple[str, int], PayloadPool] = {}

    def _payload(self, model: str, count: int) -> Tensors:
        key = (model, count)
        if key not in self._pools:
            self._pools[key] = PayloadPool(model, count, size=2, seed=count)
        return self._pools[key].next()

    @task
    def reconstruct_event(self) -> None:
        """One event: every model of the mix, with Poisson-distributed object counts."""
        self.stop_unless_served()
        for model, mix in RECO_EVENT_MIX.items():
            if not self.serves(model) or self._rng.random() >= mix.probability:
                continue
            count = int(np.clip(self._rng.poisson(mix.objects_per_request), 1, mix.max_objects))
            self.client.infer(model, self._payload(model, count))


class RecoJobGrpcUser(RecoJobUser):
    """:class:`RecoJobUser` over gRPC (what CMSSW's SONIC client speaks)."""

    protocol = "grpc"
