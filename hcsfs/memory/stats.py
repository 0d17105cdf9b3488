"""Counters for conversions and out-of-memory recovery, and the log-once rule for copies.

Every conversion is counted by (source, target, method); a copying method is logged once per pair
with its reason, so no host round trip is ever silent (issue 5).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hcsfs.memory.types import MemoryType

logger = logging.getLogger("hcsfs.memory")


class ConversionMethod(str, enum.Enum):
    """How :func:`~hcsfs.memory.convert` moved the data."""

    IDENTITY = "identity"  # same type, same device: the object itself
    DLPACK = "dlpack"  # zero-copy through __dlpack__ / from_dlpack
    CUDA_ARRAY_INTERFACE = "cuda_array_interface"  # zero-copy through __cuda_array_interface__
    TRANSFER = "transfer"  # one copy to where the target lives (upload, download, device to device)
    HOST_ROUND_TRIP = "host_round_trip"  # through a host numpy array: no zero-copy path existed

    @property
    def zero_copy(self) -> bool:
        return self in (ConversionMethod.IDENTITY, ConversionMethod.DLPACK,
                        ConversionMethod.CUDA_ARRAY_INTERFACE)

    def __str__(self) -> str:
        return self.value


class OomEvent(str, enum.Enum):
    """Steps of out-of-memory recovery, counted in :class:`MemoryStats`."""

    OOM_ERROR = "oom_errors"  # an out-of-memory error was recognised
    CLEANUP = "cleanups"  # cleanup_gpu_memory ran
    SPLIT = "splits"  # a stack was split in two halves along Z
    RETRY = "retries"  # a half was retried
    CPU_FALLBACK = "cpu_fallbacks"  # the function ran on the CPU instead
    RECOVERED = "recovered"  # a call that hit OOM finally returned a result
    FAILED = "failed"  # recovery gave up (OutOfMemoryRecoveryError)


Pair = tuple[MemoryType, MemoryType]


@dataclass(frozen=True)
class MemoryStats:
    """A snapshot of the counters (``hcsfs.memory.stats()``)."""

    conversions: Mapping[tuple[MemoryType, MemoryType, ConversionMethod], int] = field(
        default_factory=lambda: MappingProxyType({})
    )
    oom: Mapping[OomEvent, int] = field(default_factory=lambda: MappingProxyType({}))

    def count(self, method: ConversionMethod | None = None, pair: Pair | None = None) -> int:
        """Conversions, optionally only those by ``method`` and/or between ``pair``."""
        return sum(
            n
            for (src, dst, how), n in self.conversions.items()
            if (method is None or how is method) and (pair is None or (src, dst) == pair)
        )

    @property
    def host_round_trips(self) -> int:
        return self.count(ConversionMethod.HOST_ROUND_TRIP)

    @property
    def zero_copy(self) -> int:
        return sum(n for (_, _, how), n in self.conversions.items() if how.zero_copy)

    def __getitem__(self, event: OomEvent) -> int:
        return self.oom.get(event, 0)


_lock = threading.Lock()
_conversions: Counter[tuple[MemoryType, MemoryType, ConversionMethod]] = Counter()
_oom: Counter[OomEvent] = Counter()
_logged: set[tuple[MemoryType, MemoryType, ConversionMethod]] = set()


def record_conversion(
    source: MemoryType, target: MemoryType, method: ConversionMethod, reason: str = ""
) -> None:
    """Count one conversion; log a copying method the first time it happens for this pair."""
    key = (source, target, method)
    with _lock:
        _conversions[key] += 1
        first = not method.zero_copy and key not in _logged
        _logged.add(key)
    if first:
        level = logging.WARNING if method is ConversionMethod.HOST_ROUND_TRIP else logging.INFO
        logger.log(level, "%s -> %s: %s (%s); counted in hcsfs.memory.stats(), logged once",
                   source, target, method, reason or "no zero-copy path")


def record_oom(event: OomEvent) -> None:
    with _lock:
        _oom[event] += 1


def stats() -> MemoryStats:
    """The counters since start or the last :func:`reset_stats`."""
    with _lock:
        return MemoryStats(MappingProxyType(dict(_conversions)), MappingProxyType(dict(_oom)))


def reset_stats() -> None:
    """Zero the counters and forget which pairs were logged (tests call this)."""
    with _lock:
        _conversions.clear()
        _oom.clear()
        _logged.clear()
