"""Operating the gateway under traffic: admission control, hot reload, TLS, a rollout, a replica killed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import yaml
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hepsonic_gateway import PeerGateways, Unavailable
from hepsonic_gateway.cli import main as gateway_main
from hepsonic_triton import PortInUseError
from hepsonic_triton import _server as triton_server_module

from .conftest import KEYS, Cluster, Gateway, wait_until
from .helpers import Traffic, bearer, infer_http, toy_body

pytestmark = pytest.mark.integration

TIGHT = {"*": {"pool": "default"}, "toy": {"pool": "default", "max_inflight": 1, "max_queue": 0}}


@pytest.fixture(scope="module")
def tight(cluster: Cluster) -> Iterator[tuple[Gateway, Path]]:
    """A gateway without keys whose `toy` admits one request at a time and queues none."""
    routing = cluster.write_routing(cluster.workdir / "routing-tight.yaml", models=TIGHT)
    gateway = cluster.gateway("tight", routing=routing, keys=False).start()
    yield gateway, routing
    gateway.stop()


def _routes(gateway: Gateway, key: str | None = None) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/admin/routes", headers=bearer(key), timeout=5)
    assert response.status_code == 200, response.text
    routes: dict[str, Any] = response.json()
    return routes


def _hammer_http(gateway: Gateway, n: int = 48, workers: int = 12) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            return infer_http(client, version="1", key=None)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(n)))


def test_admission_refuses_with_retry_hint_and_recovers(tight: tuple[Gateway, Path]) -> None:
    gateway, _ = tight
    # The toy model answers in well under a millisecond, so on a busy machine one round of 48 requests from 12
    # threads can run without two ever overlapping (seen once); a few rounds make an overlap certain.
    responses: list[httpx.Response] = []
    for _ in range(5):
        responses += _hammer_http(gateway)
        if any(r.status_code == 429 for r in responses):
            break
    refused = [r for r in responses if r.status_code == 429]
    assert refused, "no request was refused although only one may run at a time"
    assert {r.status_code for r in responses} <= {200, 429}
    assert int(refused[0].headers["retry-after"]) >= 1
    assert int(refused[0].headers["retry-after-ms"]) > 0
    assert "overloaded" in refused[0].json()["error"]

    request = service_pb2.ModelInferRequest(model_name="toy", model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        futures = [stub.ModelInfer.future(request) for _ in range(40)]
        codes, hints = [], []
        for future in futures:
            try:
                future.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                hints += [m.value for m in exc.trailing_metadata() or () if m.key == "retry-after-ms"]
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert hints
        assert all(int(h) > 0 for h in hints)
        # Recovery: once the burst is over, requests pass again.
        assert stub.ModelInfer(request).model_version == "1"
    with httpx.Client(base_url=gateway.url) as client:
        assert infer_http(client, version="1", key=None).status_code == 200
        assert 'reason="queue_full"' in client.get("/metrics").text


def test_hot_reload_on_file_change_drops_nothing(tight: tuple[Gateway, Path], cluster: Cluster) -> None:
    gateway, routing = tight

    def limits() -> dict[str, Any]:
        limits: dict[str, Any] = _routes(gateway)["models"]["toy"]["limits"]
        return limits

    relaxed = {"*": {"pool": "default"}, "toy": {"pool": "default", "max_inflight": 64, "max_queue": 1024}}
    cluster.write_routing(routing, models=relaxed)
    wait_until(lambda: limits()["max_inflight"] == 64, 10, "the first reload")
    assert all(r.status_code == 200 for r in _hammer_http(gateway, n=36))
    relaxed["toy"]["max_inflight"] = 32
    with Traffic(gateway.url, gateway.grpc, version="1", key=None) as traffic:
        time.sleep(0.5)
        # A new health interval makes a new pool: the old one must drain, not drop, its requests.
        cluster.write_routing(routing, models=relaxed, health_interval_s=0.4)
        wait_until(lambda: limits()["max_inflight"] == 32, 10, "the second reload")
        time.sleep(0.5)
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.ok > 10
    # An invalid edit is refused and the previous configuration stays.
    routing.write_text("pools: {default: {endpoints: []}}\n")
    wait_until(
        lambda: 'hepsonic_gateway_reloads_total{result="error"}' in httpx.get(f"{gateway.url}/metrics").text,
        10,
        "the refused reload",
    )
    assert limits()["max_inflight"] == 32
    with httpx.Client(base_url=gateway.url) as client:
        assert infer_http(client, version="1", key=None).status_code == 200


def test_large_request_is_refused(tight: tuple[Gateway, Path], cluster: Cluster) -> None:
    gateway, routing = tight
    small = {"*": {"pool": "default"}, "toy": {"pool": "default", "max_request_bytes": 1000}}
    cluster.write_routing(routing, models=small, health_interval_s=0.4)
    wait_until(
        lambda: _routes(gateway)["models"]["toy"]["limits"]["max_request_bytes"] == 1000, 10, "the reload"
    )
    with httpx.Client(base_url=gateway.url) as client:
        response = infer_http(client, version="1", key=None, body=toy_body(batch=60))
        assert response.status_code == 413, response.text
        assert "limit is 1000" in response.json()["error"]
        assert infer_http(client, version="1", key=None).status_code == 200


def test_sighup_reloads_aliases(cluster: Cluster) -> None:
    routing = cluster.write_routing(cluster.workdir / "routing-hup.yaml")
    gateway = cluster.gateway("hup", routing=routing, keys=False, HEPSONIC_WATCH_INTERVAL_S="0").start()
    try:
        swapped = yaml.safe_load(routing.read_text())
        swapped["models"]["toy"]["aliases"] = {"stable": 2, "canary": 1}
        routing.write_text(yaml.safe_dump(swapped))
        time.sleep(0.5)
        assert _routes(gateway)["models"]["toy"]["aliases"]["stable"] == 1  # no watching: nothing yet
        gateway.signal(signal.SIGHUP)
        wait_until(
            lambda: _routes(gateway)["models"]["toy"]["aliases"]["stable"] == 2, 10, "the SIGHUP reload"
        )
        with httpx.Client(base_url=gateway.url) as client:
            response = infer_http(client, version="stable", key=None)
            assert response.headers["x-hepsonic-model-version"] == "2"
    finally:
        gateway.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "tls.key", folder / "tls.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def test_tls_on_both_fronts(cluster: Cluster) -> None:
    key, cert = _self_signed(cluster.workdir)
    gateway = cluster.gateway("tls", HEPSONIC_TLS_CERT_FILE=str(cert), HEPSONIC_TLS_KEY_FILE=str(key))
    gateway.scheme = "https"
    gateway.start()
    try:
        trust = ssl.create_default_context(cafile=str(cert))

        def ready() -> bool:
            try:
                return httpx.get(f"{gateway.url}/v2/health/ready", verify=trust).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "the TLS gateway")
        with httpx.Client(base_url=gateway.url, verify=trust) as client:
            assert infer_http(client, version="2").json()["outputs"][0]["data"] == [3, 5, 7, 9]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{gateway.http}/v2/health/live", timeout=2)  # plain HTTP is not served
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(gateway.grpc, credentials) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live

        # A rollout reaches TLS peers pinned to the replicas' shared certificate; any other one is refused.
        async def peers(certificate: Path) -> list[str]:
            found = PeerGateways(
                [f"https://{gateway.http}"], self_id="this-test", own_certificate=certificate
            )
            session = await found.connect(bearer("admin")["authorization"])
            try:
                return session.urls
            finally:
                await session.aclose()

        assert asyncio.run(peers(cert)) == [gateway.url]
        stranger = cluster.workdir / "stranger"
        stranger.mkdir(exist_ok=True)
        _, other = _self_signed(stranger)
        with pytest.raises(Unavailable, match=r"gateway peer https://127\.0\.0\.1:\d+ did not answer"):
            asyncio.run(peers(other))
    finally:
        gateway.stop()


def test_production_refuses_example_keys_and_missing_keys(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = cluster.workdir / "keys-example.yaml"
    example.write_text(
        yaml.safe_dump({"keys": [{"name": "demo", "sha256": _sha("changeme"), "admin": True}]})
    )
    monkeypatch.setenv("HEPSONIC_ENVIRONMENT", "production")
    monkeypatch.delenv("HEPSONIC_API_KEYS_FILE", raising=False)
    assert gateway_main([]) == 2
    assert "requires HEPSONIC_API_KEYS_FILE" in capsys.readouterr().err
    monkeypatch.setenv("HEPSONIC_API_KEYS_FILE", str(example))
    assert gateway_main([]) == 2
    error = capsys.readouterr().err
    assert "documented example" in error
    assert "Traceback" not in error


def _sha(text: str) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(text.encode()).hexdigest()


def _index(triton: Any) -> set[tuple[str, str]]:
    request = urllib.request.Request(
        f"http://{triton.http_url}/v2/repository/index", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return {(m["name"], m["version"]) for m in json.loads(response.read()) if m.get("state") == "READY"}


def test_rollout_under_traffic_has_zero_failures(cluster: Cluster) -> None:
    """Two gateway replicas; the rollout is started on one and moves the other (its peer) in step."""
    models = {"*": {"pool": "default"}, "toyroll": {"pool": "default", "aliases": {"stable": 1}}}
    routing = cluster.write_routing(cluster.workdir / "routing-rollout.yaml", models=models)
    peer_key = cluster.workdir / "peer.key"
    peer_key.write_text("peer-key-for-the-rollout-test-4b1f")
    gateway = cluster.gateway("rollout", routing=routing, HEPSONIC_PEER_KEY_FILE=str(peer_key))
    peer = cluster.gateway("rollout-peer", routing=routing, HEPSONIC_PEER_KEY_FILE=str(peer_key))
    late = cluster.gateway("rollout-late", routing=routing, HEPSONIC_PEER_KEY_FILE=str(peer_key))
    # Every replica may get the same list: the gateway finds itself in it and skips itself.
    for replica in (gateway, peer, late):
        replica.env["HEPSONIC_PEERS"] = f"{gateway.http},{peer.http},{late.http}"
    gateway.start()
    peer.start()
    try:
        assert all(("toyroll", "2") not in _index(t) for t in cluster.tritons)
        with (
            Traffic(gateway.url, gateway.grpc, model="toyroll", key="admin") as traffic,
            # The peer's clients ask for the stable alias: had the peer not moved, it would still send them
            # to version 1 after the rollout unloaded it.
            Traffic(peer.url, peer.grpc, model="toyroll", version="stable", key="admin") as peer_traffic,
        ):
            time.sleep(0.5)
            env = {**os.environ, "HEPSONIC_API_KEY": KEYS["admin"]}
            command = [sys.executable, "-m", "hepsonic_gateway", "rollout", "toyroll", "--to", "2"]
            command += ["--steps", "20,60,100", "--interval", "0.7", "--url", gateway.url]
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
            time.sleep(0.3)
        assert done.returncode == 0, done.stdout + done.stderr
        for step in ("loaded", "warmed_up", "shifted", "drained", "unloaded", "rollout done"):
            assert step in done.stdout, done.stdout
        assert f"gateways=['http://127.0.0.1:{peer.http_port}']" in done.stdout, done.stdout
        assert f"not_running=['http://127.0.0.1:{late.http_port}']" in done.stdout, done.stdout
        for seen in (traffic, peer_traffic):
            assert seen.failures == [], seen.failures[:5]
            assert seen.versions["1"] > 0, seen.versions
            assert seen.versions["2"] > 0, seen.versions
        # A gateway that starts afterwards (a replaced pod) serves the outcome, not the routing file's stable: 1.
        late.start()
        for replica in (gateway, peer, late):
            for secret in (KEYS["admin"], peer_key.read_text()):
                assert secret not in replica.log_text()
            routes = _routes(replica, "admin")["models"]["toyroll"]
            assert routes["aliases"]["stable"] == 2
            assert routes["split"] == {}
            assert routes["override"] is True
            assert routes["served_versions"] == [2]
        with httpx.Client(base_url=late.url) as client:
            answer = infer_http(client, "toyroll", "stable", key="admin")
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-hepsonic-model-version"] == "2"
        for triton in cluster.tritons:
            assert ("toyroll", "2") in _index(triton)
            assert ("toyroll", "1") not in _index(triton)
        with httpx.Client(base_url=gateway.url) as client:
            assert infer_http(client, "toyroll", key="admin").headers["x-hepsonic-model-version"] == "2"
            # A second rollout to the version already stable is refused with a clear reason.
            again = client.post(
                "/admin/models/toyroll/rollout", json={"to_version": 2}, headers=bearer("admin")
            ).json()
            wait_until(
                lambda: (
                    client.get("/admin/models/toyroll/rollout", headers=bearer("admin")).json()["state"]
                    != "running"
                ),
                10,
                "the refused rollout",
            )
            status = client.get("/admin/models/toyroll/rollout", headers=bearer("admin")).json()
            assert again["to_version"] == 2
            assert status["state"] == "failed"
            assert "already" in status["error"]
    finally:
        for replica in (gateway, peer, late):
            replica.stop()


def _check_port_reusable(host: str, port: int, what: str) -> None:
    """Like the launcher's port check, but with SO_REUSEADDR as servers bind: a SIGKILLed Triton leaves its
    ports in TIME_WAIT for a minute, which only a bind without SO_REUSEADDR trips over."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(f"{what} port {host}:{port} is already in use ({exc.strerror})") from exc


def test_killed_replica_loses_no_request_and_comes_back(
    cluster: Cluster, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triton_server_module, "check_port_free", _check_port_reusable)
    victim = cluster.tritons[0]
    with Traffic(gateway.url, gateway.grpc, version="1", pairs=2) as traffic:
        time.sleep(1.0)
        os.killpg(victim.pid, signal.SIGKILL)
        wait_until(
            lambda: not _replica(gateway, victim.grpc_url)["healthy"],
            10,
            "the gateway to eject the dead replica",
        )
        served_while_down = traffic.ok
        time.sleep(1.0)
        assert traffic.ok > served_while_down, "traffic stalled while one replica was down"
        victim.stop()  # clean up what the kill left (stubs, shared memory)
        victim.start()
        wait_until(lambda: _replica(gateway, victim.grpc_url)["healthy"], 15, "the restarted replica")
        time.sleep(1.0)
    assert traffic.failures == [], traffic.failures[:5]
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert "hepsonic_gateway_retries_total" in metrics
    with httpx.Client(base_url=gateway.url) as client:
        servers = {infer_http(client, version="1").headers["x-hepsonic-server"] for _ in range(30)}
    assert victim.grpc_url in servers, "the restarted replica gets traffic again"


def _replica(gateway: Gateway, name: str) -> dict[str, Any]:
    replicas = _routes(gateway, "admin")["pools"]["default"]
    return next(r for r in replicas if r["replica"] == name)
