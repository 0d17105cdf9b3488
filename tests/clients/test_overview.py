"""hcsfs.overview without a mount: geometry from metadata only, tile placement, stretch, PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hcsfs import MemoryPlate, PlaneKey
from hcsfs.overview import (
    EMPTY_WELL_VALUE,
    GAP_VALUE,
    downsample,
    overview_geometry,
    overview_png,
    render_overview,
)
from hcsfs.tiff import encode_tiff, plan_tiff
from tests.plates import memory_plate, plate_keys


class CountingPlate(MemoryPlate):
    """Counts pixel reads, so a test can prove the geometry needs none."""

    reads = 0

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        self.reads += 1
        return super().read_plane(key)


def test_geometry_reads_no_pixels_and_fits_a_96_well_grid() -> None:
    plate = CountingPlate(pixel_size_um=0.5)
    for key in plate_keys(("A01", "B03", "H12"), sites=4, channels=2):
        plate.add(key, np.zeros((100, 120), np.uint16))
    geometry = overview_geometry(plate)
    assert plate.reads == 0
    assert (geometry.plate_rows, geometry.plate_cols) == (8, 12)
    assert (geometry.site_rows, geometry.site_cols) == (2, 2)
    assert geometry.factor == 1 and geometry.tile_shape == (100, 120)
    assert geometry.well_shape == (2 * 100 + 1, 2 * 120 + 1)
    assert geometry.shape == (8 * 201 + 9 * 4, 12 * 241 + 13 * 4)
    assert geometry.channels == (1, 2) and (geometry.z, geometry.t) == (1, 1)
    assert geometry.pixel_size_um == 0.5
    # The served TIFF's size is known from the geometry alone.
    assert plan_tiff(geometry.shape, geometry.dtype).size > geometry.nbytes


@pytest.mark.parametrize(("wells", "grid"), [
    (("A01",), (8, 12)), (("H12", "I01"), (16, 24)), (("P24",), (16, 24)), (("AF48",), (32, 48)),
    (("BO105",), (67, 105)),
])
def test_plate_grid_is_the_smallest_standard_plate(wells: tuple[str, ...], grid: tuple[int, int]) -> None:
    plate = MemoryPlate()
    for well in wells:
        plate.add(PlaneKey(well), np.zeros((8, 8), np.uint8))
    geometry = overview_geometry(plate)
    assert (geometry.plate_rows, geometry.plate_cols) == grid


def test_big_plates_are_downsampled_to_fit() -> None:
    plate = MemoryPlate()
    for site in range(1, 10):
        plate.add(PlaneKey("AF48", site), np.zeros((2160, 2560), np.uint16))
    geometry = overview_geometry(plate, max_side=4096)
    assert (geometry.site_rows, geometry.site_cols) == (3, 3)
    assert max(geometry.shape) <= 4096
    # 48 x 3 sites across 4096 px less 49 well gaps and 96 site gaps: 26 px a site, 2560 / 26 -> 99
    assert geometry.factor == 99
    assert geometry.tile_shape == (2160 // 99, 2560 // 99)
    assert geometry.shape == (32 * (3 * 21 + 2) + 33 * 4, 48 * (3 * 25 + 2) + 49 * 4)


def test_geometry_of_an_empty_plate_is_an_error() -> None:
    with pytest.raises(ValueError, match="no planes"):
        overview_geometry(MemoryPlate())


def test_first_z_and_t_are_drawn() -> None:
    plate = MemoryPlate()
    for z in (1, 2):
        for t in (1, 2):
            plate.add(PlaneKey("A01", 1, 1, z, t), np.full((4, 4), 10 * z + t, np.uint16))
    plate.add(PlaneKey("A01", 1, 1, "max", 1), np.full((4, 4), 99, np.uint16))
    plate.add(PlaneKey("A02", 1, 1, 1, 1), np.full((4, 4), 0, np.uint16))
    geometry = overview_geometry(plate)
    assert (geometry.z, geometry.t) == (1, 1)
    picture = render_overview(plate, 1, geometry)
    y, x = geometry.site_origin("A01", 1)
    assert picture[y, x] == 255  # A01 z1 t1 = 11 is the brightest drawn, A02 = 0 the darkest
    y, x = geometry.site_origin("A02", 1)
    assert picture[y, x] == 1


def test_render_places_sites_and_stretches_per_channel() -> None:
    plate = MemoryPlate()
    values = {("A01", 1): 100, ("A01", 2): 200, ("A01", 3): 300, ("B02", 1): 400}
    for (well, site), value in values.items():
        plate.add(PlaneKey(well, site, 1), np.full((6, 8), value, np.uint16))
        plate.add(PlaneKey(well, site, 2), np.full((6, 8), value // 100, np.uint8))
    geometry = overview_geometry(plate)
    assert (geometry.site_rows, geometry.site_cols) == (2, 2)
    for channel in (1, 2):
        picture = render_overview(plate, channel, geometry)
        assert picture.shape == geometry.shape and picture.dtype == np.uint8
        drawn = {}
        for (well, site) in values:
            y, x = geometry.site_origin(well, site)
            tile = picture[y : y + 6, x : x + 8]
            assert (tile == tile[0, 0]).all()
            drawn[(well, site)] = int(tile[0, 0])
        # Same ranking in both channels whatever their dtype: stretched to 1..255 per channel.
        assert drawn[("A01", 1)] == 1 and drawn[("B02", 1)] == 255
        assert drawn[("A01", 1)] < drawn[("A01", 2)] < drawn[("A01", 3)] < drawn[("B02", 1)]
        y, x = geometry.site_origin("A01", 1)
        assert picture[y - 1, x] == GAP_VALUE  # the gap above row A
        assert picture[y + 6, x] == 0  # the site gap inside the well
        y, x = geometry.site_origin("A01", 3)  # site 4 is absent: black
        assert (picture[y, x + 9 : x + 17] == 0).all()
        y, x = geometry.well_origin("H12")  # a well the plate lacks
        assert picture[y, x] == EMPTY_WELL_VALUE


def test_an_unreadable_plane_is_left_black() -> None:
    class Broken(MemoryPlate):
        def read_plane(self, key: PlaneKey) -> np.ndarray:
            if key.well == "A02":
                raise OSError("disk on fire")
            return super().read_plane(key)

    plate = Broken()
    plate.add(PlaneKey("A01"), np.full((4, 4), 7, np.uint16))
    plate.add(PlaneKey("A02"), np.full((4, 4), 9, np.uint16))
    geometry = overview_geometry(plate)
    seen = []
    picture = render_overview(plate, 1, geometry, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2, 2)
    y, x = geometry.site_origin("A02", 1)
    assert picture[y, x] == 0
    y, x = geometry.site_origin("A01", 1)
    assert picture[y, x] > 0


def test_downsample_is_a_block_mean() -> None:
    plane = np.arange(36, dtype=np.uint16).reshape(6, 6)
    small = downsample(plane, 3, (2, 2))
    np.testing.assert_allclose(small, [[7, 10], [25, 28]])
    padded = downsample(plane, 3, (3, 2))  # a smaller plane than the geometry says: padded, not mixed
    assert np.isnan(padded[2]).all()


def test_png_round_trips_and_is_deterministic() -> None:
    plate = memory_plate(plate_keys(("A01", "C05"), sites=3, channels=1), shape=(30, 40))
    geometry = overview_geometry(plate)
    picture = render_overview(plate, 1, geometry)
    png = overview_png(picture)
    assert png == overview_png(picture.copy())
    with Image.open(io.BytesIO(png)) as image:
        np.testing.assert_array_equal(np.asarray(image), picture)
    wide = (picture.astype(np.uint16) * 257)
    with Image.open(io.BytesIO(overview_png(wide))) as image:
        np.testing.assert_array_equal(np.asarray(image), wide)
    with pytest.raises(ValueError):
        overview_png(picture.astype(np.float32))
    # And the TIFF the mount will serve encodes it at the planned size.
    assert len(encode_tiff(picture)) == plan_tiff(geometry.shape, geometry.dtype).size
