"""A thread pool that belongs to one process.

Jobs often build their client once and then fork worker processes. A fork copies the pool object but none of
its threads, so work submitted in the child would wait forever; the child starts a pool of its own instead,
and only the process that started a pool shuts it down.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ProcessPool"]


class ProcessPool:
    """A lazily started :class:`~concurrent.futures.ThreadPoolExecutor`, started again in a forked child."""

    def __init__(self, thread_name_prefix: str) -> None:
        self._prefix = thread_name_prefix
        self._pool: ThreadPoolExecutor | None = None
        self._owner = 0

    def get(self, workers: int) -> ThreadPoolExecutor:
        """This process's pool (``workers`` threads when it has to be started)."""
        if self._pool is None or self._owner != os.getpid():
            self._pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix=self._prefix)
            self._owner = os.getpid()
        return self._pool

    def shutdown(self) -> None:
        """Wait for the work in flight and stop the threads (only in the process that started them)."""
        pool, self._pool = self._pool, None
        if pool is not None and self._owner == os.getpid():
            pool.shutdown(wait=True)
