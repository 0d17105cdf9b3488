"""Decode the next plane while a reader consumes this one.

Readers of a plate mostly go in name order (``cp -r``, Fiji's image sequences, CellProfiler's
file lists), and name order is natural plate order: t, then z, then channel, then site vary fastest.
When an encoded plane is opened, its successor in that order is decoded in the background, so the
decode of plane N+1 overlaps the transfer of plane N. One background worker, at most one plane
waiting: random access wastes at most one decode per open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from hcsfs.naming import PlaneKey

__all__ = ["Prefetcher", "successors"]

log = logging.getLogger("hcsfs.fs")


def successors(key: PlaneKey) -> Iterator[PlaneKey]:
    """The planes that may follow ``key`` in name order, nearest first (same well)."""
    if isinstance(key.t, int):
        yield key.replace(t=key.t + 1)
    if isinstance(key.z, int):
        yield key.replace(z=key.z + 1, t=1)
    if isinstance(key.channel, int):
        yield key.replace(channel=key.channel + 1, z=1, t=1)
    if isinstance(key.site, int):
        yield key.replace(site=key.site + 1, channel=1, z=1, t=1)


class Prefetcher:
    """Runs at most one background decode at a time; later requests replace a waiting one."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hcsfs-prefetch")
        self._lock = threading.Lock()
        self._waiting: Callable[[], object] | None = None
        self._running = False

    def submit(self, load: Callable[[], object]) -> None:
        """Schedule ``load`` (never blocks; replaces a load that has not started)."""
        with self._lock:
            self._waiting = load
            if self._running:
                return
            self._running = True
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                load, self._waiting = self._waiting, None
                if load is None:
                    self._running = False
                    return
            try:
                load()
            except Exception as exc:  # a prefetch that fails costs nothing; the real read reports it
                log.debug("prefetch failed: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._waiting = None
        self._pool.shutdown(wait=True, cancel_futures=True)
