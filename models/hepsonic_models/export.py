"""Export a PyTorch model into the Triton model repository, checked against the spec and against PyTorch.

Every served model goes through :func:`export_version`, so every ``model.onnx`` in ``model_repository/``

* has the input/output names, dtypes and dims of :mod:`hepsonic_models.specs` plus a dynamic batch axis,
* was run in onnxruntime on example inputs and matched PyTorch to ``atol``,
* is listed with its sha256 in the model's ``config.pbtxt`` (``parameters { key: "sha256/<version>" ... }``),
  which the gateway reports as provenance.

A build may also publish per-version parameters that clients need to use the outputs (pv_finder's peak-finder
operating point): :func:`publish_parameters` keeps them in ``<version>/parameters.json`` and the config lists
them as ``<key>/<version>``, so a client reads them from the server that answered, for the version that answered.

Exporter choice: torch 2.13's default ``torch.onnx.export`` is the dynamo exporter, which needs ``onnxscript``
(not a dependency here). The legacy TorchScript exporter (``dynamo=False``) still works, handles every model
family in this repository and gives plain graphs that Triton's onnxruntime backend loads; its deprecation
warnings are silenced around the call only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from .specs import ModelSpec, TensorSpec

__all__ = [
    "ONNX_OPSET",
    "VERSION_PARAMETERS_FILE",
    "ExportError",
    "ExportInfo",
    "check_onnx_against_spec",
    "expected_config",
    "export_version",
    "numpy_dtype",
    "publish_parameters",
    "render_config",
    "run_served",
    "sha256_file",
    "version_folders",
    "write_config",
    "write_model_card",
]

#: Opset of every exported graph: supported by onnxruntime >= 1.14 and so by every Triton image since 23.x.
ONNX_OPSET = 17

_NUMPY_DTYPES: dict[str, type[np.generic]] = {
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_FP16": np.float16,
    "TYPE_INT64": np.int64,
    "TYPE_INT32": np.int32,
    "TYPE_INT8": np.int8,
    "TYPE_UINT8": np.uint8,
    "TYPE_BOOL": np.bool_,
}

_ONNX_ELEM_TYPES: dict[str, int] = {
    "TYPE_FP32": onnx.TensorProto.FLOAT,
    "TYPE_FP64": onnx.TensorProto.DOUBLE,
    "TYPE_FP16": onnx.TensorProto.FLOAT16,
    "TYPE_INT64": onnx.TensorProto.INT64,
    "TYPE_INT32": onnx.TensorProto.INT32,
    "TYPE_INT8": onnx.TensorProto.INT8,
    "TYPE_UINT8": onnx.TensorProto.UINT8,
    "TYPE_BOOL": onnx.TensorProto.BOOL,
}


class ExportError(RuntimeError):
    """An exported graph does not match its spec, or its outputs differ from PyTorch."""


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export_version` wrote."""

    path: Path
    sha256: str
    opset: int
    #: Largest |onnxruntime - PyTorch| over every output element of the example inputs.
    max_abs_diff: float


def numpy_dtype(tensor: TensorSpec) -> type[np.generic]:
    """The numpy dtype of a spec tensor (``TYPE_FP32`` -> ``np.float32``)."""
    try:
        return _NUMPY_DTYPES[tensor.data_type]
    except KeyError:
        raise ExportError(f"tensor {tensor.name!r}: unsupported data_type {tensor.data_type!r}") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (the provenance hash used in ``config.pbtxt`` and model cards)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version_folders(repository: Path, name: str) -> dict[int, Path]:
    """Numeric version folders of model ``name`` that hold a ``model.onnx``, by version number."""
    model_dir = repository / name
    if not model_dir.is_dir():
        return {}
    return {
        int(child.name): child / "model.onnx"
        for child in sorted(model_dir.iterdir(), key=lambda p: p.name)
        if child.is_dir() and child.name.isdigit() and (child / "model.onnx").is_file()
    }


def _render_tensors(kind: str, tensors: tuple[TensorSpec, ...]) -> list[str]:
    blocks = [
        f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n'
        f"    dims: [ {', '.join(str(d) for d in t.dims)} ]\n  }}"
        for t in tensors
    ]
    return [f"{kind} [", ",\n".join(blocks), "]"]


#: Per-version parameters published in ``config.pbtxt`` (a JSON object of strings), next to ``model.onnx``.
VERSION_PARAMETERS_FILE = "parameters.json"


def render_config(
    spec: ModelSpec,
    version_sha256: Mapping[int, str],
    version_parameters: Mapping[int, Mapping[str, str]] | None = None,
) -> str:
    """The ``config.pbtxt`` text of ``spec``, with one ``sha256/<version>`` parameter per given version and one
    ``<key>/<version>`` parameter per entry of ``version_parameters``."""
    if spec.version_policy == "all":
        policy = "version_policy: { all { } }"
    else:
        policy = "version_policy: { latest { num_versions: 1 } }"
    lines = [
        "# Generated by hepsonic_models.export from hepsonic_models/specs.py: do not edit by hand.",
        f'name: "{spec.name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {spec.max_batch_size}",
        policy,
        *_render_tensors("input", spec.inputs),
        *_render_tensors("output", spec.outputs),
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}",
        "}",
    ]
    for version in sorted(version_sha256):
        parameters = {"sha256": version_sha256[version], **(version_parameters or {}).get(version, {})}
        for key, value in parameters.items():
            lines += [
                "parameters {",
                f'  key: "{key}/{version}"',
                f"  value {{ string_value: {json.dumps(value)} }}",
                "}",
            ]
    return "\n".join(lines) + "\n"


def _read_parameters(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise ExportError(f"{path}: expected a JSON object of strings")
    return {str(k): v for k, v in stored.items()}


def expected_config(spec: ModelSpec, repository: Path) -> str:
    """The ``config.pbtxt`` text that the version folders present in ``repository`` call for."""
    folders = version_folders(repository, spec.name)
    hashes = {version: sha256_file(path) for version, path in folders.items()}
    parameters = {
        version: _read_parameters(path.parent / VERSION_PARAMETERS_FILE) for version, path in folders.items()
    }
    return render_config(spec, hashes, parameters)


def write_config(spec: ModelSpec, repository: Path) -> Path:
    """(Re)write ``<repository>/<spec.name>/config.pbtxt`` for every version folder present."""
    path = repository / spec.name / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(expected_config(spec, repository), encoding="utf-8")
    return path


def publish_parameters(
    spec: ModelSpec, repository: Path, version: int, parameters: Mapping[str, str]
) -> Path:
    """Store ``parameters`` of an exported version (replacing earlier ones) and rewrite ``config.pbtxt``;
    keys must not contain ``/`` and ``sha256`` is reserved. Returns the config's path."""
    for key in parameters:
        if "/" in key or key == "sha256" or not key:
            raise ExportError(f"model {spec.name!r}: parameter key {key!r} is reserved or contains '/'")
    folder = repository / spec.name / str(version)
    if not (folder / "model.onnx").is_file():
        raise ExportError(f"model {spec.name!r} version {version}: no model.onnx in {folder}")
    text = json.dumps(dict(sorted(parameters.items())), indent=2) + "\n"
    (folder / VERSION_PARAMETERS_FILE).write_text(text, encoding="utf-8")
    return write_config(spec, repository)


def write_model_card(repository: Path, name: str, markdown: str) -> Path:
    """Write ``<repository>/<name>/MODEL_CARD.md`` and return its path."""
    path = repository / name / "MODEL_CARD.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown if markdown.endswith("\n") else markdown + "\n", encoding="utf-8")
    return path


def _value_info_signature(value: onnx.ValueInfoProto) -> tuple[int, list[int | str]]:
    tensor_type = value.type.tensor_type
    dims: list[int | str] = [
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?")
        for dim in tensor_type.shape.dim
    ]
    return tensor_type.elem_type, dims


def check_onnx_against_spec(spec: ModelSpec, path: Path) -> None:
    """Raise :class:`ExportError` unless the graph's inputs/outputs are exactly the spec's, batch axis dynamic."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    graph_inputs = [value for value in graph.input if value.name not in initializers]
    for kind, expected, actual in (
        ("inputs", spec.inputs, graph_inputs),
        ("outputs", spec.outputs, list(graph.output)),
    ):
        expected_names = [t.name for t in expected]
        actual_names = [v.name for v in actual]
        if expected_names != actual_names:
            raise ExportError(
                f"model {spec.name!r} ({path}): graph {kind} are {actual_names}, expected {expected_names}"
            )
        for tensor, value in zip(expected, actual, strict=True):
            elem_type, dims = _value_info_signature(value)
            if elem_type != _ONNX_ELEM_TYPES[tensor.data_type]:
                raise ExportError(
                    f"model {spec.name!r} ({path}): {kind[:-1]} {tensor.name!r} has ONNX element type "
                    f"{onnx.TensorProto.DataType.Name(elem_type)}, expected {tensor.data_type}"
                )
            if (
                len(dims) != len(tensor.dims) + 1
                or isinstance(dims[0], int)
                or list(dims[1:]) != list(tensor.dims)
            ):
                raise ExportError(
                    f"model {spec.name!r} ({path}): {kind[:-1]} {tensor.name!r} has shape {dims}, "
                    f"expected [batch (dynamic), {', '.join(str(d) for d in tensor.dims)}]"
                )


def _annotate_static_dims(spec: ModelSpec, path: Path) -> None:
    """Name the batch axis "batch" and write the spec's dims where the exporter left symbolic ones.

    The legacy exporter cannot always infer that e.g. ``x.reshape(-1, 3, 96)`` has static trailing dims and
    names them symbolically; the graph is right, only its annotation is vague. Static dims it did infer are
    kept, so a real mismatch still fails :func:`check_onnx_against_spec`, and the shapes onnxruntime returns
    are checked against the spec afterwards.
    """
    model = onnx.load(str(path))
    graph_inputs = {value.name: value for value in model.graph.input}
    graph_outputs = {value.name: value for value in model.graph.output}
    for tensor, values in [(t, graph_inputs) for t in spec.inputs] + [
        (t, graph_outputs) for t in spec.outputs
    ]:
        value = values.get(tensor.name)
        if value is None or len(value.type.tensor_type.shape.dim) != len(tensor.dims) + 1:
            continue
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        for dim, size in zip(list(dims)[1:], tensor.dims, strict=True):
            if not dim.HasField("dim_value"):
                dim.dim_value = size
    onnx.save(model, str(path))


def _check_example_inputs(
    spec: ModelSpec, example_inputs: Mapping[str, npt.NDArray[Any]]
) -> list[npt.NDArray[Any]]:
    expected = [t.name for t in spec.inputs]
    if sorted(example_inputs) != sorted(expected):
        raise ExportError(
            f"model {spec.name!r}: example inputs are {sorted(example_inputs)}, expected {expected}"
        )
    arrays = []
    batch_sizes = set()
    for tensor in spec.inputs:
        array = np.asarray(example_inputs[tensor.name])
        dtype = numpy_dtype(tensor)
        if array.dtype != dtype or array.shape[1:] != tensor.dims or array.ndim != len(tensor.dims) + 1:
            raise ExportError(
                f"model {spec.name!r}: example input {tensor.name!r} is {array.dtype}{list(array.shape)}, "
                f"expected {np.dtype(dtype)}[batch, {', '.join(str(d) for d in tensor.dims)}]"
            )
        batch_sizes.add(array.shape[0])
        arrays.append(array)
    if len(batch_sizes) != 1 or 0 in batch_sizes:
        raise ExportError(f"model {spec.name!r}: example inputs need one common, non-zero batch size")
    return arrays


def _torch_outputs(
    spec: ModelSpec, module: torch.nn.Module, arrays: list[npt.NDArray[Any]]
) -> list[npt.NDArray[Any]]:
    with torch.no_grad():
        result = module(*(torch.from_numpy(array) for array in arrays))
    outputs = list(result) if isinstance(result, tuple | list) else [result]
    if len(outputs) != len(spec.outputs):
        raise ExportError(
            f"model {spec.name!r}: forward returned {len(outputs)} outputs, expected {len(spec.outputs)} "
            f"({[t.name for t in spec.outputs]})"
        )
    return [output.detach().cpu().numpy() for output in outputs]


def run_served(
    path: Path, spec: ModelSpec, inputs: Mapping[str, npt.NDArray[Any]], *, threads: int = 1
) -> dict[str, npt.NDArray[Any]]:
    """Run an exported ``model.onnx`` in onnxruntime, as Triton serves it, over all rows of ``inputs``.

    Rows go in batches of the served ``max_batch_size``; returns every output of the spec by name. This is the
    one place validation and reports evaluate a served model, so they score exactly what Triton runs.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [t.name for t in spec.outputs]
    n_rows = len(next(iter(inputs.values())))
    parts = [
        session.run(names, {t.name: inputs[t.name][start : start + spec.max_batch_size] for t in spec.inputs})
        for start in range(0, n_rows, spec.max_batch_size)
    ]
    return {
        tensor.name: np.concatenate([part[i] for part in parts])
        if parts
        else np.zeros((0, *tensor.dims), dtype=np.float32)
        for i, tensor in enumerate(spec.outputs)
    }


def _onnx_outputs(path: Path, spec: ModelSpec, arrays: list[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
    feeds = {tensor.name: array for tensor, array in zip(spec.inputs, arrays, strict=True)}
    outputs = run_served(path, spec, feeds)
    return [outputs[t.name] for t in spec.outputs]


def export_version(
    spec: ModelSpec,
    module: torch.nn.Module,
    version: int,
    repository: Path,
    example_inputs: dict[str, npt.NDArray[Any]],
    *,
    atol: float = 1e-5,
) -> ExportInfo:
    """Export ``module`` as version ``version`` of ``spec.name`` into ``repository`` and check it.

    ``module.forward`` takes the spec's inputs positionally, in spec order, and returns the spec's outputs in
    spec order (a tuple when there are several). The module is put in eval mode. The graph is written to
    ``<repository>/<spec.name>/<version>/model.onnx`` only after it passed every check (an existing file is
    left untouched otherwise), then ``config.pbtxt`` is rewritten with the sha256 of every version present.

    Raises :class:`ExportError` when the example inputs do not fit the spec, the graph's inputs/outputs
    differ from the spec, or an onnxruntime output differs from PyTorch by more than ``atol`` (or is not
    finite).
    """
    if version < 1:
        raise ExportError(f"model {spec.name!r}: version must be a positive integer, got {version}")
    arrays = _check_example_inputs(spec, example_inputs)
    module = module.eval()
    expected = _torch_outputs(spec, module, arrays)

    version_dir = repository / spec.name / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".model-", suffix=".onnx", dir=version_dir)
    os.close(handle)
    tmp_path = Path(tmp_name)
    try:
        names = [t.name for t in (*spec.inputs, *spec.outputs)]
        with warnings.catch_warnings(), torch.no_grad():
            # The legacy exporter warns that it is deprecated (see the module docstring).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                module,
                tuple(torch.from_numpy(array) for array in arrays),
                str(tmp_path),
                dynamo=False,
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                dynamic_axes={name: {0: "batch"} for name in names},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
        _annotate_static_dims(spec, tmp_path)
        check_onnx_against_spec(spec, tmp_path)
        actual = _onnx_outputs(tmp_path, spec, arrays)
        max_abs_diff = 0.0
        for tensor, want, got in zip(spec.outputs, expected, actual, strict=True):
            expected_shape = (arrays[0].shape[0], *tensor.dims)
            if want.shape != expected_shape or got.shape != expected_shape:
                raise ExportError(
                    f"model {spec.name!r} version {version}: output {tensor.name!r} has shape "
                    f"{list(got.shape)} in onnxruntime and {list(want.shape)} in PyTorch, expected "
                    f"{list(expected_shape)}"
                )
            if not (np.isfinite(want).all() and np.isfinite(got).all()):
                raise ExportError(
                    f"model {spec.name!r} version {version}: output {tensor.name!r} is not finite "
                    f"(PyTorch: {int((~np.isfinite(want)).sum())}, onnxruntime: "
                    f"{int((~np.isfinite(got)).sum())} non-finite values)"
                )
            diff = float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64)), initial=0.0))
            if diff > atol:
                raise ExportError(
                    f"model {spec.name!r} version {version}: output {tensor.name!r} differs between "
                    f"onnxruntime and PyTorch by max abs diff {diff:.3g} > atol {atol:.3g}"
                )
            max_abs_diff = max(max_abs_diff, diff)
        target = version_dir / "model.onnx"
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)
    write_config(spec, repository)
    return ExportInfo(path=target, sha256=sha256_file(target), opset=ONNX_OPSET, max_abs_diff=max_abs_diff)
