"""Inference results and their provenance."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["InferResult", "Provenance", "write_provenance"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Provenance:
    """Where a result came from: enough to reproduce it.

    ``via`` says how it was obtained: ``"server"`` (a configured server), ``"embedded_triton"`` or
    ``"onnxruntime"`` (a fallback).
    """

    model: str
    version: str
    sha256: str | None
    server: str
    via: str = "server"

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-friendly copy."""
        return asdict(self)


class InferResult(Mapping[str, npt.NDArray[Any]]):
    """The outputs of one inference, by name, with their :class:`Provenance`.

    Behaves as a read-only ``dict[str, np.ndarray]``.
    """

    __slots__ = ("_outputs", "provenance")

    def __init__(self, outputs: Mapping[str, npt.NDArray[Any]], *, provenance: Provenance) -> None:
        self._outputs = dict(outputs)
        self.provenance = provenance

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        try:
            return self._outputs[name]
        except KeyError:
            msg = (
                f"model {self.provenance.model!r} returned no output {name!r}; "
                f"outputs are {sorted(self._outputs)}"
            )
            raise KeyError(msg) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def __repr__(self) -> str:
        shapes = {name: tuple(array.shape) for name, array in self._outputs.items()}
        return f"InferResult({shapes}, provenance={self.provenance})"

    def slice(self, start: int, stop: int) -> InferResult:
        """Rows ``start:stop`` of every output (copies, so callers never share memory)."""
        return InferResult(
            {name: np.array(array[start:stop]) for name, array in self._outputs.items()},
            provenance=self.provenance,
        )


def write_provenance(
    target: dict[str, Any] | str | Path,
    provenances: Mapping[str, Provenance] | list[Provenance],
) -> dict[str, Any]:
    """Record the provenance of a job's inferences in its output metadata.

    ``target`` is a metadata dict (e.g. a ROOT file's or Parquet schema's key/value metadata; updated in
    place under the key ``"hepsonic_provenance"`` as a JSON string) or a path (a JSON file is written).
    Identical entries are recorded once. Returns the provenance record.
    """
    items = provenances.values() if isinstance(provenances, Mapping) else provenances
    unique = sorted({json.dumps(p.as_dict(), sort_keys=True) for p in items})
    record = {"hepsonic_provenance": [json.loads(entry) for entry in unique]}
    if isinstance(target, dict):
        target["hepsonic_provenance"] = json.dumps(record["hepsonic_provenance"], sort_keys=True)
    else:
        Path(target).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
