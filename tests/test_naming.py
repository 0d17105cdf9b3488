from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hcsfs.errors import PlaneNameError
from hcsfs.naming import (
    PlaneKey,
    format_name,
    format_well,
    parse_name,
    parse_well,
    row_index,
    row_letters,
    sort_key,
)


def test_format_of_the_design_example() -> None:
    assert format_name(PlaneKey("A01", 1, 1, 1, 1)) == "A01_s001_w1_z001_t001.tif"
    assert PlaneKey("P24", 12, 10, 3, 100).name == "P24_s012_w10_z003_t100.tif"


def test_1536_well_rows_and_wide_plates() -> None:
    assert row_letters(27) == "AA" and row_letters(32) == "AF"
    assert row_index("AF") == 32 and row_index("A") == 1
    assert parse_name("AF48_s001_w1_z001_t001.tif").well == "AF48"
    assert format_well(67, 105) == "BO105"
    assert parse_well("BO105") == (67, 105)


def test_reduced_axes() -> None:
    key = parse_name("A01_s001_w1_zmax_t001.tif")
    assert key.z == "max"
    assert key.name == "A01_s001_w1_zmax_t001.tif"
    assert PlaneKey("A01").replace(z="mean").name == "A01_s001_w1_zmean_t001.tif"


def test_large_indexes_grow_past_padding() -> None:
    assert PlaneKey("A01", site=1234, t=1000).name == "A01_s1234_w1_z001_t1000.tif"
    assert parse_name("A01_s1234_w1_z001_t1000.tif").site == 1234


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("A1_s001_w1_z001_t001.tif", "does not match"),
        ("A01_s01_w1_z001_t001.tif", "not canonical"),
        ("A01_s0001_w1_z001_t001.tif", "not canonical"),
        ("A01_s001_w01_z001_t001.tif", "not canonical"),
        ("A01_s000_w1_z001_t001.tif", ">= 1"),
        ("A01_s001_w1_z001.tif", "does not match"),
        ("A01_s001_w1_z001_t001.TIF", "does not match"),
        ("a01_s001_w1_z001_t001.tif", "does not match"),
        ("A001_s001_w1_z001_t001.tif", "not canonical"),
        ("ABC01_s001_w1_z001_t001.tif", "does not match"),
        ("A01_s001_w1_zMAX_t001.tif", "does not match"),
        ("A01_s001_w1_z001_t001.tif.bak", "does not match"),
        ("", "does not match"),
    ],
)
def test_parse_rejects_with_a_reason(name: str, fragment: str) -> None:
    with pytest.raises(PlaneNameError, match=fragment):
        parse_name(name)


def test_key_validation() -> None:
    with pytest.raises(PlaneNameError):
        PlaneKey("A01", site=0)
    with pytest.raises(PlaneNameError):
        PlaneKey("A1")
    with pytest.raises(PlaneNameError):
        PlaneKey("A01", z="Max")
    with pytest.raises(PlaneNameError):
        PlaneKey("A01", z=True)  # type: ignore[arg-type]


def test_natural_order() -> None:
    names = [
        "AA01_s001_w1_z001_t001.tif",
        "B01_s001_w1_z001_t001.tif",
        "A02_s001_w10_z001_t001.tif",
        "A02_s001_w2_z001_t001.tif",
        "A02_s001_w2_zmax_t001.tif",
        "A10_s001_w1_z001_t001.tif",
        "A02_s010_w1_z001_t001.tif",
    ]
    ordered = [k.name for k in sorted(map(parse_name, names), key=sort_key)]
    assert ordered == [
        "A02_s001_w2_z001_t001.tif",
        "A02_s001_w2_zmax_t001.tif",
        "A02_s001_w10_z001_t001.tif",
        "A02_s010_w1_z001_t001.tif",
        "A10_s001_w1_z001_t001.tif",
        "B01_s001_w1_z001_t001.tif",
        "AA01_s001_w1_z001_t001.tif",
    ]


indexes = st.one_of(st.integers(1, 100_000), st.from_regex(r"[a-z]{1,6}", fullmatch=True))
keys = st.builds(
    PlaneKey,
    well=st.builds(format_well, st.integers(1, 702), st.integers(1, 999)),
    site=indexes, channel=indexes, z=indexes, t=indexes,
)


@given(keys)
def test_format_parse_round_trip(key: PlaneKey) -> None:
    assert parse_name(format_name(key)) == key


@given(st.text(max_size=40))
def test_parse_never_crashes_and_accepts_only_canonical(text: str) -> None:
    try:
        key = parse_name(text)
    except PlaneNameError:
        return
    assert format_name(key) == text
