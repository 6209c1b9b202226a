"""The Helm chart, checked offline: Helm's own engine renders and lints it, every object validates
against Kubernetes 1.30 (strict) or its CRD's model, and the drain/scaling/routing logic holds."""

from __future__ import annotations

import base64
import copy
import os
import shlex
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART_DIR, NAMESPACE, SCENARIO_FILES, Manifest, find, load_scenario, manifests

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
keda = pytest.importorskip("cloudcoil.models.keda.v1alpha1")
prometheus_operator = pytest.importorskip("cloudcoil.models.prometheus_operator.v1")

KUBE_VERSION = "1.30"
Render = Callable[[dict[str, Any]], dict[str, str]]

# The smallest valid values: every other test starts from here and changes one thing.
MINIMAL: dict[str, Any] = {
    "triton": {"modelRepository": {"source": "pvc", "pvc": {"claimName": "models"}}},
    "gateway": {"apiKeys": {"existingSecret": "keys"}},
}


def with_values(**overrides: Any) -> dict[str, Any]:
    """MINIMAL with dotted-path overrides, e.g. with_values(**{"triton.mode": "cpu"})."""
    values = copy.deepcopy(MINIMAL)
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return values


# --- validation of rendered objects --------------------------------------------------------------


def _unknown_fields(original: Any, roundtrip: Any, path: str = "") -> list[str]:
    """Paths present in `original` that the model dropped or changed (pydantic ignores unknown keys)."""
    if isinstance(original, dict):
        if not isinstance(roundtrip, dict):
            return [path or "/"]
        problems: list[str] = []
        for key, value in original.items():
            if key not in roundtrip:
                problems.append(f"{path}/{key}")
            else:
                problems.extend(_unknown_fields(value, roundtrip[key], f"{path}/{key}"))
        return problems
    if isinstance(original, list):
        if not isinstance(roundtrip, list) or len(roundtrip) != len(original):
            return [path]
        return [
            p for i, item in enumerate(original) for p in _unknown_fields(item, roundtrip[i], f"{path}[{i}]")
        ]
    return [] if original == roundtrip else [f"{path} ({original!r} became {roundtrip!r})"]


def _validate_crd(model: Any, obj: Manifest) -> None:
    parsed = model.model_validate(obj)
    roundtrip = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = _unknown_fields(obj, roundtrip)
    assert not unknown, f"{obj['kind']} {obj['metadata']['name']}: fields unknown to the CRD model: {unknown}"


CRD_MODELS: dict[tuple[str, str], Any] = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator.ServiceMonitor,
}


def validate_object(obj: Manifest) -> str:
    """Validate one object strictly; returns which validator accepted it. Unknown kinds fail."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in CRD_MODELS:
        _validate_crd(CRD_MODELS[key], obj)
        return "crd-model"
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"nothing validates {key[0]} {key[1]} ({obj['metadata']['name']}): add a validator")
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        pytest.fail(f"{key[1]} {obj['metadata']['name']} at /{where}: {exc.message}")
    return "kubernetes-1.30"


def test_an_unvalidated_kind_fails() -> None:
    stray = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(pytest.fail.Exception, match=r"nothing validates example\.org/v1 Widget"):
        validate_object(stray)


def test_crd_validation_catches_unknown_fields() -> None:
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"name": "d"},
            "triggers": [{"type": "prometheus", "metadata": {}}],
            "typo": 1,
        },
    }
    with pytest.raises(AssertionError, match="/spec/typo"):
        validate_object(bad)


def test_core_validation_catches_unknown_fields() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 1}], "typo": 1},
    }
    with pytest.raises(pytest.fail.Exception, match="typo"):
        validate_object(bad)


# --- every scenario -------------------------------------------------------------------------------


def test_there_are_scenarios_for_each_axis() -> None:
    scenarios = [load_scenario(p) for p in SCENARIO_FILES]
    modes = {s.get("triton", {}).get("mode", "gpu") for s in scenarios}
    sources = {s["triton"]["modelRepository"]["source"] for s in scenarios}
    autoscaling = {s["triton"].get("autoscaling", {}).get("enabled", False) for s in scenarios}
    ingress = {s.get("gateway", {}).get("ingress", {}).get("enabled", False) for s in scenarios}
    assert modes == {"gpu", "cpu"}
    assert sources == {"pvc", "hostPath", "nfs", "initContainer"}
    assert autoscaling == {True, False}
    assert ingress == {True, False}


@pytest.mark.parametrize("scenario", SCENARIO_FILES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_scenario_renders_lints_and_validates(scenario: Path, render: Render) -> None:
    values = load_scenario(scenario)
    objects = manifests(render(values))
    validators = {validate_object(obj) for obj in objects}
    assert "kubernetes-1.30" in validators

    report = helm.lint(CHART_DIR, values, strict=True, kube_version="v1.30.0", namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, f"helm lint --strict: {problems}"

    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    assert ("NetworkPolicy" in kinds) == values.get("networkPolicy", {}).get("enabled", True)
    autoscaling = values["triton"].get("autoscaling", {}).get("enabled", False)
    assert ("ScaledObject" in kinds) == autoscaling
    assert ("Ingress" in kinds) == values.get("gateway", {}).get("ingress", {}).get("enabled", False)
    triton = find(objects, "Deployment", "-triton")
    assert ("replicas" in triton["spec"]) == (not autoscaling), "KEDA must own the replica count"
    _check_resources_everywhere(objects)
    _check_gpu(values, triton)


def _check_resources_everywhere(objects: list[Manifest]) -> None:
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            resources = container.get("resources", {})
            where = f"{obj['metadata']['name']}/{container['name']}"
            assert resources.get("requests"), f"{where}: resource requests are required"
            assert resources.get("limits"), f"{where}: resource limits are required"


def _check_gpu(values: dict[str, Any], triton: Manifest) -> None:
    container = triton["spec"]["template"]["spec"]["containers"][0]
    gpu_name = values["triton"].get("gpu", {}).get("resourceName", "nvidia.com/gpu")
    if values["triton"].get("mode", "gpu") == "gpu":
        assert container["resources"]["limits"][gpu_name] >= 1
        assert container["image"].startswith("nvcr.io/nvidia/tritonserver:24.10")
        assert container["command"] == ["tritonserver"]
    else:
        assert not any("gpu" in k for k in container["resources"]["limits"])
        assert container["command"] == ["hepsonic-triton"]
        assert "--host=0.0.0.0" in container["args"]


# --- graceful drain (SuperSONIC note N1) ---------------------------------------------------------


def _shim(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_prestop_really_flips_readiness(render: Render, tmp_path: Path) -> None:
    """Run the rendered preStop and readiness commands with /bin/sh: ready before, not ready after."""
    triton = find(manifests(render(MINIMAL)), "Deployment", "-triton")
    container = triton["spec"]["template"]["spec"]["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    readiness = container["readinessProbe"]["exec"]["command"]
    # `sh -c` takes ONE script; extra argv entries become $0.. and never run (the N1 bug).
    assert pre_stop[:2] == ["/bin/sh", "-c"]
    assert len(pre_stop) == 3
    assert readiness[:2] == ["/bin/sh", "-c"]
    assert len(readiness) == 3

    flag = "/tmp/hepsonic-draining"
    assert flag in pre_stop[2]
    assert flag in readiness[2]
    local_flag = str(tmp_path / "draining")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    slept = tmp_path / "slept"
    _shim(bin_dir, "sleep", f'echo "$1" > {shlex.quote(str(slept))}')
    _shim(bin_dir, "curl", "exit 0")  # Triton itself answers ready throughout the drain
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(command: list[str]) -> int:
        script = command[2].replace(flag, local_flag)
        return subprocess.run([command[0], command[1], script], env=env, check=False, timeout=10).returncode

    assert run(readiness) == 0, "ready before the drain"
    assert run(pre_stop) == 0
    assert Path(local_flag).exists(), "preStop must raise the drain flag"
    assert run(readiness) != 0, "readiness must fail once the drain flag exists"
    assert int(slept.read_text()) == MINIMAL_DRAIN_SECONDS


MINIMAL_DRAIN_SECONDS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["triton"]["drain"]["seconds"]


def test_drain_fits_inside_the_grace_period_and_exit_timeout(render: Render) -> None:
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["triton"]["drain"]
    triton = find(manifests(render(MINIMAL)), "Deployment", "-triton")
    pod = triton["spec"]["template"]["spec"]
    assert f"--exit-timeout-secs={defaults['exitTimeoutSeconds']}" in pod["containers"][0]["args"]
    assert pod["terminationGracePeriodSeconds"] > defaults["seconds"] + defaults["exitTimeoutSeconds"]
    probes = pod["containers"][0]
    assert probes["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


# --- routing, autoscaling, network policy --------------------------------------------------------


def test_gateway_discovers_triton_pods_through_the_headless_service(render: Render) -> None:
    objects = manifests(render(MINIMAL))
    headless = find(objects, "Service", "-triton-headless")
    assert headless["spec"]["clusterIP"] == "None"
    routing = yaml.safe_load(find(objects, "ConfigMap", "-gateway-routing")["data"]["routing.yaml"])
    discover = routing["pools"]["default"]["discover"]
    assert discover["host"] == f"{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    assert (discover["http_port"], discover["grpc_port"]) == (8000, 8001)
    assert "endpoints" not in routing["pools"]["default"], "static endpoints and discover are exclusive"
    assert routing["models"] == {"*": {"pool": "default"}}
    gateway = find(objects, "Deployment", "-gateway")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    assert env["HEPSONIC_ROUTING_FILE"] == "/etc/hepsonic/routing/routing.yaml"
    assert env["HEPSONIC_API_KEYS_FILE"] == "/etc/hepsonic/api-keys/keys.yaml"
    assert env["HEPSONIC_ENVIRONMENT"] == "production"
    assert env["HEPSONIC_GATEWAY_HOST"] == "0.0.0.0"
    secret_volume = next(v for v in gateway["volumes"] if v["name"] == "api-keys")
    assert secret_volume["secret"]["secretName"] == "keys"


@pytest.mark.parametrize("tls", [False, True])
def test_gateway_replicas_find_each_other_for_rollouts(tls: bool, render: Render) -> None:
    """A rollout started through the Service lands on one gateway pod; it must reach the others (peers)."""
    values = with_values(**{"gateway.tls": {"enabled": True, "existingSecret": "tls"}}) if tls else MINIMAL
    objects = manifests(render(values))
    peers = find(objects, "Service", "-gateway-peers")
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["selector"] == find(objects, "Service", "-gateway")["spec"]["selector"]
    assert [(p["port"], p["targetPort"]) for p in peers["spec"]["ports"]] == [(8080, "http")]
    gateway = find(objects, "Deployment", "-gateway")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    host = f"{peers['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    assert env["HEPSONIC_PEERS"] == (f"https://{host}:8080" if tls else f"{host}:8080")
    gateway_package = pytest.importorskip("hepsonic_gateway")
    parsed = gateway_package.PeerGateways([env["HEPSONIC_PEERS"]], self_id="").entries
    assert parsed == [("https" if tls else "http", host, 8080)]
    # They act with a shared key among themselves: a generated Secret, mounted where HEPSONIC_PEER_KEY_FILE says.
    secret = find(objects, "Secret", "-gateway-peer-key")
    assert len(base64.b64decode(secret["data"]["peer.key"])) >= 32
    volume = next(v for v in gateway["volumes"] if v["name"] == "peer-key")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    mount = next(m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == "peer-key")
    assert env["HEPSONIC_PEER_KEY_FILE"] == f"{mount['mountPath']}/peer.key"


def test_gateway_autoscaling_scales_the_deployment_on_cpu(render: Render) -> None:
    objects = manifests(render(MINIMAL))
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"], "off by default"
    assert find(objects, "Deployment", "-gateway")["spec"]["replicas"] == 2
    values = with_values(
        **{"gateway.autoscaling": {"enabled": True, "maxReplicas": 5, "targetAverageCPU": "800m"}}
    )
    objects = manifests(render(values))
    hpa = find(objects, "HorizontalPodAutoscaler", "-gateway")
    deployment = find(objects, "Deployment", "-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "800m"}}
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_inline_api_keys_become_a_secret(render: Render) -> None:
    digest = "ab" * 32
    values = with_values(
        **{"gateway.apiKeys": {"keys": [{"name": "cms", "sha256": digest, "models": ["*"]}]}}
    )
    secret = find(manifests(render(values)), "Secret", "-api-keys")
    assert yaml.safe_load(secret["stringData"]["keys.yaml"]) == {
        "keys": [{"name": "cms", "sha256": digest, "models": ["*"]}]
    }


def test_scaledobject_scales_on_queue_time_per_request(render: Render) -> None:
    values = with_values(
        **{"triton.autoscaling": {"enabled": True, "prometheusAddress": "http://prom.monitoring.svc:9090"}}
    )
    scaled = find(manifests(render(values)), "ScaledObject", "-triton")
    trigger = scaled["spec"]["triggers"][0]
    query = trigger["metadata"]["query"]
    numerator, denominator = query.split(" / ", 1)
    assert "nv_inference_queue_duration_us" in numerator
    assert "nv_inference_request_success" in denominator
    assert "exec_count" not in query, "dividing by executions inflates the metric by the batch size (N2)"
    assert f'namespace="{NAMESPACE}"' in query
    assert trigger["metricType"] == "Value"
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert (
        0
        < behavior["scaleUp"]["stabilizationWindowSeconds"]
        < behavior["scaleDown"]["stabilizationWindowSeconds"]
    )
    assert scaled["spec"]["scaleTargetRef"]["name"].endswith("-triton")


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_network_policy_admits_only_gateway_and_prometheus(render: Render) -> None:
    objects = manifests(render(MINIMAL))
    policy = find(objects, "NetworkPolicy", "-triton")
    triton_labels = find(objects, "Deployment", "-triton")["spec"]["template"]["metadata"]["labels"]
    gateway_labels = find(objects, "Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert _matches(policy["spec"]["podSelector"]["matchLabels"], triton_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    inference, metrics = policy["spec"]["ingress"]
    assert [p["port"] for p in inference["ports"]] == ["http", "grpc"]
    (peer,) = inference["from"]
    assert _matches(peer["podSelector"]["matchLabels"], gateway_labels)
    assert not _matches(peer["podSelector"]["matchLabels"], triton_labels)
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]
    assert "namespaceSelector" in metrics["from"][0]


# --- bad values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"triton.modelRepository": {"source": "pvc"}}, "triton.modelRepository.pvc.claimName"),
        (
            {"triton.modelRepository": {"source": "nfs", "nfs": {"server": "nfs"}}},
            "triton.modelRepository.nfs",
        ),
        ({"triton.modelRepository": {"source": "hostPath"}}, "triton.modelRepository.hostPath.path"),
        ({"triton.modelRepository": {"source": "initContainer"}}, "initContainer.image.repository"),
        (
            {"triton.drain": {"seconds": 60, "exitTimeoutSeconds": 30, "terminationGracePeriodSeconds": 60}},
            "Set it to at least 95",
        ),
        (
            {"triton.drain": {"seconds": 5, "exitTimeoutSeconds": 30, "terminationGracePeriodSeconds": 90}},
            "triton.drain.seconds: 5 s ends before the gateway can notice",
        ),
        ({"triton.gpu.count": 0}, "triton.gpu.count"),
        ({"triton.autoscaling.enabled": True}, "triton.autoscaling.prometheusAddress"),
        (
            {
                "triton.autoscaling": {
                    "enabled": True,
                    "prometheusAddress": "http://p:9090",
                    "minReplicas": 5,
                    "maxReplicas": 2,
                }
            },
            "minReplicas (5) is larger than maxReplicas (2)",
        ),
        (
            {"gateway.autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 3}},
            "gateway.autoscaling: minReplicas (4) is larger than maxReplicas (3)",
        ),
        ({"gateway.apiKeys": {}}, "no API keys are configured"),
        ({"gateway.tls.enabled": True}, "gateway.tls.existingSecret"),
        ({"gateway.ingress": {"enabled": True}}, "gateway.ingress.host"),
        (
            {"gateway.ingress": {"enabled": True, "host": "h", "tls": {"enabled": True}}},
            "gateway.ingress.tls.secretName",
        ),
        (
            {"gateway.routing.models": {"ringer": {"pool": "gpu-a100"}}},
            'gateway.routing.models.ringer.pool: pool "gpu-a100" does not exist',
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    overrides: dict[str, Any], message: str, render: Render
) -> None:
    with pytest.raises(helm.HelmError) as excinfo:
        render(with_values(**overrides))
    assert "VALUES VALIDATION" in str(excinfo.value)
    assert message in str(excinfo.value)


def test_all_problems_are_reported_at_once(render: Render) -> None:
    with pytest.raises(helm.HelmError) as excinfo:
        render({})
    text = str(excinfo.value)
    assert "triton.modelRepository.pvc.claimName" in text
    assert "gateway.apiKeys" in text


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"triton.mode": "tpu"}, "mode"),
        ({"triton.modelRepository": {"source": "s3", "mountPath": "/models"}}, "source"),
        ({"gateway.apiKeys": {"keys": [{"name": "k", "sha256": "not-a-digest"}]}}, "sha256"),
        ({"triton.replicaCount": "two"}, "replicaCount"),
        ({"triton.typo": 1}, "typo"),
    ],
)
def test_schema_refuses_malformed_values(overrides: dict[str, Any], field: str, render: Render) -> None:
    with pytest.raises(helm.HelmError, match=field):
        render(with_values(**overrides))


def _comment_block_above(lines: list[str], index: int) -> list[str]:
    block = []
    for back in range(index - 1, -1, -1):
        if not lines[back].strip().startswith("#"):
            break
        block.append(lines[back].strip())
    return block


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def test_values_yaml_documents_every_parameter() -> None:
    """Each parameter in values.yaml has a `# --` comment above it or above one of its parents."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        key, _, rest = stripped.partition(":")
        if not rest.strip():
            continue  # a parent: documented through its leaves
        chain, indent = [index], _indent(line)
        for back in range(index - 1, -1, -1):
            previous = lines[back]
            if (
                previous.strip()
                and not previous.strip().startswith(("#", "-"))
                and _indent(previous) < indent
            ):
                chain.append(back)
                indent = _indent(previous)
        if not any(c.startswith("# --") for i in chain for c in _comment_block_above(lines, i)):
            undocumented.append(f"line {index + 1}: {key}")
    assert not undocumented, f"undocumented parameters: {undocumented}"


def test_notes_print_the_endpoints(render: Render) -> None:
    values = with_values(
        **{"gateway.ingress": {"enabled": True, "host": "hep.example.org", "tls": {"secretName": "t"}}}
    )
    notes = render(values)["hepsonic/templates/NOTES.txt"]
    assert f"http://hs-hepsonic-gateway.{NAMESPACE}.svc:8080" in notes
    assert f"hs-hepsonic-gateway.{NAMESPACE}.svc:8081" in notes
    assert "https://hep.example.org" in notes
    assert "port-forward" in notes


@pytest.mark.parametrize("scenario", SCENARIO_FILES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_generated_routing_file_loads_in_the_gateway(scenario: Path, render: Render, tmp_path: Path) -> None:
    """The gateway's own loader accepts the routing file the chart generates."""
    gateway = pytest.importorskip("hepsonic_gateway")
    routing = find(manifests(render(load_scenario(scenario))), "ConfigMap", "-gateway-routing")
    path = tmp_path / "routing.yaml"
    path.write_text(routing["data"]["routing.yaml"])
    config = gateway.load_routing(path)
    assert config.pools["default"].discover is not None
    assert config.policy("any-model") is not None


def test_compose_routing_file_loads_in_the_gateway() -> None:
    gateway = pytest.importorskip("hepsonic_gateway")
    config = gateway.load_routing(CHART_DIR.parents[1] / "deploy" / "docker" / "routing.compose.yaml")
    (endpoint,) = config.pools["default"].endpoints
    assert (endpoint.http, endpoint.grpc) == ("triton:8000", "triton:8001")
