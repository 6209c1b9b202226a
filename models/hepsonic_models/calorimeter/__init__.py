"""GFlash-style parametrised calorimeters: the CaloGAN block and a toy ATLAS-like 7-layer calorimeter."""

from __future__ import annotations

from ._calogan import (
    CALOGAN_LAYERS,
    CALOGAN_MEDIUM,
    CaloGanLayer,
    simulate_calogan_showers,
    write_calogan_file,
)
from ._gflash import EmMedium
from ._ringer_sample import RINGER_SAMPLE_KEYS, RingerSampleSettings, write_ringer_sample

__all__ = [
    "CALOGAN_LAYERS",
    "CALOGAN_MEDIUM",
    "RINGER_SAMPLE_KEYS",
    "CaloGanLayer",
    "EmMedium",
    "RingerSampleSettings",
    "simulate_calogan_showers",
    "write_calogan_file",
    "write_ringer_sample",
]
