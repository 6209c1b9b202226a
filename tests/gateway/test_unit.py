"""Fast unit tests of the gateway's logic: routing file, versions and splits, auth, validation, admission,
retries, settings, error tables and the public API. No process is started."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from pydantic import ValidationError

import hepsonic_gateway
from hepsonic_gateway import (
    DataPlane,
    GatewayError,
    InvalidRequest,
    KeyStore,
    ModelSchema,
    NotFound,
    Overloaded,
    PermissionDenied,
    RolloutPlan,
    RouteOverride,
    RoutingConfig,
    Settings,
    TensorHeader,
    TooLarge,
    Unauthenticated,
    Unavailable,
    check_request,
    hash_key,
    parse_http_request,
)
from hepsonic_gateway._dataplane import GATEWAY_ID, ReplicaUnreachable
from hepsonic_gateway._grpc import code_of
from hepsonic_gateway._peers import PeerDown, PeerGateways, PeerSession, parse_peer
from hepsonic_gateway._rest import status_of
from hepsonic_gateway._upstream import Replica

ROUTING = {
    "pools": {"default": {"endpoints": [{"http": "127.0.0.1:1", "grpc": "127.0.0.1:2"}]}},
    "models": {
        "*": {"pool": "default"},
        "ringer": {"aliases": {"stable": 1, "canary": 2}, "split": {"stable": 90, "canary": 10}},
    },
}
SCHEMA = ModelSchema.from_triton_config(
    "ringer",
    2,
    {
        "max_batch_size": 64,
        "input": [
            {"name": "rings", "data_type": "TYPE_FP32", "dims": [100]},
            {"name": "et", "data_type": "TYPE_FP32", "dims": [1]},
        ],
        "parameters": {"sha256/2": {"string_value": "ab" * 32}},
    },
)


def test_public_api() -> None:
    assert set(hepsonic_gateway.__all__) >= {
        "DataPlane",
        "create_rest_app",
        "create_grpc_server",
        "Settings",
        "RoutingConfig",
        "KeyStore",
        "Rollouts",
    }
    for name in hepsonic_gateway.__all__:
        assert getattr(hepsonic_gateway, name) is not None
    assert not any(name.startswith("_") for name in hepsonic_gateway.__all__)


def _subclasses(cls: type[GatewayError]) -> list[type[GatewayError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@pytest.mark.parametrize("cls", _subclasses(GatewayError), ids=lambda c: c.__name__)
def test_every_domain_error_has_a_status_on_both_protocols(cls: type[GatewayError]) -> None:
    if cls.__name__ == "UpstreamError":
        exc: GatewayError = cls("x", http_status=404)  # type: ignore[call-arg]
    elif cls is Overloaded:
        exc = Overloaded("x", retry_after_s=1.0)
    else:
        exc = cls("x")
    assert 400 <= status_of(exc) < 600
    assert status_of(exc) != 500
    assert code_of(exc) not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def test_routing_file_is_validated(tmp_path: Path) -> None:
    assert RoutingConfig.model_validate(ROUTING).policy("anything") is not None
    bad_split = {**ROUTING, "models": {"m": {"split": {"beta": 1}}}}
    with pytest.raises(ValidationError, match="neither a version nor an alias"):
        RoutingConfig.model_validate(bad_split)
    with pytest.raises(ValidationError, match="unknown pool"):
        RoutingConfig.model_validate({**ROUTING, "models": {"m": {"pool": "gpu"}}})
    both = {"endpoints": [{"http": "a:1", "grpc": "a:2"}], "discover": {"host": "triton"}}
    with pytest.raises(ValidationError, match="exactly one"):
        RoutingConfig.model_validate({"pools": {"default": both}})
    with pytest.raises(ValidationError, match="extra"):
        RoutingConfig.model_validate({**ROUTING, "typo": 1})


def _plane(**replica_versions: set[int]) -> DataPlane:
    """A data plane whose replicas' health and READY versions are set by hand (no network)."""
    endpoints = [{"http": f"127.0.0.1:{i + 10}", "grpc": f"127.0.0.1:{i + 20}"} for i in range(2)]
    routing = RoutingConfig.model_validate({**ROUTING, "pools": {"default": {"endpoints": endpoints}}})
    plane = DataPlane(routing)
    for replica in plane.pools["default"].replicas:
        replica.healthy = True
        replica.ready_versions = dict(replica_versions)
    return plane


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_versions_aliases_and_errors() -> None:
    async def check() -> None:
        plane = _plane(ringer={1, 2}, other={3})
        assert plane.resolve("ringer", "1").version == 1
        assert plane.resolve("ringer", "canary").version == 2
        assert plane.resolve("ringer", "latest").version == 2
        assert plane.resolve("other", None).version == 3
        with pytest.raises(NotFound, match="served versions: 1, 2"):
            plane.resolve("ringer", "5")
        with pytest.raises(NotFound, match="no version or alias 'beta'"):
            plane.resolve("ringer", "beta")
        with pytest.raises(NotFound, match=r"unknown model 'nope' \(served: other, ringer\)$"):
            plane.resolve("nope", None)
        with pytest.raises(NotFound, match=r"\(served: other, ringer; did you mean 'ringer'\?\)"):
            plane.resolve("ringr", None)
        for replica in plane.pools["default"].replicas:
            replica.healthy = False
        with pytest.raises(Unavailable):
            plane.resolve("ringer", "1")
        await plane.close()

    _run(check())


def test_split_is_weighted_and_sticky() -> None:
    async def check() -> None:
        plane = _plane(ringer={1, 2})
        unkeyed = collections.Counter(plane.resolve("ringer", None).version for _ in range(4000))
        assert abs(unkeyed[2] - 400) < 4 * (4000 * 0.1 * 0.9) ** 0.5
        keyed = {f"job{i}": plane.resolve("ringer", None, route_key=f"job{i}").version for i in range(2000)}
        assert all(
            plane.resolve("ringer", None, route_key=k).version == v for k, v in list(keyed.items())[:200]
        )
        assert abs(sum(v == 2 for v in keyed.values()) - 200) < 4 * (2000 * 0.1 * 0.9) ** 0.5
        # Run-time override (what a rollout step does) takes effect at once and is reported.
        plane.set_route("ringer", RouteOverride(split={"canary": 1}))
        assert {plane.resolve("ringer", None).version for _ in range(50)} == {2}
        assert plane.routes_report()["models"]["ringer"]["override"] is True
        with pytest.raises(ValidationError):
            plane.set_route("ringer", RouteOverride(split={"nightly": 1}))
        plane.clear_route("ringer")
        assert plane.policy("ringer").split == {"stable": 90, "canary": 10}
        await plane.close()

    _run(check())


def test_admission_queue_then_refusal_with_retry_hint() -> None:
    async def check() -> None:
        routing = {**ROUTING, "models": {"*": {"max_inflight": 1, "max_queue": 1}}}
        plane = DataPlane(RoutingConfig.model_validate(routing))
        replica = plane.pools["default"].replicas[0]
        replica.healthy, replica.ready_versions = True, {"m": {1}}
        release = asyncio.Event()

        async def slow(_: Replica) -> str:
            await release.wait()
            return "ok"

        target = plane.resolve("m", "1")
        first = asyncio.ensure_future(plane.forward(target, slow))
        second = asyncio.ensure_future(plane.forward(target, slow))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await plane.forward(target, slow)
        assert refused.value.retry_after_s > 0
        assert "limits 1/1" in refused.value.message
        release.set()
        assert await first == await second == "ok"
        assert await plane.forward(target, slow) == "ok"  # recovered
        assert plane.inflight_versions[("m", 1)] == 0
        await plane.close()

    _run(check())


def test_unreachable_replica_is_retried_elsewhere_and_ejected() -> None:
    async def check() -> None:
        plane = _plane(ringer={1})
        first, second = plane.pools["default"].replicas
        calls: list[str] = []

        async def flaky(replica: Replica) -> str:
            calls.append(replica.name)
            if replica is first:
                raise ReplicaUnreachable("connection refused")
            return replica.name

        first.outstanding = -1  # make `first` the least loaded, so it is picked first
        assert await plane.forward(plane.resolve("ringer", "1"), flaky) == second.name
        assert calls == [first.name, second.name]
        assert not first.healthy

        async def dead(replica: Replica) -> str:
            raise ReplicaUnreachable("down")

        first.healthy = True
        with pytest.raises(Unavailable, match="unreachable"):
            await plane.forward(plane.resolve("ringer", "1"), dead)
        await plane.close()

    _run(check())


def test_a_routed_request_holds_its_pool_across_a_reload_and_its_version_against_a_drain(
    tmp_path: Path,
) -> None:
    """A request routed just before a reload may still be validating (or fetching the model's schema from the
    old pool) when the reload retires that pool: the pool must wait for it, then close."""

    def write(port: int) -> None:
        endpoints = [{"http": f"127.0.0.1:{port}", "grpc": f"127.0.0.1:{port + 1}"}]
        routing_file.write_text(
            yaml.safe_dump({**ROUTING, "pools": {"default": {"endpoints": endpoints}}}), encoding="utf-8"
        )

    async def check() -> None:
        write(10)
        plane = DataPlane(
            RoutingConfig.model_validate(yaml.safe_load(routing_file.read_text())), routing_file=routing_file
        )
        old = plane.pools["default"]
        old.replicas[0].healthy = True
        old.replicas[0].ready_versions = {"ringer": {1}}
        target = plane.resolve("ringer", "1")
        with plane.hold(target):
            write(30)
            summary = await plane.reload()
            assert summary["retired"] == ["default"]
            assert plane.pools["default"] is not old
            await asyncio.sleep(0.3)
            assert not old.replicas[0].http.is_closed  # still held by the routed request
            assert old.leases == 1
            assert plane.inflight_versions[("ringer", 1)] == 1  # what a rollout's drain waits for
        for _ in range(100):
            if old.replicas[0].http.is_closed:
                break
            await asyncio.sleep(0.02)
        assert old.replicas[0].http.is_closed
        assert old.leases == 0
        assert plane.inflight_versions[("ringer", 1)] == 0
        await plane.close()

    routing_file = tmp_path / "routing.yaml"
    _run(check())


def test_keys_and_principals(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {"name": "reco", "sha256": hash_key("k1"), "models": ["ringer", "part*"]},
                    {
                        "name": "hlt",
                        "sha256": hash_key("k2").upper(),
                        "models": ["ringer"],
                        "versions": ["stable"],
                    },
                    {"name": "ops", "sha256": hash_key("changeme"), "admin": True},
                ]
            }
        )
    )
    keys = KeyStore.from_file(path)
    assert keys.well_known_keys() == ["ops"]
    reco = keys.authenticate("Bearer k1")
    assert reco.authorize("part_small", "1") == "1"
    with pytest.raises(PermissionDenied, match="'reco' may not use model 'calo_gan'"):
        reco.authorize("calo_gan", None)
    with pytest.raises(PermissionDenied, match="admin scope"):
        reco.require_admin("reload")
    hlt = keys.authenticate("bearer k2")
    assert hlt.authorize("ringer", None) == "stable"
    with pytest.raises(PermissionDenied, match="allowed: stable"):
        hlt.authorize("ringer", "canary")
    keys.authenticate("Bearer changeme").require_admin("reload")
    for header in (None, "", "Basic abc", "Bearer ", "Bearer nope"):
        with pytest.raises(Unauthenticated) as caught:
            keys.authenticate(header)
        assert "nope" not in caught.value.message  # never echo a key
    path.write_text(
        yaml.safe_dump({"keys": [{"name": "a", "sha256": "0" * 64}, {"name": "a", "sha256": "1" * 64}]})
    )
    with pytest.raises(ValidationError, match="same name"):
        KeyStore.from_file(path)


def test_settings_refuse_unsafe_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEPSONIC_API_KEYS_FILE", "HEPSONIC_ROUTING_FILE", "HEPSONIC_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().environment == "development"
    with pytest.raises(ValidationError, match="requires HEPSONIC_API_KEYS_FILE"):
        Settings(environment="production")
    example = tmp_path / "keys.yaml"
    example.write_text(yaml.safe_dump({"keys": [{"name": "demo", "sha256": hash_key("changethis")}]}))
    with pytest.raises(ValidationError, match="documented example"):
        Settings(environment="production", api_keys_file=example)
    real = tmp_path / "real.yaml"
    real.write_text(yaml.safe_dump({"keys": [{"name": "reco", "sha256": hash_key("a-long-random-key")}]}))
    assert Settings(environment="production", api_keys_file=real).api_keys_file == real
    with pytest.raises(ValidationError, match="both"):
        Settings(tls_cert_file=real)
    broken = tmp_path / "routing.yaml"
    broken.write_text("pools: {}\nmodels: {m: {pool: gpu}}\n")
    with pytest.raises(ValidationError, match="unknown pool"):
        Settings(routing_file=broken)


def test_the_replicas_shared_key_is_an_admin_that_survives_key_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [{"name": "reco", "sha256": hash_key("k1")}]}))
    peer_key = "a-random-peer-key-0123456789"
    keys = KeyStore.from_file(path, peer_key_sha256=hash_key(peer_key))
    peers = keys.authenticate(f"Bearer {peer_key}")
    assert (peers.name, peers.admin) == ("gateway-peers", True)
    assert not keys.authenticate("Bearer k1").admin

    async def reload() -> None:
        plane = DataPlane(RoutingConfig.model_validate(ROUTING), keys=keys, keys_file=path)
        path.write_text(yaml.safe_dump({"keys": [{"name": "reco2", "sha256": hash_key("k2")}]}))
        await plane.reload()
        assert plane.authenticate(f"Bearer {peer_key}").name == "gateway-peers"
        assert plane.authenticate("Bearer k2").name == "reco2"
        with pytest.raises(Unauthenticated):
            plane.authenticate("Bearer k1")
        await plane.close()

    _run(reload())


def test_peer_key_file_must_hold_a_real_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEPSONIC_PEER_KEY_FILE", raising=False)
    key_file = tmp_path / "peer.key"
    key_file.write_text("a-random-peer-key-0123456789\n")
    assert Settings(peer_key_file=key_file).peer_key == "a-random-peer-key-0123456789"
    for weak in ("short", "changeme"):
        key_file.write_text(weak)
        with pytest.raises(ValidationError, match="random secret of 16 characters or more"):
            Settings(peer_key_file=key_file)
    with pytest.raises(ValidationError, match="does not exist"):
        Settings(peer_key_file=tmp_path / "missing.key")


def test_peer_entries_are_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEPSONIC_PEERS", raising=False)
    assert parse_peer("gw-peers.ns.svc:8080") == ("http", "gw-peers.ns.svc", 8080)
    assert parse_peer(" https://gw-1.example.org:8443 ") == ("https", "gw-1.example.org", 8443)
    assert parse_peer("http://[::1]:8080") == ("http", "::1", 8080)
    assert Settings(peers="a:1, b:2,").peer_entries == ["a:1", "b:2"]
    for bad, reason in (
        ("gw-peers", "needs a port"),
        ("gw:http", "needs a port"),
        ("ftp://gw:21", "expected host:port"),
        ("http://gw:8080/admin", "expected host:port"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_peer(bad)
        with pytest.raises(ValidationError, match=reason):
            Settings(peers=f"ok:1,{bad}")


def test_a_gateway_skips_itself_among_its_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer list may name every replica, this one included, and is looked up again as pods come and go;
    unresolvable names fail the rollout clearly."""

    async def check() -> None:
        seen: list[str] = []

        async def routes(self: PeerSession, url: str) -> dict[str, Any]:
            seen.append(url)
            if url.endswith(":5"):
                raise PeerDown(f"gateway peer {url} is not running")
            if url.endswith(":6"):
                raise Unavailable(f"gateway peer {url} did not answer")
            return {"gateway": GATEWAY_ID if url.endswith(":1") else "someone-else"}

        monkeypatch.setattr(PeerSession, "routes", routes)
        session = await PeerGateways(
            ["127.0.0.1:1", "127.0.0.1:2", "https://127.0.0.1:3"], self_id=GATEWAY_ID
        ).connect(None)
        try:
            assert session.urls == ["http://127.0.0.1:2", "https://127.0.0.1:3"]
            assert seen == ["http://127.0.0.1:1", *session.urls]
            assert session.hosts["https://127.0.0.1:3"] == "127.0.0.1"  # the name its certificate must bear
            assert await session.refresh() is False
            session.gateways.entries.append(("http", "127.0.0.1", 4))  # a gateway pod joined
            assert await session.refresh() is True
            assert session.urls[-1] == "http://127.0.0.1:4"
            session.gateways.entries.append(("http", "127.0.0.1", 5))  # listed, not running: passed by
            assert await session.refresh() is True
            assert (session.urls[-1], session.down) == ("http://127.0.0.1:4", ["http://127.0.0.1:5"])
            session.gateways.entries.append(("http", "127.0.0.1", 6))  # running, not answering: stops it
            with pytest.raises(Unavailable, match="did not answer"):
                await session.refresh()
        finally:
            await session.aclose()
        with pytest.raises(Unavailable, match=r"gateway peer no-such-host\.invalid:80 does not resolve"):
            await PeerGateways(["no-such-host.invalid:80"], self_id=GATEWAY_ID).connect(None)

    _run(check())


def test_validation_messages_name_model_input_expected_and_got() -> None:
    good = [
        TensorHeader("rings", "FP32", (8, 100), byte_size=3200),
        TensorHeader("et", "FP32", (8, 1), data_count=8),
    ]
    assert check_request(SCHEMA, good, max_elements=10**6) == 8
    assert SCHEMA.sha256 == "ab" * 32
    cases: list[tuple[list[TensorHeader], str]] = [
        ([good[0]], "input 'et' is missing (expected FP32 [-1, 1])"),
        ([*good, TensorHeader("eta", "FP32", (8, 1))], "has no input 'eta'"),
        ([TensorHeader("rings", "FP64", (8, 100)), good[1]], "expected datatype FP32, got 'FP64'"),
        (
            [TensorHeader("rings", "FP32", (8, 99)), good[1]],
            "expected shape [-1, 100] with batch <= 64, got [8, 99]",
        ),
        ([TensorHeader("rings", "FP32", (8, 100), byte_size=3199), good[1]], "needs 3200 bytes, got 3199"),
        ([TensorHeader("rings", "FP32", (65, 100)), good[1]], "exceeds the model's max_batch_size 64"),
        ([good[0], TensorHeader("et", "FP32", (4, 1))], "differs from the other inputs' 8"),
    ]
    for tensors, message in cases:
        with pytest.raises(InvalidRequest) as caught:
            check_request(SCHEMA, tensors, max_elements=10**6)
        assert message in caught.value.message
        assert "'ringer' version 2" in caught.value.message
    with pytest.raises(TooLarge, match="exceed the gateway's limit of 100"):
        check_request(SCHEMA, good, max_elements=100)


def test_the_data_plane_checks_each_header_set_once_per_schema_and_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hepsonic_gateway import _dataplane  # noqa: PLC0415

    calls: list[int] = []

    def counting_check(schema: ModelSchema, tensors: Any, *, max_elements: int) -> int:
        calls.append(max_elements)
        return check_request(schema, tensors, max_elements=max_elements)

    monkeypatch.setattr(_dataplane, "check_request", counting_check)
    good = [TensorHeader("rings", "FP32", (8, 100), 3200), TensorHeader("et", "FP32", (8, 1), 32)]
    bad = [TensorHeader("rings", "FP32", (8, 99), 3168), good[1]]

    async def check() -> None:
        plane = _plane(ringer={2})
        target = plane.resolve("ringer", "2")
        plane._schemas[("default", "ringer", 2)] = SCHEMA
        for _ in range(3):
            assert await plane.validate(target, list(good), body_bytes=3232) is SCHEMA
        assert len(calls) == 1, "the same shapes again: checked once"
        for _ in range(2):  # a refused set is never remembered as good
            with pytest.raises(InvalidRequest, match="got \\[8, 99\\]"):
                await plane.validate(target, bad, body_bytes=3200)
        assert len(calls) == 3
        tighter = dataclasses.replace(
            target, policy=target.policy.model_copy(update={"max_tensor_elements": 100})
        )
        with pytest.raises(TooLarge, match="limit of 100"):
            await plane.validate(tighter, good, body_bytes=3232)
        fetched_again = dataclasses.replace(SCHEMA, max_batch_size=4)  # a schema fetched anew: checked anew
        plane._schemas[("default", "ringer", 2)] = fetched_again
        with pytest.raises(InvalidRequest, match="exceeds the model's max_batch_size 4"):
            await plane.validate(target, good, body_bytes=3232)

    _run(check())


def test_http_request_headers_are_read_without_the_binary_part() -> None:
    header = b'{"inputs":[{"name":"et","shape":[2,1],"datatype":"FP32","parameters":{"binary_data_size":8}}]}'
    tensors = parse_http_request(header + b"\xff" * 8, len(header), model="ringer")
    assert tensors == [TensorHeader("et", "FP32", (2, 1), byte_size=8)]
    with pytest.raises(InvalidRequest, match="declare 8 bytes of binary data, the request carries 7"):
        parse_http_request(header + b"\xff" * 7, len(header), model="ringer")
    with pytest.raises(InvalidRequest, match="Inference-Header-Content-Length is 999"):
        parse_http_request(header, 999, model="ringer")
    with pytest.raises(InvalidRequest, match="does not parse"):
        parse_http_request(b"{not json", None, model="ringer")
    nested = b'{"inputs":[{"name":"et","shape":[2,1],"datatype":"FP32","data":[[1],[2]]}]}'
    assert parse_http_request(nested, None, model="ringer")[0].data_count == 2


def test_rollout_plans_are_validated() -> None:
    assert RolloutPlan(model="m", to_version=2).steps == (10, 50, 100)
    for steps in ((10, 50), (50, 10, 100), (0, 100), (10, 150)):
        with pytest.raises(InvalidRequest, match="steps"):
            RolloutPlan(model="m", to_version=2, steps=steps)
