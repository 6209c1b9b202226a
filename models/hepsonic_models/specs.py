"""The served interface of every model: names, dtypes, dims (without the batch axis) and batching.

This is the one place the tensor contract is written down. The exporter renders ``config.pbtxt`` from it,
the tests check the ONNX graphs against it, and ``../shared/MODELS.md`` is its prose form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SPECS", "ModelSpec", "TensorSpec"]


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """One input or output tensor, without the leading (dynamic) batch axis."""

    name: str
    dims: tuple[int, ...]
    data_type: str = "TYPE_FP32"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """How one model is served by Triton."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    #: Triton's dynamic batcher waits at most this long to grow a batch.
    max_queue_delay_us: int
    #: "all" serves every version folder (ringer: Run-2 and Run-3 binnings side by side);
    #: "latest" serves only the newest.
    version_policy: Literal["all", "latest"] = "latest"
    versions: tuple[int, ...] = (1,)


def _t(name: str, *dims: int) -> TensorSpec:
    return TensorSpec(name=name, dims=dims)


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="ringer",
            inputs=(_t("rings", 100), _t("et", 1), _t("eta", 1)),
            outputs=(_t("discriminant", 1),),
            max_batch_size=4096,
            max_queue_delay_us=200,
            version_policy="all",
            versions=(1, 2),
        ),
        ModelSpec(
            name="particlenet_lite",
            inputs=(_t("pf_points", 2, 64), _t("pf_features", 7, 64), _t("pf_mask", 1, 64)),
            outputs=(_t("softmax", 2),),
            max_batch_size=512,
            max_queue_delay_us=500,
        ),
        ModelSpec(
            name="part_small",
            inputs=(
                _t("pf_points", 2, 64),
                _t("pf_features", 7, 64),
                _t("pf_vectors", 4, 64),
                _t("pf_mask", 1, 64),
            ),
            outputs=(_t("softmax", 2),),
            max_batch_size=256,
            max_queue_delay_us=500,
        ),
        ModelSpec(
            name="pv_finder",
            inputs=(_t("kde", 2, 4000),),
            outputs=(_t("pv_prob", 4000),),
            max_batch_size=64,
            max_queue_delay_us=500,
        ),
        ModelSpec(
            name="calo_gan",
            inputs=(_t("z", 64), _t("energy", 1)),
            outputs=(_t("layer_0", 3, 96), _t("layer_1", 12, 12), _t("layer_2", 12, 6)),
            max_batch_size=1024,
            max_queue_delay_us=200,
        ),
    )
}
