"""Run generator chunks in worker processes: the one way every data generator here parallelises."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

__all__ = ["map_ordered"]

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(
    function: Callable[[T], R], tasks: Sequence[T], *, jobs: int, chunksize: int = 1
) -> Iterator[R]:
    """Yield ``function(task)`` for every task, in order, on up to ``jobs`` worker processes.

    Workers are spawned, not forked: a build process has torch's thread pools loaded, and forking a threaded
    process can deadlock. An executor, not ``multiprocessing.Pool``: a worker that dies raises
    ``BrokenProcessPool`` instead of hanging the build (Pool.terminate waits forever on dead workers).
    ``function`` must be importable (module level), as spawned workers re-import it.
    """
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        yield from pool.map(function, tasks, chunksize=chunksize)
