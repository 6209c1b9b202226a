"""The Dockerfiles in deploy/docker/: parsed by BuildKit's own parser (the `dockerfile` wheel),
checked for what each image must be, and their Python dependency sets resolved with pip."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO_ROOT

dockerfile = pytest.importorskip("dockerfile")

DOCKER_DIR = REPO_ROOT / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))
# What each Python image installs: the contract with pyproject.toml's extras.
EXPECTED_PIP_INSTALL = {
    "gateway.Dockerfile": ["./clients", "."],
    "triton-cpu.Dockerfile": ["./clients", ".[triton]"],
    "loadtest.Dockerfile": ["./clients", ".[loadtest]"],
}


INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}  # fmt: skip


def parse(path: Path) -> list[Any]:
    return list(dockerfile.parse_file(str(path)))


def final_stage(commands: list[Any]) -> list[Any]:
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return commands[last_from:]


def pip_install_args(commands: list[Any]) -> list[str]:
    """Requirement arguments of the single `pip install` RUN (flags dropped)."""
    runs = [c for c in commands if c.cmd == "RUN" and "pip install" in " ".join(c.value)]
    assert len(runs) == 1, "one pip install per image keeps its dependency set in one place"
    words = shlex.split(" ".join(runs[0].value))
    return [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]


def test_there_are_dockerfiles() -> None:
    assert {p.name for p in DOCKERFILES} >= set(EXPECTED_PIP_INSTALL) | {"model-repository.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_parses_and_its_sources_exist(path: Path) -> None:
    commands = parse(path)
    assert commands[0].cmd in {"FROM", "ARG"}
    unknown = [c.original for c in commands if c.cmd not in INSTRUCTIONS or not c.value]
    assert not unknown, f"{path.name}: unknown or empty instructions {unknown}"
    final = final_stage(commands)
    user = [c for c in final if c.cmd == "USER"]
    assert user, f"{path.name}: the final image must not run as root"
    assert user[-1].value[0].split(":")[0] not in {"0", "root"}
    for copy in (c for c in commands if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)):
        for source in copy.value[:-1]:
            if "[" in source:  # optional file through a glob, e.g. README.m[d]
                continue
            assert (REPO_ROOT / source).exists(), f"{path.name}: COPY source {source} is missing"
    ignore = path.with_name(path.name + ".dockerignore")
    assert ignore.exists(), f"{path.name}: needs {ignore.name} so the build context stays small"


def test_dockerfile_parser_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN <<EOF\necho never closed\n")
    with pytest.raises(dockerfile.GoParseError, match="heredoc"):
        parse(bad)


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED_PIP_INSTALL.items()))
def test_image_installs_exactly_its_dependency_set(name: str, expected: list[str]) -> None:
    commands = parse(DOCKER_DIR / name)
    assert pip_install_args(commands) == expected
    final = final_stage(commands)
    froms = [c.value[0] for c in commands if c.cmd == "FROM"]
    assert all("slim" in f or f.startswith("${") for f in froms), "slim Python base images"
    args = {c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1] for c in commands if c.cmd == "ARG"}
    assert "slim" in args["PYTHON_IMAGE"]
    assert "3.11" in args["PYTHON_IMAGE"], "the images run the Python the project targets"
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final), (
        "multi-stage: no build tools shipped"
    )


def test_cpu_triton_image_runs_the_embedded_runtime() -> None:
    final = final_stage(parse(DOCKER_DIR / "triton-cpu.Dockerfile"))
    entrypoint = next(c for c in final if c.cmd == "ENTRYPOINT")
    cmd = next(c for c in final if c.cmd == "CMD")
    assert entrypoint.json
    assert list(entrypoint.value) == ["hepsonic-triton"]
    argv = list(cmd.value)
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--repository") + 1] == "/models"


def test_gateway_image_listens_on_all_interfaces() -> None:
    final = final_stage(parse(DOCKER_DIR / "gateway.Dockerfile"))
    env = " ".join(" ".join(c.value) for c in final if c.cmd == "ENV")
    assert "HEPSONIC_GATEWAY_HOST 0.0.0.0" in env
    assert list(next(c for c in final if c.cmd == "ENTRYPOINT").value) == ["hepsonic-gateway"]


@pytest.mark.slow
def test_image_dependency_sets_resolve_with_pip(tmp_path: Path) -> None:
    """One `pip install --dry-run` of the union of the three images' requirement sets.

    A resolution of the union, restricted to one image's packages, satisfies that image's
    constraints too, so one run proves all three resolve (10-30 s on a busy 2-core box, not 3x that).
    Marked slow: it asks the package index for metadata. It uses this machine's Python 3.11 on
    Linux x86-64, the same interpreter line and platform as the python:3.11-slim images.
    """
    requirements = sorted(
        {arg for name in EXPECTED_PIP_INSTALL for arg in pip_install_args(parse(DOCKER_DIR / name))}
    )
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation",
               "--quiet", "--report", str(report), *requirements]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {
        i["metadata"]["name"].lower(): i["metadata"]["version"]
        for i in json.loads(report.read_text())["install"]
    }
    assert {"hepsonic", "hepsonic-client", "nvidia-pytriton", "onnxruntime", "locust", "fastapi"} <= set(
        resolved
    )
    assert int(resolved["numpy"].split(".")[0]) < 2, "nvidia-pytriton needs numpy<2"
    assert "torch" not in resolved, "no image may pull torch"
