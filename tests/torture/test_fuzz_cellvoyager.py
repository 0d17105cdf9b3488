"""CellVoyager measurements, fuzzed: random records map one to one, damaged XML is a clear error.

Bounded example counts in ``make test``; ``make fuzz`` runs the larger counts (see ``examples``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcsfs.errors import PlateCollisionError, PlateFormatError
from hcsfs.naming import PlaneKey, format_well
from hcsfs.sources.cellvoyager import CellVoyagerSource
from tests.sources.generate_cellvoyager import Channel, Rec, err_record, mlf_text, write_measurement
from tests.torture.conftest import examples

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# (row, column, field, z, t, timeline, action, ch): zeros and rows/columns beyond a 16 x 24 plate too.
_records = st.lists(st.tuples(st.integers(0, 17), st.integers(1, 25), st.integers(0, 3), st.integers(1, 3),
                              st.integers(1, 2), st.integers(1, 2), st.integers(1, 2), st.integers(1, 3)),
                    min_size=1, max_size=12)


def _flat_channels(records: list[Rec]) -> dict[tuple[int, int, int], int]:
    """The documented rule: w = Ch when each Ch has one (timeline, action), else (timeline, action, Ch)
    numbered 1.. in sorted order."""
    sources = sorted({(r.timeline, r.action, r.ch) for r in records})
    groups: dict[int, set[tuple[int, int]]] = {}
    for timeline, action, ch in sources:
        groups.setdefault(ch, set()).add((timeline, action))
    if all(len(g) == 1 for g in groups.values()):
        return {s: s[2] for s in sources}
    return {s: i for i, s in enumerate(sources, start=1)}


def _outcome(records: list[Rec]) -> tuple[type[Exception] | None, dict[PlaneKey, str]]:
    """What opening must do, record by record in file order: the first record outside the 16 x 24
    plate (or with FieldIndex 0) is a format error, the first second file for one name a collision."""
    flat = _flat_channels(records)
    planes: dict[PlaneKey, str] = {}
    for r in records:
        if not (1 <= r.row <= 16 and 1 <= r.column <= 24 and r.field >= 1):
            return PlateFormatError, planes
        key = PlaneKey(format_well(r.row, r.column), r.field, flat[(r.timeline, r.action, r.ch)], r.z, r.t)
        if key in planes:
            return PlateCollisionError, planes
        planes[key] = r.file
    return None, planes


_errors = st.lists(st.tuples(st.integers(1, 16), st.integers(1, 24)), max_size=2)


@settings(max_examples=examples(40, 2_000), deadline=None, suppress_health_check=SLOW)
@given(_records, _errors, st.binary(max_size=40))
def test_random_records_map_one_to_one(raw: list[tuple[int, ...]], errors: list[tuple[int, int]],
                                       junk: bytes) -> None:
    records = [Rec(r, c, f, ch, z=z, t=t, timeline=tl, action=a, plate=f"p{i}")
               for i, (r, c, f, z, t, tl, a, ch) in enumerate(raw)]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_measurement(root, records, rows=16, columns=24, channels=[Channel(ch) for ch in (1, 2, 3)],
                          errors=[err_record(r, c, f"AF Error {i}") for i, (r, c) in enumerate(errors)])
        failure, planes = _outcome(records)
        try:
            source = CellVoyagerSource(root)
        except (PlateFormatError, PlateCollisionError) as exc:
            assert type(exc) is failure, exc
            assert ("line" if failure is PlateFormatError else ".tif") in str(exc)
        else:
            assert failure is None and len(planes) == len(records)
            assert set(source.keys()) == set(planes)
            for key, name in planes.items():
                assert source.path_of(key).name == name
            assert len(source.describe().extra["acquisition_errors"]) == len(errors)
        text = mlf_text([r.xml() for r in records]).encode()
        (root / "MeasurementData.mlf").write_bytes(text[: len(text) // 2] + junk)  # a damaged .mlf
        try:
            CellVoyagerSource(root)
        except (PlateFormatError, PlateCollisionError):
            pass
