"""docs/client.md's examples run as they stand against a running stack (only the ports are the test's)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest

from ..conftest import REPO_ROOT, Stack

pytestmark = pytest.mark.integration

GUIDE = (REPO_ROOT / "docs" / "client.md").read_text()
#: The fallback example points at a server that does not exist and would load every model a second time;
#: tests/client/test_integration.py starts and kills the embedded Triton on a tiny repository instead.
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", GUIDE, flags=re.DOTALL) if "FallbackOptions" not in b]


def _run(block: str, stack: Stack) -> str:
    code = block.replace("127.0.0.1:8081", stack.gateway_grpc).replace("127.0.0.1:8080", stack.gateway_http)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _block(marker: str) -> str:
    (block,) = [b for b in BLOCKS if marker in b]
    return block


def test_every_example_is_checked() -> None:
    markers = (
        'version="2")',
        "RetryPolicy",
        "InputError",
        "Batcher",
        "AsyncClient",
        "multiprocessing",
        "write_provenance",
    )
    assert len(BLOCKS) == len(markers)
    assert all(len([b for b in BLOCKS if marker in b]) == 1 for marker in markers)


def test_one_request_and_its_provenance(stack: Stack) -> None:
    shape, provenance = _run(_block('version="2")'), stack).splitlines()
    assert shape == "(64, 1)"
    assert re.fullmatch(r"ringer 2 [0-9a-f]{12} server", provenance)
    onnx_file = (REPO_ROOT / "model_repository" / "ringer" / "2" / "model.onnx").read_bytes()
    assert provenance.split()[2] == hashlib.sha256(onnx_file).hexdigest()[:12]


def test_servers_retries_and_stats(stack: Stack) -> None:
    ready, stats = _run(_block("RetryPolicy"), stack).splitlines()
    assert ready == "True ['calo_gan', 'part_small', 'particlenet_lite', 'pv_finder', 'ringer']"
    assert "'requests':" in stats
    assert "'failovers'" not in stats  # the first server answered


def test_input_errors_name_the_model_input_expected_and_got(stack: Stack) -> None:
    message = _run(_block("InputError"), stack)
    assert "model 'ringer', input 'rings': expected shape ('batch', 100)" in message
    assert "got (2, 99)" in message


def test_the_batcher_merges_a_thousand_objects(stack: Stack) -> None:
    out = _run(_block("Batcher"), stack)
    count, stats = out.split(" ", 1)
    assert count == "1000"
    requests = int(re.search(r"'requests': (\d+)", stats).group(1))  # type: ignore[union-attr]
    assert 4 <= requests < 100


def test_asyncio(stack: Stack) -> None:
    assert _run(_block("AsyncClient"), stack).strip() == "16 (8, 1)"


def test_provenance_record(stack: Stack) -> None:
    assert _run(_block("write_provenance"), stack).strip() == "2 ['hepsonic_provenance']"


def test_forked_workers(stack: Stack) -> None:
    assert _run(_block("multiprocessing"), stack).strip() == "True"
