"""The client installs into a fresh venv and imports without any server dependency.

Honest and fast: a wheel of ./clients is built and installed with --no-deps into a new venv (no system
site packages); its declared requirements are checked; then ``import hepsonic_client`` runs there with
numpy/tritonclient visible from the project venv as a plain path, while an import hook makes fastapi,
uvicorn, prometheus_client, pydantic and the server packages unimportable, and we check which modules got
loaded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
FORBIDDEN = (
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "pydantic",
    "starlette",
    "hepsonic_gateway",
    "hepsonic_triton",
)

CHECK = f"""
import importlib.abc, importlib.metadata, sys
FORBIDDEN = {FORBIDDEN!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"forbidden import {{name}}")
sys.meta_path.insert(0, Block())
import hepsonic_client
from hepsonic_client import Client, MockTransport
import numpy as np
c = Client(transport=MockTransport(lambda r: {{"y": r.inputs["x"] + 1}}))
assert c.infer("m", {{"x": np.zeros((1, 1), np.float32)}})["y"][0, 0] == 1
assert hepsonic_client.__file__.startswith(sys.prefix), hepsonic_client.__file__
requires = importlib.metadata.requires("hepsonic-client") or []
base = sorted(r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip() for r in requires if "extra ==" not in r)
assert base == ["numpy", "tritonclient"], base
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(FORBIDDEN))
assert not loaded, loaded
print("ok", base)
"""


@pytest.mark.timeout(180)
def test_client_installs_and_imports_without_server_dependencies(tmp_path: Path) -> None:
    source = tmp_path / "src"  # build from a copy: nothing is written into the checkout
    shutil.copytree(CLIENTS, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("hepsonic_client-*.whl")
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)  # bundled pip, offline
    python = env_dir / "bin" / "python"
    fresh_site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The fresh venv's own pip installs the wheel: no index, no dependencies.
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    # numpy/tritonclient/grpc from the project venv, as a plain path (its .pth files, e.g. editable
    # installs of the server packages, are NOT processed).
    (fresh_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    answer = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, check=False)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith("ok")
