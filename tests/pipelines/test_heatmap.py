"""Plate heatmaps: decoded with Pillow, well colours checked against matplotlib's viridis."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from hcsfs.errors import PlaneNameError
from hcsfs.naming import format_well
from hcsfs.pipelines.heatmap import heatmap_layout, heatmap_png, plate_shape
from tests.conftest import require

WHITE = (255, 255, 255)
EMPTY = (224, 224, 224)
TOLERANCE = 3  # per channel, out of 255


def wells(rows: int, columns: int) -> list[str]:
    return [format_well(r, c) for r in range(1, rows + 1) for c in range(1, columns + 1)]


def decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(int)


def oracle(t: float) -> np.ndarray:
    """matplotlib's viridis colour of ``t`` in 0..255."""
    cmap = require("matplotlib", "the dev extra (make install): the colour oracle").colormaps["viridis"]
    return np.asarray(cmap(t)[:3]) * 255


def centre(pixels: np.ndarray, rows: int, columns: int, well: str) -> np.ndarray:
    from hcsfs.naming import parse_well

    x, y = heatmap_layout(rows, columns).cell_centre(*parse_well(well))
    return pixels[y, x]


def values_96() -> dict[str, float]:
    rng = np.random.default_rng(7)
    return {well: float(v) for well, v in zip(wells(8, 12), rng.normal(100, 30, 96), strict=True)}


@pytest.mark.parametrize(
    ("names", "shape"),
    [
        (wells(8, 12), (8, 12)),
        (["A01", "H12"], (8, 12)),
        (["E07"], (6, 8)),
        (wells(16, 24), (16, 24)),
        (["P24"], (16, 24)),
        (["A13"], (16, 24)),
        (wells(32, 48), (32, 48)),
        (["AF48"], (32, 48)),
        (["Q01"], (32, 48)),
        (["B03"], (2, 3)),
        (["A04"], (3, 4)),
        (["D06"], (4, 6)),
        (["AG02", "A50"], (33, 50)),
    ],
)
def test_plate_shape(names: list[str], shape: tuple[int, int]) -> None:
    assert plate_shape(names) == shape
    assert plate_shape(iter(names)) == shape


def test_plate_shape_rejects_bad_names() -> None:
    with pytest.raises(PlaneNameError):
        plate_shape(["A1"])


@pytest.mark.parametrize(("rows", "columns"), [(8, 12), (16, 24), (32, 48), (2, 3)])
def test_image_size(rows: int, columns: int) -> None:
    values = {w: float(i) for i, w in enumerate(wells(rows, columns))}
    pixels = decode(heatmap_png(values, "value"))
    layout = heatmap_layout(rows, columns)
    assert pixels.shape == (layout.height, layout.width, 3)
    if rows * columns >= 96:
        assert 600 <= layout.width <= 1200 and layout.height <= 1200
    # The size depends on the plate only: not on the values, the title or which wells have values.
    other = decode(heatmap_png({format_well(rows, columns): 1.0}, "a much longer title " * 20))
    assert other.shape == pixels.shape
    # Every cell lies inside the image, left of the colour bar.
    x0, y0, x1, y1 = layout.cell_box(rows, columns)
    assert x1 <= layout.bar[0] and y1 <= layout.height


def test_well_colours_match_matplotlib_viridis() -> None:
    values = values_96()
    lo, hi = min(values.values()), max(values.values())
    pixels = decode(heatmap_png(values, "intensity_mean"))
    for well, value in values.items():
        expected = oracle((value - lo) / (hi - lo))
        got = centre(pixels, 8, 12, well)
        assert np.abs(got - expected).max() <= TOLERANCE, (well, got, expected)


def test_min_is_dark_purple_and_max_yellow() -> None:
    values = values_96()
    low = min(values, key=values.__getitem__)
    high = max(values, key=values.__getitem__)
    pixels = decode(heatmap_png(values, "v"))
    dark, bright = centre(pixels, 8, 12, low), centre(pixels, 8, 12, high)
    assert np.abs(dark - oracle(0.0)).max() <= TOLERANCE
    assert np.abs(bright - oracle(1.0)).max() <= TOLERANCE
    assert dark[2] > dark[1] and dark[0] > dark[1] and dark.sum() < 250  # purple, dark
    assert bright[0] > 200 and bright[1] > 200 and bright[2] < 80  # yellow
    sums = [centre(pixels, 8, 12, w).sum() for w in values]
    assert dark.sum() == min(sums)


def test_colour_bar_spans_the_colormap() -> None:
    pixels = decode(heatmap_png(values_96(), "v"))
    x0, y0, x1, y1 = heatmap_layout(8, 12).bar
    xc = (x0 + x1) // 2
    assert np.abs(pixels[y0, xc] - oracle(1.0)).max() <= TOLERANCE
    assert np.abs(pixels[y1 - 1, xc] - oracle(0.0)).max() <= TOLERANCE
    middle = (y0 + y1 - 1) / 2
    assert np.abs(pixels[int(middle), xc] - oracle(0.5)).max() <= 2 * TOLERANCE


def assert_empty(pixels: np.ndarray, rows: int, columns: int, well: str) -> None:
    from hcsfs.naming import parse_well

    layout = heatmap_layout(rows, columns)
    x0, y0, x1, y1 = layout.cell_box(*parse_well(well))
    cx, cy = layout.cell_centre(*parse_well(well))
    assert tuple(pixels[cy - layout.cell // 4, cx]) == EMPTY  # the fill, between the arms of the cross
    cell = pixels[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
    marked = (np.abs(cell - EMPTY).sum(axis=2) > 0) & (cell.sum(axis=2) < 3 * 200)
    assert marked.sum() >= layout.cell  # the cross: two diagonals of darker grey


def test_empty_wells_are_marked() -> None:
    values: dict[str, float | None] = dict(values_96())
    del values["B02"]
    values["C03"] = None
    values["D04"] = math.nan
    pixels = decode(heatmap_png(values, "v"))
    for well in ("B02", "C03", "D04"):
        assert_empty(pixels, 8, 12, well)
    # NaN and None take no part in the range: the remaining min and max still span the colormap.
    finite = {w: v for w, v in values.items() if v is not None and not math.isnan(v)}
    low = min(finite, key=finite.__getitem__)
    assert np.abs(centre(pixels, 8, 12, low) - oracle(0.0)).max() <= TOLERANCE


def test_all_values_equal() -> None:
    values = dict.fromkeys(["A01", "D05", "H12"], 42.0)
    pixels = decode(heatmap_png(values, "v"))
    colours = {tuple(centre(pixels, 8, 12, w)) for w in values}
    assert len(colours) == 1
    assert np.abs(np.array(colours.pop()) - oracle(0.5)).max() <= TOLERANCE
    assert_empty(pixels, 8, 12, "B02")
    layout = heatmap_layout(8, 12)
    x0, y0, x1, y1 = layout.bar
    bar = pixels[y0:y1, x0:x1].reshape(-1, 3)
    assert len(np.unique(bar, axis=0)) == 1  # one value, one colour
    lx0, ly0, lx1, ly1 = layout.bar_labels
    assert (pixels[ly0:ly1, lx0:lx1] != 255).any()


@pytest.mark.parametrize("values", [{}, {"A01": None, "H12": math.nan}])
def test_all_empty(values: dict[str, float | None]) -> None:
    pixels = decode(heatmap_png(values, "nothing", rows=8, columns=12))
    assert pixels.shape[:2] == (heatmap_layout(8, 12).height, heatmap_layout(8, 12).width)
    for well in ("A01", "E06", "H12"):
        assert_empty(pixels, 8, 12, well)


def test_min_and_max_labels_are_drawn() -> None:
    pixels = decode(heatmap_png(values_96(), "v"))
    layout = heatmap_layout(8, 12)
    lx0, ly0, lx1, ly1 = layout.bar_labels
    mid = (ly0 + ly1) // 2
    top, bottom = pixels[ly0:mid, lx0:lx1], pixels[mid:ly1, lx0:lx1]
    assert (np.abs(top - 255).sum(axis=2) > 100).sum() > 20  # the max, next to the bar's top
    assert (np.abs(bottom - 255).sum(axis=2) > 100).sum() > 20  # the min, next to its bottom
    # Without values the label area of a range bar is blank where the max would be.
    blank = decode(heatmap_png({}, "v", rows=8, columns=12))
    assert (blank[ly0 : ly0 + layout.font_size, lx0:lx1] == 255).all()


def test_title_is_drawn() -> None:
    layout = heatmap_layout(8, 12)
    with_title = decode(heatmap_png(values_96(), "cell_count"))
    without = decode(heatmap_png(values_96(), ""))
    band = slice(0, layout.grid_y - layout.font_size - 6)
    assert (with_title[band] != without[band]).any()
    assert (without[band] == 255).all()


def test_deterministic_and_order_independent() -> None:
    values = values_96()
    png = heatmap_png(values, "v")
    assert heatmap_png(values, "v") == png
    assert heatmap_png(dict(reversed(list(values.items()))), "v") == png


def test_explicit_shape() -> None:
    png = heatmap_png({"A01": 1.0, "B02": 2.0}, "v", rows=16, columns=24)
    assert decode(png).shape[:2] == (heatmap_layout(16, 24).height, heatmap_layout(16, 24).width)
    with pytest.raises(ValueError, match="outside"):
        heatmap_png({"H12": 1.0}, "v", rows=4, columns=6)
