"""An optional on-disk cache of decoded chunks (``--disk-cache DIR --disk-cache-size N``), bounded in bytes.

Meant for plates on object storage: a chunk fetched once is read from local disk by later mounts and
by other processes on the same machine. Entries are the decoded chunk as ``.npy`` (no decode on a
hit), named by a hash of the plate (its URL and root metadata's modification time, so a rewritten plate
gets fresh entries), the array and the chunk coordinates. Files are written under a temporary name and
renamed into place, so a reader never sees half an entry; the least recently used files are removed
once the directory holds more than its budget. Several processes may share a directory: each keeps
its own index and a file another process removed is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from hcsfs.cache import CacheStatistics

__all__ = ["DiskChunkCache"]

log = logging.getLogger(__name__)

_SUFFIX = ".npy"


class DiskChunkCache:
    """Decoded chunks as files under ``directory``, at most ``max_bytes`` in all (LRU)."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, namespace: str) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the disk cache size must be positive, not {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._namespace = hashlib.sha256(namespace.encode()).hexdigest()[:16]
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: OrderedDict[Path, int] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = self.evictions = 0
        entries = []
        for path in self.directory.glob(f"*/*{_SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_atime_ns, path, stat.st_size))
        for _, path, size in sorted(entries):
            self._files[path] = size
            self._bytes += size
        self._evict()

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.directory / self._namespace / f"{digest[:32]}{_SUFFIX}"

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # absent, removed by another process, or damaged: a miss
            with self._lock:
                self.misses += 1
                size = self._files.pop(path, None)
                if size is not None:
                    self._bytes -= size
            return None
        with self._lock:
            self.hits += 1
            if path in self._files:
                self._files.move_to_end(path)
        return data

    def put(self, key: str, data: np.ndarray) -> None:
        path = self._path(key)
        size = int(data.nbytes) + 128
        if size > self.max_bytes:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(data), allow_pickle=False)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk costs speed, never a read
            log.warning("disk cache %s: cannot write %s: %s", self.directory, path.name, exc)
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            old = self._files.pop(path, None)
            self._bytes += size - (old or 0)
            self._files[path] = size
            self._evict()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._files:
            path, size = self._files.popitem(last=False)
            self._bytes -= size
            self.evictions += 1
            try:
                path.unlink()
            except OSError:
                pass

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def statistics(self) -> CacheStatistics:
        with self._lock:
            return CacheStatistics(hits=self.hits, misses=self.misses, evictions=self.evictions,
                                   entries=len(self._files), current_bytes=self._bytes,
                                   capacity_bytes=self.max_bytes)
