"""Where the real ``tritonserver`` lives: the binary, libraries and python backend of the nvidia-pytriton wheel."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ._errors import TritonError

__all__ = ["TritonDistribution"]


@dataclass(frozen=True, kw_only=True)
class TritonDistribution:
    """Files of one Triton installation."""

    binary: Path
    libs: Path
    python_backend: Path
    stub: Path
    caches: Path

    @classmethod
    def from_pytriton(cls) -> TritonDistribution:
        """Locate Triton inside the installed ``nvidia-pytriton`` wheel (the ``triton`` extra)."""
        try:
            import pytriton  # noqa: PLC0415  (optional dependency, only the launcher needs it)
        except ImportError as exc:
            raise TritonError(
                "the embedded Triton needs the nvidia-pytriton wheel: pip install 'hepsonic[triton]'"
            ) from exc
        root = Path(pytriton.__file__).resolve().parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        dist = cls(
            binary=root / "bin" / "tritonserver",
            libs=root.parent.parent / "nvidia_pytriton.libs",
            python_backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
            caches=root / "caches",
        )
        for path in (dist.binary, dist.python_backend, dist.stub):
            if not path.exists():
                raise TritonError(f"incomplete nvidia-pytriton installation: {path} is missing")
        return dist

    def prepare_backends(self, target: Path) -> Path:
        """Make a ``--backend-directory`` whose python backend carries the stub for *this* Python.

        Triton looks for ``triton_python_backend_stub`` next to ``libtriton_python.so``; the wheel keeps one stub
        per Python version elsewhere, so we assemble the folder (as pytriton does).
        """
        python_dir = target / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for item in self.python_backend.iterdir():
            if item.is_file():
                _replace_with_copy(item, python_dir / item.name)
        _replace_with_copy(self.stub, python_dir / "triton_python_backend_stub")
        return target


def _replace_with_copy(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination`` through a rename, never writing into the old file.

    On a restart after a crash the previous Triton's stubs may still be running the old stub binary, and opening
    a running executable for writing fails (ETXTBSY, seen once in CI); a rename replaces the directory entry and
    leaves the running processes their inode.
    """
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.copy2(source, partial)
    partial.replace(destination)
