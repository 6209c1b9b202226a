"""The README's copy-paste examples work verbatim against a running stack (only the ports are the test's)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from hepsonic_gateway import RoutingConfig

from ..conftest import REPO_ROOT, Stack

pytestmark = pytest.mark.integration

README = (REPO_ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def _on_stack(code: str, stack: Stack) -> str:
    return (
        code.replace("127.0.0.1:8081", stack.gateway_grpc)
        .replace("127.0.0.1:8080", stack.gateway_http)
        .replace("localhost:8080", stack.gateway_http)
    )


def test_readme_curl_examples(stack: Stack) -> None:
    (block,) = [b for b in _blocks("bash") if "curl" in b]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _on_stack(block, stack)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"name":"ringer"' in result.stdout
    assert "HTTP/1.1 200 OK" in result.stdout
    assert "x-hepsonic-model-version: 2" in result.stdout
    assert re.search(r"x-hepsonic-model-sha256: [0-9a-f]{64}", result.stdout)
    assert '"name":"discriminant"' in result.stdout


def test_readme_python_example(stack: Stack) -> None:
    (block,) = [b for b in _blocks("python") if "hepsonic_client" in b]
    result = subprocess.run(
        [sys.executable, "-c", _on_stack(block, stack)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    values = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", result.stdout.split("]")[0])]
    assert len(values) == 4
    assert all(-1.0 <= v <= 1.0 for v in values)  # tanh discriminants
    assert "ringer" in result.stdout


def test_readme_reconstruction_job(stack: Stack, tmp_path: Path) -> None:
    (block,) = [b for b in _blocks("bash") if "hepsonic-reco" in b]
    script = _on_stack(block, stack).replace(".venv/bin/", f"{REPO_ROOT}/.venv/bin/")
    script = script.replace("--repository model_repository", f"--repository {stack.repository}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert (tmp_path / "reco.parquet").is_file()
    assert (tmp_path / "reco_local.parquet").is_file()
    assert "events/s" in result.stdout + result.stderr


def test_readme_routing_file_example_loads_in_the_gateway() -> None:
    (block,) = _blocks("yaml")
    routing = RoutingConfig.model_validate(yaml.safe_load(textwrap.dedent(block)))
    ringer = routing.models["ringer"]
    assert ringer.aliases == {"stable": 1, "canary": 2}
    assert ringer.split == {"stable": 90.0, "canary": 10.0}
    assert len(routing.pools["default"].endpoints) == 2
