"""The conformance suite every PlateSource passes. Subclass it and provide the two fixtures.

``source`` is the source under test; ``expected`` maps every key it must serve to the plane's array.
"""

from __future__ import annotations

import numpy as np
import pytest

from hcsfs.errors import PlaneNotFoundError
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.sources.base import PlaneInfo, PlateSource, plate_summary


class SourceConformance:
    def test_declared_fast_paths_agree_with_info(
        self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]
    ) -> None:
        """``info_ready`` (metadata known, no I/O) answers None or exactly what ``info`` says."""
        ready = getattr(source, "info_ready", None)
        for key in expected:
            info = source.info(key)
            answer = ready(key) if ready is not None else None
            assert answer is None or answer == info
        for flag in ("planes_in_memory", "caches_planes"):
            assert isinstance(getattr(source, flag, False), bool)

    def test_is_a_plate_source(self, source: PlateSource) -> None:
        assert isinstance(source, PlateSource)
        assert isinstance(source.format_name, str) and isinstance(source.blocking_info, bool)

    def test_keys_are_exactly_the_planes_in_natural_order(
        self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]
    ) -> None:
        keys = list(source.keys())
        assert keys == sorted(expected, key=sort_key)

    def test_planes_read_back(self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]) -> None:
        for key, array in expected.items():
            np.testing.assert_array_equal(source.read_plane(key), array)

    def test_info_is_consistent(self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]) -> None:
        for key, array in expected.items():
            info = source.info(key)
            assert isinstance(info, PlaneInfo) and info.key == key and info.size > 0
            if info.layout is not None:
                assert info.layout.shape == array.shape and info.size == info.layout.size
            else:
                assert info.passthrough is not None and info.passthrough.stat().st_size == info.size
            shape, dtype, _ = source.plane_format(key)
            assert shape == array.shape and np.dtype(dtype) == array.dtype

    def test_unknown_plane_is_not_found(self, source: PlateSource) -> None:
        with pytest.raises(PlaneNotFoundError):
            source.info(PlaneKey("ZZ99", 999))
        with pytest.raises(PlaneNotFoundError):
            source.read_plane(PlaneKey("ZZ99", 999))

    def test_summary(self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]) -> None:
        summary = plate_summary(source)
        assert summary["planes"] == len(expected)
        assert summary["wells"] == sorted({k.well for k in expected}, key=lambda w: sort_key(PlaneKey(w)))
        assert summary["format"] == source.format_name
