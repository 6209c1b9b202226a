"""The calo_gan build's samples and settings: one owner, so a build and a later report see the same showers."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt

from ..calorimeter import write_calogan_file
from ..context import BuildContext
from ._train import TrainingSettings

__all__ = [
    "FIXED_ENERGIES_GEV",
    "VALIDATION_SEED_OFFSET",
    "Showers",
    "reference_samples",
    "sample",
    "sizes",
    "training_settings",
]

Showers = dict[str, npt.NDArray[np.float32]]

#: Fixed-energy reference samples (GeV); test seeds ctx.seed + 2, + 3, + 4.
FIXED_ENERGIES_GEV = (10.0, 50.0, 90.0)
#: Validation samples (where training checkpoints are chosen) use seeds ctx.seed + this, + 1, + 2, + 3.
VALIDATION_SEED_OFFSET = 5


def sizes(smoke: bool) -> dict[str, int]:
    """Showers in the training sample, the spectrum test sample and each fixed-energy sample."""
    if smoke:
        return {"train": 1000, "test": 600, "fixed": 200}
    return {"train": 100_000, "test": 20_000, "fixed": 10_000}


def training_settings(smoke: bool) -> TrainingSettings:
    """Training settings of the build."""
    if smoke:
        return TrainingSettings(max_steps=10, max_seconds=10.0, batch_size=128, select_every=5)
    # A fixed step count keeps the build reproducible; the time limit only guards a very slow machine.
    return TrainingSettings(max_steps=36_000, max_seconds=6000.0, select_every=2000)


def _load(path: Path) -> tuple[Showers, float]:
    with h5py.File(path, "r") as stream:
        seconds = float(stream.attrs.get("generation_seconds", float("nan")))
        return {key: np.asarray(stream[key][:], dtype=np.float32) for key in stream}, seconds


def sample(ctx: BuildContext, label: str, n: int, seed: int, fixed: float | None) -> tuple[Showers, float]:
    """A cached (or freshly and deterministically generated) sample and the seconds its generation took."""
    path = ctx.workdir / "calo_gan" / f"{label.replace(' ', '')}_n{n}_seed{seed}.h5"
    if not path.exists():
        write_calogan_file(path, n, seed, fixed_energy_gev=fixed, jobs=ctx.jobs, desc=f"showers {label}")
    return _load(path)


def reference_samples(ctx: BuildContext, *, validation: bool = False) -> tuple[dict[str, Showers], float]:
    """The held-out parametrised showers ("spectrum", "10 GeV", ...) and the seconds their generation took.

    The test samples (seeds ctx.seed + 1 to + 4) or, with ``validation``, samples of the same sizes from seeds
    ctx.seed + 5 to + 8, on which training checkpoints are chosen."""
    n = sizes(ctx.smoke)
    prefix, first_seed = ("val_", ctx.seed + VALIDATION_SEED_OFFSET) if validation else ("", ctx.seed + 1)
    spectrum, data_seconds = sample(ctx, f"{prefix}test", n["test"], first_seed, None)
    references = {"spectrum": spectrum}
    for offset, energy in enumerate(FIXED_ENERGIES_GEV, start=1):
        showers, seconds = sample(ctx, f"{prefix}E{energy:g}", n["fixed"], first_seed + offset, energy)
        references[f"{energy:g} GeV"] = showers
        data_seconds += seconds
    return references, data_seconds
