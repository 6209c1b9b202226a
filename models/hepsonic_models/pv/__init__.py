"""pv_finder: LHCb-style primary-vertex finder (track KDE -> 1D U-Net -> peak finder).

``build("pv_finder", ctx)`` generates Pythia 8 minimum-bias crossings, trains :class:`PVUNet`, chooses the
peak-finder cuts on a validation sample, scores the network and the KDE-only baseline on an independent test
sample, exports version 1 into the model repository and writes the model card and the report
(``reports/pv_finder/``). ``report("pv_finder", ctx)`` (also ``hepsonic-build-models --report-only --only
pv_finder``) redoes the scoring, the report and the card from the exported ONNX file and the cached samples.
The KDE builder and the peak finder live in :mod:`hepsonic_client.physics.vertices`.
"""

from ._build import FULL, SMOKE, PVBuildConfig, build, report
from ._evaluate import Curve, FinderChoice, SeedFit, choose_finder, evaluate, scan_curve
from ._generator import (
    CollisionSample,
    CrossingSample,
    GeneratorSettings,
    VertexCeiling,
    generate_collisions,
    ideal_vertex_efficiency,
    reconstruct_tracks,
    simulate_crossings,
)
from ._metrics import MatchResult, Truth, match_vertices, scan_peak_finder
from ._net import PVUNet
from ._train import TrainResult, TrainSettings, make_targets, predict, train

__all__ = [
    "FULL",
    "SMOKE",
    "CollisionSample",
    "CrossingSample",
    "Curve",
    "FinderChoice",
    "GeneratorSettings",
    "MatchResult",
    "PVBuildConfig",
    "PVUNet",
    "SeedFit",
    "TrainResult",
    "TrainSettings",
    "Truth",
    "VertexCeiling",
    "build",
    "choose_finder",
    "evaluate",
    "generate_collisions",
    "ideal_vertex_efficiency",
    "make_targets",
    "match_vertices",
    "predict",
    "reconstruct_tracks",
    "report",
    "scan_curve",
    "scan_peak_finder",
    "simulate_crossings",
    "train",
]
