"""Generic Triton python-backend model: serves one ONNX file with onnxruntime.

The runtime repository puts a copy of this file as ``<model>/<version>/model.py`` next to a link to the
repository's ``model.onnx``. Triton's dynamic batcher hands ``execute`` several requests at once: we concatenate
them, run the session once and split the outputs back, so batching happens where Triton decides it should.
This file is loaded by the python-backend stub, not imported as part of hepsonic_triton.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One onnxruntime session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open the session on the CUDA provider when this instance is on a GPU and onnxruntime-gpu is present."""
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("onnxruntime_intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        providers: list[Any] = ["CPUExecutionProvider"]
        if (
            args.get("model_instance_kind") == "GPU"
            and "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(
                0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])})
            )
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.inputs = [item["name"] for item in config["input"]]
        self.outputs = [item["name"] for item in config["output"]]
        self.model = f"{config['name']}:{args['model_version']}"

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run all queued requests as one batch; a failure fails every request of the batch with the reason."""
        try:
            columns: dict[str, list[np.ndarray[Any, Any]]] = {name: [] for name in self.inputs}
            for request in requests:
                for name in self.inputs:
                    columns[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            sizes = [len(array) for array in columns[self.inputs[0]]]
            feed = {
                name: arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
                for name, arrays in columns.items()
            }
            results = self.session.run(self.outputs, feed)
        except Exception as exc:  # noqa: BLE001  (reported to every caller instead of crashing the stub)
            error = pb_utils.TritonError(f"model {self.model}: onnxruntime failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        bounds = np.cumsum([0, *sizes])
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(result[start:stop]))
                    for name, result in zip(self.outputs, results, strict=True)
                ]
            )
            for start, stop in itertools.pairwise(bounds)
        ]

    def finalize(self) -> None:
        """Release the session before the stub exits."""
        del self.session
