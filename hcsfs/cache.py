"""A byte-bounded LRU cache for decoded planes and chunks, with single-flight loading.

Concurrent readers of the same key load it once: the first caller runs the loader, the others wait for
its result (or its exception). Values larger than the whole budget are returned but not kept.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ByteLRU", "CacheStatistics", "parse_byte_size", "DEFAULT_CACHE_BYTES"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_CACHE_BYTES = 1 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_byte_size(text: str | int) -> int:
    """``"512M"`` → 536870912; accepts K/M/G/T with optional ``i``/``B`` (``2GiB``, ``2G``, ``2048``)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 512M or 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """A snapshot of a cache's counters."""

    hits: int
    misses: int
    evictions: int
    entries: int
    current_bytes: int
    capacity_bytes: int


class ByteLRU(Generic[K, V]):
    """LRU cache bounded by the summed byte size of its values (thread-safe)."""

    def __init__(self, capacity_bytes: int, size_of: Callable[[V], int]) -> None:
        if capacity_bytes < 0:
            raise ValueError("cache capacity must be >= 0")
        self._capacity = capacity_bytes
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._loading: dict[K, Future[V]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def get(self, key: K) -> V | None:
        """The cached value, or ``None``; never loads."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return item[0]

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or the result of ``load()``, run once however many threads ask."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self._hits += 1
                return item[0]
            pending = self._loading.get(key)
            if pending is None:
                self._misses += 1
                future: Future[V] = Future()
                self._loading[key] = future
        if pending is not None:
            return pending.result()
        try:
            value = load()
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._loading[key]
            self._store(key, value)
        future.set_result(value)
        return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._store(key, value)

    def _store(self, key: K, value: V) -> None:
        nbytes = self._size_of(value)
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if nbytes > self._capacity:
            return
        self._items[key] = (value, nbytes)
        self._bytes += nbytes
        while self._bytes > self._capacity:
            _, (_, evicted) = self._items.popitem(last=False)
            self._bytes -= evicted
            self._evictions += 1

    def discard(self, key: K) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def statistics(self) -> CacheStatistics:
        with self._lock:
            return CacheStatistics(
                self._hits, self._misses, self._evictions, len(self._items), self._bytes,
                self._capacity,
            )
