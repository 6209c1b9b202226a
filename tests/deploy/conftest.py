"""Shared fixtures for the offline deployment checks (Helm chart, compose file, Dockerfiles)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "hepsonic"
SCENARIO_FILES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
RELEASE = "hs"
NAMESPACE = "physics"

Manifest = dict[str, Any]


def load_scenario(path: Path) -> dict[str, Any]:
    """Values of one chart scenario (helm/hepsonic/ci/*-values.yaml)."""
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path}: expected a mapping of values"
    return values


@pytest.fixture(scope="session")
def chart() -> Any:
    """The chart loaded by Helm's own Go SDK (helm-python-sdk)."""
    helm = pytest.importorskip("helm_python")
    return helm.Chart.load(CHART_DIR)


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[[dict[str, Any]], dict[str, str]]:
    """Render the chart with values, as `helm template` would: {template path: text}."""

    def _render(values: dict[str, Any]) -> dict[str, str]:
        rendered: dict[str, str] = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return rendered

    return _render


def manifests(rendered: dict[str, str]) -> list[Manifest]:
    """Every Kubernetes object in a render (NOTES.txt excluded, empty documents dropped)."""
    objects: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: a document is not a mapping"
                objects.append(doc)
    return objects


def find(objects: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The single object of `kind` whose name ends with `name_suffix`."""
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(hits) == 1, (
        f"expected one {kind} named *{name_suffix}, got {[h['metadata']['name'] for h in hits]}"
    )
    return hits[0]
