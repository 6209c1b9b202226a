"""Triton system shared memory for servers on the same machine, with clean-up even after a crash.

Tensors are written into a POSIX shared-memory region registered with the server; the request carries
only offsets. Region names embed the owner's PID (``hepsonic_client_<pid>_<random>_<n>``): regions are
unregistered and unlinked on :meth:`SharedMemory.close` and at interpreter exit, and
:func:`sweep_stale_regions` (run whenever a :class:`SharedMemory` is created) unlinks the regions of
processes that died without cleaning up (SIGKILL, segfault, OOM).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.utils.shared_memory as triton_shm

from ._client_types import NUMPY_OF_DATATYPE
from ._exceptions import HepsonicError, InferenceError
from ._transport import Array, ModelMetadata, Reply, ShmBinding, Transport

__all__ = ["SharedMemory", "SharedMemoryRefused", "sweep_stale_regions"]

log = logging.getLogger("hepsonic_client")

_SHM_DIR = Path("/dev/shm")
_PREFIX = "hepsonic_client_"
_NAME = re.compile(r"^hepsonic_client_(\d+)_[0-9a-f]+_\d+$")
_ALIGN = 64


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_regions(directory: Path = _SHM_DIR) -> list[str]:
    """Unlink hepsonic shared-memory regions whose owning process is gone; returns their names."""
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                path.unlink()
                removed.append(path.name)
    if removed:
        log.warning("hepsonic: removed %d stale shared-memory regions of dead processes", len(removed))
    return removed


def _aligned(size: int) -> int:
    return (size + _ALIGN - 1) // _ALIGN * _ALIGN


class SharedMemoryRefused(HepsonicError):
    """The server answered that it does not take shared-memory regions (the gateway, which spreads requests over
    replicas, does not); :class:`~hepsonic_client.Client` then sends that server's tensors in the requests."""


class _Region:
    def __init__(self, transport: Transport, byte_size: int, index: int, token: str) -> None:
        self.owner = os.getpid()
        self.name = f"{_PREFIX}{self.owner}_{token}_{index}"
        self.key = f"/{self.name}"
        self.byte_size = byte_size
        self.transport = transport
        self.handle = triton_shm.create_shared_memory_region(self.name, self.key, byte_size, create_only=True)
        try:
            transport.register_shared_memory(self.name, self.key, byte_size, timeout=10.0)
        except InferenceError as exc:  # an answer, not a failure on the way: it does not take regions
            triton_shm.destroy_shared_memory_region(self.handle)
            raise SharedMemoryRefused(str(exc), server=transport.address) from exc
        except BaseException:
            triton_shm.destroy_shared_memory_region(self.handle)
            raise

    def release(self) -> None:
        with contextlib.suppress(HepsonicError, NotImplementedError):
            self.transport.unregister_shared_memory(self.name, timeout=5.0)
        with contextlib.suppress(Exception):
            triton_shm.destroy_shared_memory_region(self.handle)


class SharedMemory:
    """Per-thread shared-memory regions, one per server, grown on demand and freed on close/exit."""

    def __init__(self) -> None:
        sweep_stale_regions()
        self._token = uuid.uuid4().hex[:12]
        self._local = threading.local()
        self._regions: list[_Region] = []
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    @property
    def region_names(self) -> list[str]:
        """Names of the regions currently held."""
        with self._lock:
            return [r.name for r in self._regions if r.owner == os.getpid()]

    def _region(self, transport: Transport, byte_size: int) -> _Region:
        # Keyed by process too: a forked child inherits this thread's regions, and writing into the parent's
        # region while the parent does would swap their tensors. The child makes its own.
        mine: dict[str, _Region] = self._local.__dict__.setdefault(f"regions_{os.getpid()}", {})
        region = mine.get(transport.address)
        if region is not None and region.byte_size >= byte_size:
            return region
        with self._lock:
            if region is not None:
                self._regions.remove(region)
                region.release()
            region = _Region(transport, max(byte_size, 1 << 16), len(self._regions), self._token)
            self._regions.append(region)
        mine[transport.address] = region
        return region

    def infer(
        self,
        transport: Transport,
        model: str,
        inputs: Mapping[str, Array],
        *,
        version: str,
        outputs: Sequence[str] | None,
        timeout: float | None,
        metadata: ModelMetadata | None,
    ) -> Reply:
        """One inference with inputs and (when their shapes are known ahead) outputs in shared memory."""
        out_shapes = self._output_shapes(inputs, outputs, metadata)
        if out_shapes is None:  # output sizes unknown ahead: plain request
            return transport.infer(model, inputs, version=version, outputs=outputs, timeout=timeout)
        offset = 0
        input_places = []
        for name, array in inputs.items():
            input_places.append((name, offset, array.nbytes))
            offset += _aligned(array.nbytes)
        output_places = []
        for name, (dtype, shape) in out_shapes.items():
            size = int(np.prod(shape)) * dtype.itemsize
            output_places.append((name, offset, size))
            offset += _aligned(size)
        region = self._region(transport, offset)
        for (_, start, _), array in zip(input_places, inputs.values(), strict=True):
            triton_shm.set_shared_memory_region(region.handle, [array], offset=start)
        binding = ShmBinding(region=region.name, inputs=tuple(input_places), outputs=tuple(output_places))
        reply = transport.infer(
            model, inputs, version=version, outputs=list(out_shapes), timeout=timeout, shm=binding
        )
        decoded = {
            name: np.array(triton_shm.get_contents_as_numpy(region.handle, dtype, shape, offset=start))
            for (name, start, _), (dtype, shape) in zip(output_places, out_shapes.values(), strict=True)
        }
        return Reply(
            outputs=decoded, model_version=reply.model_version, sha256=reply.sha256, server=reply.server
        )

    @staticmethod
    def _output_shapes(
        inputs: Mapping[str, Array], outputs: Sequence[str] | None, metadata: ModelMetadata | None
    ) -> dict[str, tuple[np.dtype[Any], tuple[int, ...]]] | None:
        if metadata is None or not inputs:
            return None
        batch = next(iter(inputs.values())).shape[0]
        shapes = {}
        for tensor in metadata.outputs:
            if outputs is not None and tensor.name not in outputs:
                continue
            dims = [batch if i == 0 and d == -1 else d for i, d in enumerate(tensor.shape)]
            dtype = NUMPY_OF_DATATYPE.get(tensor.datatype)
            if dtype is None or any(d < 0 for d in dims):
                return None
            shapes[tensor.name] = (dtype, tuple(dims))
        return shapes

    def close(self) -> None:
        """Unregister and unlink every region. Idempotent; also runs at interpreter exit."""
        with self._lock:
            regions, self._regions = self._regions, []
            self._closed = True
        for region in regions:
            if region.owner == os.getpid():  # a forked child leaves the parent's regions to the parent
                region.release()
        atexit.unregister(self.close)
