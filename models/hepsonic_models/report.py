"""Helpers shared by the validation reports and model cards: tables, figures, distribution distances.

Figures use matplotlib's non-interactive Agg backend, so builds run headless.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import numpy.typing as npt

from .context import BuildContext
from .export import sha256_file

mpl.use("Agg")
import matplotlib.pyplot as plt

__all__ = [
    "BUILD_RECORD",
    "BuildRecordError",
    "build_machine",
    "check_served_file",
    "git_revision",
    "markdown_table",
    "read_build_record",
    "save_figure",
    "separation_power",
    "subplots",
]


def separation_power(reference: npt.ArrayLike, candidate: npt.ArrayLike, bins: int = 50) -> float:
    """Triangular discriminator ½ Σ (p-q)²/(p+q) of two samples over common bins (0 = identical, 1 = disjoint).

    Bin edges are the reference's 0.5% and 99.5% quantiles (outliers land in the edge bins), as in the
    fast-calorimeter-simulation literature.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cand = np.asarray(candidate, dtype=np.float64).ravel()
    low, high = np.quantile(ref, [0.005, 0.995])
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    p = np.histogram(np.clip(ref, low, high), edges)[0].astype(np.float64)
    q = np.histogram(np.clip(cand, low, high), edges)[0].astype(np.float64)
    p /= max(p.sum(), 1.0)
    q /= max(q.sum(), 1.0)
    total = p + q
    nonzero = total > 0
    return float(0.5 * np.sum((p[nonzero] - q[nonzero]) ** 2 / total[nonzero]))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def subplots(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (5.0, 4.0)) -> tuple[Any, Any]:
    """``plt.subplots`` with a figure size per panel."""
    return plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)


def save_figure(figure: Any, path: Path) -> Path:
    """Save a figure as PNG (tight layout, 110 dpi) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def git_revision() -> str:
    """Short git revision of the working tree, or "unknown" outside a checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name ("" when unknown)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor()


def build_machine() -> str:
    """One line describing the machine a build ran on (for model cards).

    It names the processor: GAN training is bit-for-bit reproducible on one machine but not across processors
    (their float kernels round differently), so the same command and seed elsewhere trains other weights."""
    cores = len(os.sched_getaffinity(0))
    cpu = cpu_model()
    return (
        f"{platform.machine()} {platform.system()}{f' ({cpu})' if cpu else ''}, {cores} usable cores, "
        f"Python {platform.python_version()}"
    )


#: What a build leaves in ``<reports>/<model>/`` for ``--report-only``: facts only training knows.
BUILD_RECORD = "training.json"


class BuildRecordError(RuntimeError):
    """A report needs outputs of a build that are missing, or are not the files being served."""


def read_build_record(ctx: BuildContext, name: str, *, required: Sequence[Path] = ()) -> dict[str, Any]:
    """Load ``<reports>/<name>/training.json`` once ``required`` files and the record exist.

    A record that says which build made it (``smoke``, ``seed``) must match the build asked for.
    """
    record_path = ctx.reports / name / BUILD_RECORD
    for path in (*required, record_path):
        if not path.is_file():
            raise BuildRecordError(f"model {name!r}: {path} is missing; build the model first")
    record: dict[str, Any] = json.loads(record_path.read_text(encoding="utf-8"))
    if "smoke" in record and (bool(record["smoke"]) != ctx.smoke or int(record["seed"]) != ctx.seed):
        recorded = "smoke" if record["smoke"] else "full"
        asked = "smoke" if ctx.smoke else "full"
        raise BuildRecordError(
            f"model {name!r}: {record_path} records a {recorded} build with seed {record['seed']}, but the "
            f"report was asked for a {asked} build with seed {ctx.seed}"
        )
    return record


def check_served_file(name: str, onnx_path: Path, recorded_sha256: str) -> None:
    """Raise :class:`BuildRecordError` unless ``onnx_path`` is the file the build recorded."""
    actual = sha256_file(onnx_path)
    if actual != recorded_sha256:
        raise BuildRecordError(
            f"model {name!r}: {onnx_path} (sha256 {actual}) is not the file the build recorded "
            f"({recorded_sha256}); rebuild the model"
        )
