"""Serving one plane of a source: its info and an open file, without blocking when the source allows.

The answers follow the source's declared capabilities (:class:`~hcsfs.sources.base.PlateSource`):
metadata already known (``info_ready``) is answered at once, planes in memory are not prefetched, a
source with its own decoded-data cache gets no second one, and a frozen source's passed-through files
must not have changed since the mount began.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hcsfs.cache import ByteLRU
from hcsfs.errors import PlaneNotFoundError
from hcsfs.fs.answers import Answer, Blocking
from hcsfs.fs.prefetch import Prefetcher, successors
from hcsfs.planefile import EncodedFile, PassthroughFile, PlaneFile
from hcsfs.tiff import pixel_buffer

if TYPE_CHECKING:
    from hcsfs.naming import PlaneKey
    from hcsfs.sources.base import PlaneInfo, PlateSource

__all__ = ["PlaneServer"]


class PlaneServer:
    """Infos and open files of planes, for every source a mount shows (the plate, views, outputs)."""

    def __init__(self, cache_bytes: int, started_ns: int) -> None:
        self.pixel_cache: ByteLRU[tuple[int, PlaneKey, int], memoryview] = ByteLRU(cache_bytes, len)
        self.prefetcher = Prefetcher()
        self.started_ns = started_ns
        """A frozen source's file whose ctime is later than this changed while mounted. File systems
        may stamp from the coarse clock (a tick behind), so a change in the mount's first tick can go
        unnoticed; the other way round (a file written before the mount looking newer) cannot happen."""

    def info(self, source: PlateSource, key: PlaneKey) -> Answer[PlaneInfo]:
        info = source.info_ready(key)
        return info if info is not None else Blocking(lambda: source.info(key))

    def open(self, source: PlateSource, key: PlaneKey) -> Answer[PlaneFile]:
        """An open file of the plane: at once when its info is known (``open(2)`` of a local file whose
        dentry is cached costs microseconds, far less than a worker-thread trip), else in a worker."""
        info = source.info_ready(key)
        if info is None:
            return Blocking(lambda: self._opened(source, source.info(key)))
        return self._opened(source, info)

    def close(self) -> None:
        self.prefetcher.close()

    def _opened(self, source: PlateSource, info: PlaneInfo) -> PlaneFile:
        if info.passthrough is not None:
            since = self.started_ns if source.frozen else None
            return PassthroughFile(info.passthrough, info.size, unchanged_since_ns=since)
        assert info.layout is not None
        if not source.planes_in_memory:
            self._prefetch_after(source, info.key)
        return EncodedFile(info.layout, self.pixels(source, info))

    def pixels(self, source: PlateSource, info: PlaneInfo) -> Callable[[], memoryview]:
        """Loads the plane's pixel bytes (decoding it; through the mount's cache unless the source
        keeps decoded data itself, which would only be cached twice)."""
        assert info.layout is not None
        layout, key = info.layout, info.key

        def decode() -> memoryview:
            return pixel_buffer(layout, source.read_plane(key))

        if source.caches_planes:
            return decode
        return lambda: self.pixel_cache.get_or_load((id(source), key, info.mtime_ns), decode)

    def _prefetch_after(self, source: PlateSource, key: PlaneKey) -> None:
        """Decode the plane a sequential reader opens next, in the background."""

        def load() -> None:
            for candidate in successors(key):
                try:
                    info = source.info_ready(candidate) or source.info(candidate)
                except PlaneNotFoundError:
                    continue
                if info.layout is not None:
                    self.pixels(source, info)()
                return

        self.prefetcher.submit(load)
