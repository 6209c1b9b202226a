"""The ringer sample and how every build and report splits it: one owner, so both see the same test rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import torch

from ..calorimeter import RingerSampleSettings, write_ringer_sample
from ..context import BuildContext
from ._model import BINNINGS, Binning, RingerEnsemble
from ._train import TrainingSettings

__all__ = [
    "MAX_ELECTRONS_PER_BIN",
    "TEST_FRACTION",
    "Arrays",
    "VersionRows",
    "data_path",
    "load_sample",
    "sample_settings",
    "training_settings",
    "version_rows",
]

Arrays = dict[str, npt.NDArray[np.float64]]

#: Fraction of candidates held out as the independent test set.
TEST_FRACTION = 0.25
#: At most this many electrons per bin enter cross-validation (the test set keeps all). High enough for every
#: bin of this sample (the fullest holds ~8,500): the operation set that fixes each fold model's threshold is
#: then as large as it can be, which is what keeps the fold-to-fold spread of P_D under 0.1% (3,000 gave 0.13%).
MAX_ELECTRONS_PER_BIN = 10_000


def sample_settings(smoke: bool) -> RingerSampleSettings:
    """Electron and jet-event counts of the build's sample."""
    if smoke:
        return RingerSampleSettings(
            n_electrons=600, jet_events=((15.0, 40), (70.0, 60)), electrons_per_chunk=600, events_per_chunk=60
        )
    return RingerSampleSettings(
        n_electrons=150_000, jet_events=((15.0, 6000), (35.0, 16_000), (70.0, 16_000), (140.0, 6000))
    )


def training_settings(smoke: bool) -> TrainingSettings:
    """Cross-validation settings of the build (the fold count also fixes the split)."""
    if smoke:
        return TrainingSettings(folds=2, inits=1, max_epochs=10, eval_every=5, patience=10)
    return TrainingSettings(folds=5, inits=4, max_epochs=300, patience=60)


def data_path(ctx: BuildContext) -> Path:
    """Where the build caches its generated sample."""
    return ctx.workdir / "ringer" / f"sample_{'smoke' if ctx.smoke else 'full'}_seed{ctx.seed}.h5"


def load_sample(ctx: BuildContext) -> tuple[Arrays, float]:
    """The cached sample (generated first, deterministically for ``ctx.seed``, when missing) and the seconds
    its generation took."""
    path = data_path(ctx)
    if not path.exists():
        write_ringer_sample(path, sample_settings(ctx.smoke), ctx.seed, jobs=ctx.jobs)
    with h5py.File(path, "r") as stream:
        data = {key: np.asarray(stream[key][:], dtype=np.float64) for key in stream}
        # Recorded when the (cached) sample was generated, so a rebuild from cache reports the real cost.
        seconds = float(stream.attrs.get("generation_seconds", float("nan")))
    return data, seconds


def _bins(
    binning: Binning, et: npt.NDArray[np.float64], eta: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Bin index exactly as the served graph computes it."""
    module = RingerEnsemble(binning)
    with torch.no_grad():
        index = module.bin_index(
            torch.from_numpy(et.astype(np.float32)).reshape(-1, 1),
            torch.from_numpy(eta.astype(np.float32)).reshape(-1, 1),
        )
    return index.numpy().astype(np.int64)


@dataclass(frozen=True)
class VersionRows:
    """One version's view of the sample: candidates above its first E_T edge, their bins and split."""

    binning: Binning
    data: Arrays
    is_electron: npt.NDArray[np.bool_]
    bins: npt.NDArray[np.int64]
    is_test: npt.NDArray[np.bool_]
    #: Cross-validation fold of every row; -1 = not in cross-validation.
    fold: npt.NDArray[np.int64]

    @property
    def in_cv(self) -> npt.NDArray[np.bool_]:
        """Rows of the cross-validation pool (the reference cuts and NN thresholds are set on them)."""
        return np.asarray(self.fold >= 0)


def version_rows(version: int, data: Arrays, seed: int, folds: int) -> VersionRows:
    """Test rows, and a fold per remaining row stratified by (bin, class), deterministic for ``seed``."""
    binning = BINNINGS[version]
    keep = data["et"] >= binning.et_edges[0]
    selected = {key: values[keep] for key, values in data.items()}
    label = selected["label"] > 0.5
    bins = _bins(binning, selected["et"], selected["eta"])
    rng = np.random.default_rng([seed, version])
    is_test = rng.uniform(size=bins.size) < TEST_FRACTION
    fold = np.full(bins.size, -1, dtype=np.int64)
    for b in np.unique(bins):
        for cls in (False, True):
            rows = rng.permutation(np.flatnonzero((bins == b) & (label == cls) & ~is_test))
            if cls:
                rows = rows[:MAX_ELECTRONS_PER_BIN]
            fold[rows] = np.arange(rows.size) % folds
    return VersionRows(binning, selected, label, bins, is_test, fold)
