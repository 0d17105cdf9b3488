"""Planes assembled from decoded chunks, with a byte-bounded cache shared by all planes of a chunk.

A chunk holding many planes (a whole well, a z-stack) is decoded once and every plane in it is then a
view into it. Only the chunks that intersect a plane are read; for a sharded array that is a partial
read of the shard (its index plus the inner chunks needed).

Missing chunks read as the array's fill value (zarr semantics: absent means "never written"). A chunk
that exists but cannot be read or decoded raises :class:`~hcsfs.errors.PlaneReadError` for the planes
that need it, logged with the chunk's path; nothing is cached for it, so every other plane stays
readable and a repaired chunk is read again next time.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hcsfs.cache import ByteLRU, CacheStatistics
from hcsfs.errors import PlaneReadError

if TYPE_CHECKING:
    from hcsfs.sources.omezarr.backends import ZarrArray, ZarrImpl
    from hcsfs.sources.omezarr.diskcache import DiskChunkCache
    from hcsfs.sources.omezarr.meta import ArrayMeta, Node

__all__ = ["ChunkReader", "PlaneRef"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlaneRef:
    """Where a plane lives: an array, and an index on every axis but y and x (``None`` there)."""

    array_path: Node
    meta: ArrayMeta
    index: tuple[int | None, ...]
    name: str  # the plane's flat name, for messages


class ChunkReader:
    """Reads planes through one zarr implementation and a cache of decoded chunks."""

    def __init__(self, impl: ZarrImpl, cache_bytes: int, *, max_open_arrays: int = 1024,
                 disk_cache: DiskChunkCache | None = None, concurrency: int = 8) -> None:
        self.impl = impl
        self._cache: ByteLRU[tuple[Node, tuple[int, ...]], np.ndarray] = ByteLRU(
            cache_bytes, lambda a: a.nbytes
        )
        self._arrays: OrderedDict[Node, ZarrArray] = OrderedDict()
        self._arrays_lock = threading.Lock()
        self._max_open = max_open_arrays
        self.disk_cache = disk_cache
        # A plane made of several chunks fetches them at once (on object storage each is a request).
        self._concurrency = max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None

    def statistics(self) -> CacheStatistics:
        return self._cache.statistics()

    def _array(self, ref: PlaneRef) -> ZarrArray:
        with self._arrays_lock:
            array = self._arrays.get(ref.array_path)
            if array is not None:
                self._arrays.move_to_end(ref.array_path)
                return array
        try:
            array = self.impl.open_array(ref.array_path, ref.meta.zarr_format, ref.meta.document or None)
        except Exception as exc:  # any implementation's metadata error: this plane only
            log.error("%s: cannot open array %s: %s", ref.name, ref.array_path, exc)
            raise PlaneReadError(f"{ref.name}: cannot open array {ref.array_path}: {exc}") from exc
        with self._arrays_lock:
            self._arrays[ref.array_path] = array
            while len(self._arrays) > self._max_open:
                self._arrays.popitem(last=False)
        return array

    def _load_chunk(self, ref: PlaneRef, coords: tuple[int, ...]) -> np.ndarray:
        meta = ref.meta
        region = tuple(
            slice(c * r, min((c + 1) * r, s))
            for c, r, s in zip(coords, meta.read_chunk, meta.shape, strict=True)
        )
        disk_key = f"{ref.array_path}|{','.join(map(str, coords))}"
        if self.disk_cache is not None:
            cached = self.disk_cache.get(disk_key)
            if cached is not None and cached.shape == tuple(r.stop - r.start for r in region):
                cached.setflags(write=False)
                return cached
        array = self._array(ref)
        try:
            data = array.read(region)
        except Exception as exc:  # codecs raise anything (OSError, RuntimeError, ValueError...)
            chunk = ref.array_path / meta.chunk_key(coords)
            log.error("%s: chunk %s could not be read: %s", ref.name, chunk, exc)
            raise PlaneReadError(f"{ref.name}: chunk {chunk} could not be read: {exc}") from exc
        if self.disk_cache is not None:
            self.disk_cache.put(disk_key, data)
        data.setflags(write=False)
        return data

    def _fetch_all(self, ref: PlaneRef, chunks: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The chunks of one plane, fetched concurrently when more than one is not cached yet."""
        if len(chunks) == 1 or self._concurrency == 1:
            return [self._cached(ref, c) for c in chunks]
        with self._arrays_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="hcsfs-zarr-chunk")
            pool = self._pool
        return list(pool.map(lambda c: self._cached(ref, c), chunks))

    def close(self) -> None:
        with self._arrays_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def read_plane(self, ref: PlaneRef) -> np.ndarray:
        """The 2-D plane (read-only; possibly a view into a cached chunk)."""
        meta = ref.meta
        spatial = [d for d, i in enumerate(ref.index) if i is None]
        y, x = spatial
        per_axis: list[range] = []
        for d, i in enumerate(ref.index):
            if i is None:
                per_axis.append(range(-(-meta.shape[d] // meta.read_chunk[d])))
            else:
                per_axis.append(range(i // meta.read_chunk[d], i // meta.read_chunk[d] + 1))
        within = tuple(
            slice(None) if i is None else i % meta.read_chunk[d] for d, i in enumerate(ref.index)
        )
        chunks = list(itertools.product(*per_axis))
        if len(chunks) == 1:
            block = self._cached(ref, chunks[0])
            return block[within]
        out = np.empty((meta.shape[y], meta.shape[x]), dtype=meta.dtype)
        for coords, chunk in zip(chunks, self._fetch_all(ref, chunks), strict=True):
            block = chunk[within]
            y0, x0 = coords[y] * meta.read_chunk[y], coords[x] * meta.read_chunk[x]
            out[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = block
        out.setflags(write=False)
        return out

    def _cached(self, ref: PlaneRef, coords: tuple[int, ...]) -> np.ndarray:
        return self._cache.get_or_load(
            (ref.array_path, coords), lambda: self._load_chunk(ref, coords)
        )
