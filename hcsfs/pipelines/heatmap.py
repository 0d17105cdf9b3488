"""Plate-layout heatmap of one per-well value, rendered as a PNG with Pillow.

One cell per well (row letters down the left, column numbers across the top), filled with the viridis
colour of the well's value scaled to the plate's min..max; wells without a value are light grey with a
cross. A vertical colour bar on the right carries the max (top) and min (bottom) as text. The layout
depends only on the plate shape, so every heatmap of one plate has the same size.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hcsfs.naming import parse_well, row_letters

__all__ = [
    "plate_shape",
    "heatmap_png",
    "heatmap_layout",
    "viridis",
    "HeatmapLayout",
    "EMPTY_FILL",
    "EMPTY_MARK",
]

STANDARD_PLATES = ((2, 3), (3, 4), (4, 6), (6, 8), (8, 12), (16, 24), (32, 48))
"""(rows, columns) of the 6, 12, 24, 48, 96, 384 and 1536-well plates."""

BACKGROUND = (255, 255, 255)
TEXT = (40, 40, 40)
FRAME = (128, 128, 128)
EMPTY_FILL = (224, 224, 224)
EMPTY_MARK = (160, 160, 160)

# matplotlib's viridis (CC0; van der Walt & Smith), every 5th of its 256 entries: 0, 5, ..., 255.
_VIRIDIS_ANCHORS = """
440154 46085c 471063 481769 481d6f 482475 472a7a 46307e 453781 433d84 414287 3f4889 3d4e8a
3a538b 38598c 355e8d 33638d 31688e 2e6d8e 2c718e 2a768e 297b8e 27808e 25848e 23898e 218e8d
20928c 1f978b 1e9c89 1fa188 21a585 24aa83 28ae80 2eb37c 35b779 3dbc74 46c06f 50c46a 5ac864
65cb5e 70cf57 7cd250 89d548 95d840 a2da37 b0dd2f bddf26 cae11f d8e219 e5e419 f1e51d fde725
""".split()


@lru_cache(maxsize=1)
def _viridis_lut() -> np.ndarray:
    """The 256 x 3 uint8 viridis table, linearly interpolated between the anchors."""
    anchors = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _VIRIDIS_ANCHORS], float)
    positions = np.arange(256) / 5.0
    lut = np.stack([np.interp(positions, np.arange(len(anchors)), anchors[:, c]) for c in range(3)], 1)
    return np.round(lut).astype(np.uint8)


def viridis(t: float) -> tuple[int, int, int]:
    """Colour of ``t`` in [0, 1] (clipped), binned into 256 levels like matplotlib's colormaps."""
    index = min(max(int(t * 256), 0), 255) if math.isfinite(t) else 0
    r, g, b = _viridis_lut()[index]
    return int(r), int(g), int(b)


def plate_shape(wells: Iterable[str]) -> tuple[int, int]:
    """(rows, columns) of the smallest standard plate holding every well; beyond 1536, the max seen."""
    max_row = max_column = 0
    for well in wells:
        row, column = parse_well(well)
        max_row, max_column = max(max_row, row), max(max_column, column)
    for rows, columns in STANDARD_PLATES:
        if max_row <= rows and max_column <= columns:
            return rows, columns
    return max_row, max_column


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(math.ceil(right - left))


@dataclass(frozen=True, slots=True)
class HeatmapLayout:
    """Pixel geometry of a heatmap; boxes are ``(x0, y0, x1, y1)`` with x1, y1 exclusive."""

    rows: int
    columns: int
    cell: int
    grid_x: int
    grid_y: int
    bar: tuple[int, int, int, int]
    bar_labels: tuple[int, int, int, int]
    width: int
    height: int
    font_size: int
    title_size: int

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """The square of well ``(row, column)`` (1-based), including its 1-px white border."""
        x0 = self.grid_x + (column - 1) * self.cell
        y0 = self.grid_y + (row - 1) * self.cell
        return x0, y0, x0 + self.cell, y0 + self.cell

    def cell_centre(self, row: int, column: int) -> tuple[int, int]:
        x0, y0, x1, y1 = self.cell_box(row, column)
        return (x0 + x1) // 2, (y0 + y1) // 2


_MARGIN = 12
_BAR_WIDTH = 18
_BAR_GAP = 16
_LABEL_TEMPLATES = ("-8.888e+88", "-0.0008888", "no values")


def heatmap_layout(rows: int, columns: int) -> HeatmapLayout:
    """Geometry for a rows x columns plate: cells 48 px (96-well) down to 15 px (1536-well), min 6."""
    cell = max(6, min(64, 720 // max(columns, 1)))
    font_size = max(9, min(14, round(cell * 0.6)))
    title_size = 16
    font = _font(font_size)
    label_height = font_size + 6
    row_label_width = _text_width(font, row_letters(rows) if rows <= 702 else "ZZ") + 8
    grid_x = _MARGIN + row_label_width
    grid_y = _MARGIN + title_size + 8 + label_height
    grid_w, grid_h = columns * cell, rows * cell
    bar_x = grid_x + grid_w + _BAR_GAP
    bar = (bar_x, grid_y, bar_x + _BAR_WIDTH, grid_y + grid_h)
    labels_w = max(_text_width(font, t) for t in _LABEL_TEMPLATES) + 6
    bar_labels = (bar[2] + 4, grid_y - font_size, bar[2] + 4 + labels_w, bar[3] + font_size)
    width = bar_labels[2] + _MARGIN
    height = bar_labels[3] + _MARGIN
    return HeatmapLayout(
        rows, columns, cell, grid_x, grid_y, bar, bar_labels, width, height, font_size, title_size
    )


def _format(value: float) -> str:
    return f"{value:.4g}"


def _fit(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, width: int) -> str:
    if _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + "...") > width:
        text = text[:-1]
    return text + "..."


def heatmap_png(
    values: Mapping[str, float | None], title: str, *, rows: int | None = None, columns: int | None = None
) -> bytes:
    """PNG of a plate heatmap of ``values`` (well name → value; None, NaN or ±inf: empty well).

    ``rows`` / ``columns`` default to :func:`plate_shape` of the wells. With all values equal every
    valued well gets the middle colour and the bar shows that one value. Same input, same bytes.
    """
    shape = plate_shape(values)
    rows = shape[0] if rows is None else rows
    columns = shape[1] if columns is None else columns
    finite: dict[tuple[int, int], float] = {}
    for well, value in values.items():
        row, column = parse_well(well)
        if row > rows or column > columns:
            raise ValueError(f"well {well} is outside a {rows} x {columns} plate")
        if value is not None and math.isfinite(float(value)):
            finite[row, column] = float(value)
    lo = min(finite.values(), default=0.0)
    hi = max(finite.values(), default=0.0)
    span = hi - lo

    def colour(value: float) -> tuple[int, int, int]:
        return viridis((value - lo) / span if span > 0 else 0.5)

    layout = heatmap_layout(rows, columns)
    image = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, title_font = _font(layout.font_size), _font(layout.title_size)
    draw.text((_MARGIN, _MARGIN), _fit(title_font, title, layout.width - 2 * _MARGIN), TEXT, title_font)

    # Labels: every column/row when they fit, else every k-th (always the first).
    step_c = max(1, math.ceil((_text_width(font, str(columns)) + 3) / layout.cell))
    step_r = max(1, math.ceil((layout.font_size + 2) / layout.cell))
    for column in range(1, columns + 1, step_c):
        x = layout.grid_x + (column - 0.5) * layout.cell
        draw.text((x, layout.grid_y - 3), str(column), TEXT, font, anchor="ms")
    for row in range(1, rows + 1, step_r):
        y = layout.grid_y + (row - 0.5) * layout.cell
        draw.text((layout.grid_x - 5, y), row_letters(row) if row <= 702 else "", TEXT, font, anchor="rm")

    inset = 1 if layout.cell >= 8 else 0
    for row in range(1, rows + 1):
        for column in range(1, columns + 1):
            x0, y0, x1, y1 = layout.cell_box(row, column)
            box = (x0 + inset, y0 + inset, x1 - 1 - inset, y1 - 1 - inset)
            value = finite.get((row, column))
            if value is not None:
                draw.rectangle(box, fill=colour(value))
            else:
                draw.rectangle(box, fill=EMPTY_FILL)
                draw.line(box, fill=EMPTY_MARK)
                draw.line((box[0], box[3], box[2], box[1]), fill=EMPTY_MARK)
    grid_right = layout.grid_x + columns * layout.cell
    grid_bottom = layout.grid_y + rows * layout.cell
    draw.rectangle((layout.grid_x - 1, layout.grid_y - 1, grid_right, grid_bottom), outline=FRAME)

    bx0, by0, bx1, by1 = layout.bar
    label_x = layout.bar_labels[0]
    if not finite:
        draw.rectangle((bx0, by0, bx1 - 1, by1 - 1), fill=EMPTY_FILL)
        draw.text((label_x, (by0 + by1) / 2), "no values", TEXT, font, anchor="lm")
    elif span == 0:
        draw.rectangle((bx0, by0, bx1 - 1, by1 - 1), fill=colour(lo))
        draw.text((label_x, (by0 + by1) / 2), _format(lo), TEXT, font, anchor="lm")
    else:
        height = by1 - by0
        t = 1.0 - np.arange(height) / max(height - 1, 1)
        index = np.clip((t * 256).astype(int), 0, 255)
        gradient = np.repeat(_viridis_lut()[index][:, None, :], bx1 - bx0, axis=1)
        image.paste(Image.fromarray(np.ascontiguousarray(gradient), "RGB"), (bx0, by0))
        draw.text((label_x, by0), _format(hi), TEXT, font, anchor="lm")
        draw.text((label_x, by1 - 1), _format(lo), TEXT, font, anchor="lm")
    draw.rectangle((bx0 - 1, by0 - 1, bx1, by1), outline=FRAME)

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
