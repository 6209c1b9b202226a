"""The two build modes of pv_finder (full and smoke): sample sizes and training settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._generator import GeneratorSettings
from ._train import TrainSettings

__all__ = ["FULL", "SMOKE", "PVBuildConfig"]


@dataclass(frozen=True, kw_only=True)
class PVBuildConfig:
    """Sample sizes and training settings of one build mode."""

    n_train: int
    n_val: int
    n_test: int
    train: TrainSettings
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)


FULL = PVBuildConfig(
    n_train=8000, n_val=1000, n_test=2000, train=TrainSettings(steps=12000, validate_every=500)
)
SMOKE = PVBuildConfig(
    n_train=16,
    n_val=6,
    n_test=6,
    train=TrainSettings(steps=3, batch_size=4, crop_bins=512, validate_every=3),
)
