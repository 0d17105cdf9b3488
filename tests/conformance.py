"""The conformance suite every PlateSource passes. Subclass it and provide the two fixtures.

``source`` is the source under test; ``expected`` maps every key it must serve to the plane's array.
"""

from __future__ import annotations

import numpy as np
import pytest

from hcsfs.errors import PlaneNotFoundError
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.sources.base import PlaneInfo, PlateSource, plate_summary
from hcsfs.sources.views import SelectedSource, WellIndex, WellSource, parse_selection

CAPABILITIES = ("blocking_info", "caches_planes", "planes_in_memory", "frozen")


class SourceConformance:
    def test_declared_fast_paths_agree_with_info(
        self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]
    ) -> None:
        """``info_ready`` (metadata known, no I/O) answers None or exactly what ``info`` says; a source
        whose ``info`` does no I/O answers every plane at once."""
        for flag in CAPABILITIES:
            assert isinstance(getattr(source, flag), bool), flag  # declared, not guessed
        for key in expected:
            info = source.info(key)
            answer = source.info_ready(key)
            assert answer is None or answer == info
            if not source.blocking_info:
                assert answer == info

    def test_listed_sizes_and_times_are_those_of_info(
        self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]
    ) -> None:
        """What a listing shows of each plane (``listed``, the fast path) is what ``info`` says."""
        listed = list(source.listed())
        assert [key for key, _, _ in listed] == sorted(expected, key=sort_key)
        for key, size, mtime_ns in listed:
            info = source.info(key)
            assert (size, mtime_ns) == (info.size, info.mtime_ns), key

    def test_wells_and_well_keys_agree_with_keys(
        self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]
    ) -> None:
        ordered = sorted(expected, key=sort_key)
        wells = source.wells()
        if wells is not None:
            assert sorted(wells, key=lambda w: sort_key(PlaneKey(w))) == sorted(
                {k.well for k in expected}, key=lambda w: sort_key(PlaneKey(w)))
        for well in {k.well for k in expected}:
            assert list(source.well_keys(well)) == [k for k in ordered if k.well == well]

    def test_views_forward_every_capability(
        self, source: PlateSource, expected: dict[PlaneKey, np.ndarray]
    ) -> None:
        """``--select`` and ``/.by-well/`` views declare what their source declares and answer its
        fast path inside the view (issue 14: views used to drop them)."""
        first = min(expected, key=sort_key)
        views = [SelectedSource(source, parse_selection([f"well={first.well}"])),
                 WellSource(source, WellIndex(source), first.well)]
        inside = [k for k in sorted(expected, key=sort_key) if k.well == first.well]
        outside = [k for k in expected if k.well != first.well]
        for key in inside:
            source.info(key)  # metadata read: a source that keeps it answers info_ready from now on
        for view in views:
            assert isinstance(view, PlateSource)
            for flag in CAPABILITIES:
                assert getattr(view, flag) == getattr(source, flag), (type(view).__name__, flag)
            assert list(view.keys()) == inside
            assert list(view.listed()) == [e for e in source.listed() if e[0].well == first.well]
            for key in inside:
                assert view.info_ready(key) == source.info_ready(key)
            for key in outside[:3]:
                assert view.info_ready(key) is None
                with pytest.raises(PlaneNotFoundError):
                    view.info(key)

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
