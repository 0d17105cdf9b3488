from __future__ import annotations

import threading
import time

import pytest

from hcsfs.cache import ByteLRU, parse_byte_size


def test_parse_byte_size() -> None:
    assert parse_byte_size("512M") == 512 << 20
    assert parse_byte_size("2G") == parse_byte_size("2GiB") == 2 << 30
    assert parse_byte_size("1.5k") == 1536
    assert parse_byte_size("4096") == 4096
    with pytest.raises(ValueError, match="not a size"):
        parse_byte_size("lots")


def test_bounded_in_bytes_least_recently_used_goes_first() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(100, len)
    cache.put("a", b"x" * 40)
    cache.put("b", b"x" * 40)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", b"x" * 40)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    stats = cache.statistics()
    assert stats.current_bytes == 80 <= stats.capacity_bytes and stats.evictions == 1


def test_values_larger_than_the_budget_are_not_kept() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(10, len)
    assert cache.get_or_load("big", lambda: b"x" * 11) == b"x" * 11
    assert cache.get("big") is None and cache.statistics().current_bytes == 0


def test_single_flight_loads_once_for_concurrent_readers() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000, len)
    calls = []
    gate = threading.Event()

    def load() -> bytes:
        calls.append(1)
        gate.wait(5)
        return b"value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", load)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == [b"value"] * 8 and len(calls) == 1
    assert cache.statistics().misses == 1


def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000, len)

    def fail() -> bytes:
        raise OSError("chunk is corrupt")

    with pytest.raises(OSError, match="corrupt"):
        cache.get_or_load("k", fail)
    assert cache.get_or_load("k", lambda: b"ok") == b"ok"
