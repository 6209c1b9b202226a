"""Request validation from tensor *metadata* only: names, datatypes, shapes and byte sizes, never tensor values.

The HTTP adapter hands over the JSON header of a request (with the binary-tensor extension, the
``Inference-Header-Content-Length`` first bytes; the binary part is never looked at beyond its length), the gRPC
adapter the ``ModelInferRequest`` tensor metadata and the lengths of its raw contents. Both become
:class:`TensorHeader` lists checked against the :class:`ModelSchema` of the resolved version (from Triton's model
configuration, cached per model version by the data plane). Every error names the model, the input, what was
expected and what came.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._errors import InvalidRequest, TooLarge

__all__ = [
    "DTYPE_BYTES",
    "InputSpec",
    "ModelSchema",
    "TensorHeader",
    "check_request",
    "parse_http_request",
]

#: Bytes per element of each KServe v2 datatype (BYTES is variable: None).
DTYPE_BYTES: dict[str, int | None] = {
    "BOOL": 1,
    "UINT8": 1,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 2,
    "FP16": 2,
    "BF16": 2,
    "UINT32": 4,
    "INT32": 4,
    "FP32": 4,
    "UINT64": 8,
    "INT64": 8,
    "FP64": 8,
    "BYTES": None,
}


class TensorHeader(NamedTuple):
    """What a request says about one input tensor.

    A tuple: cheap to build on the hot path, and hashable, so the data plane remembers header sets it has checked.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    #: Size of its binary/raw contents, when sent that way.
    byte_size: int | None = None
    #: Number of values sent inline (JSON ``data`` / typed gRPC contents), when sent that way.
    data_count: int | None = None


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input of a model version, as its configuration declares it (``dims`` exclude the batch dimension)."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class ModelSchema:
    """What a served model version accepts, and its provenance fingerprint.

    Compared and hashed by identity: a schema is fetched once per (pool, model, version) and keys the data plane's
    memo of checked requests, which a schema fetched anew (after a rollout) must not share.
    """

    model: str
    version: int
    max_batch_size: int
    inputs: Mapping[str, InputSpec]
    sha256: str | None
    #: The gateway may merge this model's requests by concatenating their rows and slice the answer back:
    #: Triton batches it dynamically (rows are independent by declaration) and every tensor has a fixed size
    #: per row (no BYTES, whose elements vary in length).
    mergeable: bool = False
    #: Instances of the model one Triton runs at once (``instance_group``; per GPU for GPU groups).
    instances: int = 1

    @classmethod
    def from_triton_config(cls, model: str, version: int, config: Mapping[str, Any]) -> ModelSchema:
        """From Triton's JSON model configuration (``GET /v2/models/{m}/versions/{v}/config``)."""
        inputs = {}
        for item in config.get("input", []):
            inputs[item["name"]] = InputSpec(
                name=item["name"],
                datatype=_datatype(item),
                dims=tuple(int(d) for d in item.get("dims", [])),
                optional=bool(item.get("optional", False)),
            )
        entry = config.get("parameters", {}).get(f"sha256/{version}", {})
        sha256 = entry.get("string_value") if isinstance(entry, dict) else None
        return cls(
            model=model,
            version=version,
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=inputs,
            sha256=sha256 or None,
            mergeable="dynamic_batching" in config
            and int(config.get("max_batch_size", 0)) > 0
            and all(
                DTYPE_BYTES.get(_datatype(item)) is not None
                for item in (*config.get("input", []), *config.get("output", []))
            ),
            instances=max(1, sum(_instances(group) for group in config.get("instance_group", []))),
        )

    def expected_shape(self, spec: InputSpec) -> list[int]:
        """The full expected shape (``-1`` = any), batch dimension included when the model batches."""
        return [-1, *spec.dims] if self.max_batch_size > 0 else list(spec.dims)


def _datatype(item: Mapping[str, Any]) -> str:
    """A tensor's KServe datatype from its entry in Triton's JSON model configuration (``TYPE_FP32`` -> ``FP32``)."""
    datatype = str(item.get("data_type", "")).removeprefix("TYPE_")
    return "BYTES" if datatype == "STRING" else datatype


def _instances(group: Mapping[str, Any]) -> int:
    count = int(group.get("count", 1))
    gpus = group.get("gpus") or []
    return count * len(gpus) if str(group.get("kind", "")).endswith("GPU") and gpus else count


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InvalidRequest(f"{where}: `shape` must be a list of integers, got {value!r}"[:300])
    if any(d < 0 for d in value):
        raise InvalidRequest(f"{where}: shape {value} has a negative dimension")
    return tuple(value)


def _count(data: Any) -> int:
    """Number of leaf values of a (possibly nested) JSON ``data`` list."""
    if not isinstance(data, list):
        return 1
    if not data or not isinstance(data[0], list):
        return len(data)
    return sum(_count(item) for item in data)


def parse_http_request(body: bytes, header_length: int | None, *, model: str) -> list[TensorHeader]:
    """The input tensors a KServe v2 HTTP request declares, from its JSON header only.

    ``header_length`` is ``Inference-Header-Content-Length`` (binary-tensor extension) or None for pure JSON.
    Checks that the binary part is exactly as long as the inputs and outputs declare.
    """
    if header_length is not None and not 0 <= header_length <= len(body):
        raise InvalidRequest(
            f"model {model!r}: Inference-Header-Content-Length is {header_length} but the body has "
            f"{len(body)} bytes"
        )
    header = body if header_length is None else body[:header_length]
    try:
        document = json.loads(header)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"model {model!r}: the request's JSON header does not parse: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"model {model!r}: the request must be a JSON object with `inputs`")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest(f"model {model!r}: the request has no `inputs` list")
    tensors = []
    binary_total = 0
    for index, item in enumerate(inputs):
        where = f"model {model!r} input #{index}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidRequest(f"{where}: each input needs a `name`, `shape` and `datatype`")
        where = f"model {model!r} input {item['name']!r}"
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidRequest(f"{where}: `datatype` must be a string, got {datatype!r}"[:300])
        shape = _shape(item.get("shape"), where)
        parameters = item.get("parameters") or {}
        byte_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if byte_size is not None:
            if not isinstance(byte_size, int) or isinstance(byte_size, bool) or byte_size < 0:
                raise InvalidRequest(f"{where}: binary_data_size must be a non-negative integer")
            binary_total += byte_size
            tensors.append(TensorHeader(item["name"], datatype, shape, byte_size=byte_size))
        elif "data" in item:
            tensors.append(TensorHeader(item["name"], datatype, shape, data_count=_count(item["data"])))
        else:
            raise InvalidRequest(f"{where}: neither `data` nor parameters.binary_data_size is given")
    # Outputs can also be sent in the binary part (rare, but the extension allows it).
    binary_part = len(body) - (header_length if header_length is not None else len(body))
    if binary_total != binary_part and header_length is not None:
        raise InvalidRequest(
            f"model {model!r}: the inputs declare {binary_total} bytes of binary data, the request carries "
            f"{binary_part}"
        )
    if binary_total and header_length is None:
        raise InvalidRequest(
            f"model {model!r}: inputs declare binary data but the Inference-Header-Content-Length header is "
            "missing"
        )
    return tensors


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_request(schema: ModelSchema, tensors: Sequence[TensorHeader], *, max_elements: int) -> int:
    """Check the tensors against the model version; return the batch size (1 for non-batching models)."""
    what = f"model {schema.model!r} version {schema.version}"
    seen: set[str] = set()
    batch: int | None = None
    for tensor in tensors:
        spec = schema.inputs.get(tensor.name)
        if spec is None:
            known = ", ".join(repr(n) for n in schema.inputs)
            raise InvalidRequest(f"{what} has no input {tensor.name!r} (its inputs: {known})")
        where = f"{what} input {tensor.name!r}"
        if tensor.name in seen:
            raise InvalidRequest(f"{where} is given twice")
        seen.add(tensor.name)
        if tensor.datatype != spec.datatype:
            raise InvalidRequest(f"{where}: expected datatype {spec.datatype}, got {tensor.datatype!r}"[:300])
        expected = schema.expected_shape(spec)
        shape = tensor.shape
        if len(shape) != len(expected) or any(e not in (-1, g) for e, g in zip(expected, shape, strict=True)):
            limit = f" with batch <= {schema.max_batch_size}" if schema.max_batch_size > 0 else ""
            raise InvalidRequest(f"{where}: expected shape {_fmt(expected)}{limit}, got {_fmt(shape)}")
        if schema.max_batch_size > 0:
            if shape[0] > schema.max_batch_size:
                raise InvalidRequest(
                    f"{where}: batch size {shape[0]} exceeds the model's max_batch_size {schema.max_batch_size}"
                )
            if batch is not None and shape[0] != batch:
                raise InvalidRequest(f"{where}: batch size {shape[0]} differs from the other inputs' {batch}")
            batch = shape[0]
        elements = math.prod(shape)
        if elements > max_elements:
            raise TooLarge(f"{where}: {elements} elements exceed the gateway's limit of {max_elements}")
        size = DTYPE_BYTES.get(spec.datatype)
        if tensor.byte_size is not None and size is not None and tensor.byte_size != elements * size:
            raise InvalidRequest(
                f"{where}: shape {_fmt(shape)} of {spec.datatype} needs {elements * size} bytes, "
                f"got {tensor.byte_size}"
            )
        if tensor.data_count is not None and tensor.data_count != elements:
            raise InvalidRequest(
                f"{where}: shape {_fmt(shape)} needs {elements} values, got {tensor.data_count}"
            )
    missing = [n for n, s in schema.inputs.items() if n not in seen and not s.optional]
    if missing:
        spec = schema.inputs[missing[0]]
        raise InvalidRequest(
            f"{what}: input {spec.name!r} is missing (expected {spec.datatype} {_fmt(schema.expected_shape(spec))})"
        )
    return batch if batch is not None else 1
