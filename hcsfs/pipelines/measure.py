"""Per-object measurements of a labels plane, with CellProfiler 4.2.8's column names.

``shape`` follows MeasureObjectSizeShape, which takes these from ``skimage.measure.regionprops_table``:
``AreaShape_Area`` is the pixel count; ``Perimeter`` is ``skimage.measure.perimeter(object, 4)`` (border
pixels of the 4-connected erosion, weighted 1, sqrt(2) or (1 + sqrt(2)) / 2 by their border neighbours;
a lone pixel has perimeter 0); ``Eccentricity`` is ``sqrt(1 - l2 / l1)`` of the eigenvalues of the
inertia tensor (0 when ``l1 == 0``); ``Solidity`` is area over ``convex_area``, the pixel centres inside
or on the convex hull of the pixels' edge midpoints (``convex_hull_image``); ``Center_X`` / ``Center_Y``
are the mean column / row. ``intensity`` follows MeasureObjectIntensity over all of an object's pixels:
``Integrated`` is the sum, ``Mean`` the sum over the pixel count, ``Std`` the population standard
deviation (two-pass: the mean of squared deviations from the mean), ``Min`` and ``Max``.

Everything is computed for all objects at once from the label raster (bincount, reduceat, one stable
sort); nothing loops over objects in Python, and scikit-image is not needed. The convex hull is each
object's left and right envelope over its row extremes in exact integer arithmetic, so ``convex_area``
matches skimage's point-in-polygon count exactly.

Deviations from CellProfiler:

- Intensities are the raw pixel values (as float64), not CellProfiler's 0..1 rescaling of integer images.
- No image masks: CellProfiler drops masked pixels only for an image that has a mask; ours never do.
  Non-finite pixels propagate into every statistic (CellProfiler means to skip them, but
  ``masked_labels > 0 & numpy.isfinite(img)`` binds as ``> (0 & ...)``, so it keeps them too).
- One row per label present, in increasing label order; missing numbers are skipped. CellProfiler assumes
  labels 1..N: its intensity arrays have a row for every number up to the largest
  (``Objects.indices`` is ``arange(1, max + 1)``), while regionprops skips the missing ones.
- Labels and intensity planes must have the same shape (CellProfiler crops both to the common shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["FEATURES", "measure_columns", "measure_plane", "measure_stack"]

FEATURES = ("shape", "intensity")
SHAPE_COLUMNS = (
    "AreaShape_Area",
    "AreaShape_Perimeter",
    "AreaShape_Eccentricity",
    "AreaShape_Solidity",
    "AreaShape_Center_X",
    "AreaShape_Center_Y",
)
INTENSITY_STATS = ("MeanIntensity", "IntegratedIntensity", "MinIntensity", "MaxIntensity", "StdIntensity")

# skimage.measure.perimeter: a border pixel's code is 1 + 2 * (4-neighbours on the border)
# + 10 * (diagonal neighbours on the border); the code picks its length: 0, 1, sqrt(2) or (1 + sqrt(2)) / 2.
_PERIMETER_CLASS = np.zeros(50, np.intp)
_PERIMETER_CLASS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_CLASS[[21, 33]] = 2
_PERIMETER_CLASS[[13, 23]] = 3
_PERIMETER_LENGTHS = np.array([1.0, np.sqrt(2), (1 + np.sqrt(2)) / 2])


def _features(features: Sequence[str]) -> set[str]:
    if isinstance(features, str):
        features = [features]
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown measurement {unknown[0]!r}; known: {', '.join(FEATURES)}")
    return set(features)


def measure_columns(features: Sequence[str], channels: Sequence[str]) -> tuple[str, ...]:
    """The per-object columns, in order: ``ObjectNumber``, shape columns, then intensity per channel."""
    wanted = _features(features)
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels repeat: {list(channels)}")
    columns = ["ObjectNumber"]
    if "shape" in wanted:
        columns += SHAPE_COLUMNS
    if "intensity" in wanted:
        columns += [f"Intensity_{stat}_{c}" for c in channels for stat in INTENSITY_STATS]
    return tuple(columns)


def measure_plane(
    labels: np.ndarray, intensities: Mapping[str, np.ndarray], features: Sequence[str]
) -> dict[str, np.ndarray]:
    """Columns for the objects of one 2-D labels plane (0 is background), one entry per label present.

    ``intensities`` maps channel names to planes of ``labels``' shape (any real dtype, raw values); they
    are only read for the ``intensity`` feature. ``ObjectNumber`` and ``AreaShape_Area`` are int64,
    everything else float64.
    """
    wanted = _features(features)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must be a 2-D integer array, got {labels.ndim}-D {labels.dtype}")
    channels = list(intensities) if "intensity" in wanted else []
    images = {c: np.asarray(intensities[c]) for c in channels}
    for c, image in images.items():
        if image.shape != labels.shape:
            raise ValueError(f"channel {c!r} has shape {image.shape}, labels {labels.shape}")
    columns = measure_columns(sorted(wanted, key=FEATURES.index), channels)

    numbers, counts, pixels, obj = _group(labels.ravel())
    if numbers.size == 0:
        return {c: np.zeros(0, np.int64 if c in ("ObjectNumber", "AreaShape_Area") else np.float64)
                for c in columns}
    starts = np.cumsum(counts) - counts

    out: dict[str, np.ndarray] = {"ObjectNumber": numbers.astype(np.int64)}
    if "shape" in wanted:
        out.update(_shape(labels, numbers, pixels, obj, counts, starts))
    for c in channels:
        v = images[c].ravel()[pixels].astype(np.float64)
        total = np.add.reduceat(v, starts)
        mean = total / counts
        dev = v - np.repeat(mean, counts)
        out[f"Intensity_MeanIntensity_{c}"] = mean
        out[f"Intensity_IntegratedIntensity_{c}"] = total
        out[f"Intensity_MinIntensity_{c}"] = np.minimum.reduceat(v, starts)
        out[f"Intensity_MaxIntensity_{c}"] = np.maximum.reduceat(v, starts)
        out[f"Intensity_StdIntensity_{c}"] = np.sqrt(np.add.reduceat(dev * dev, starts) / counts)
    return {c: out[c] for c in columns}


def measure_stack(
    labels: np.ndarray, intensities: Mapping[str, np.ndarray], features: Sequence[str]
) -> list[dict[str, np.ndarray]]:
    """:func:`measure_plane` for each z plane of a ``[Z, Y, X]`` labels stack and its channel stacks."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a [Z, Y, X] stack, got {labels.ndim}-D")
    stacks = {c: np.asarray(v) for c, v in intensities.items()}
    for c, stack in stacks.items():
        if stack.shape != labels.shape:
            raise ValueError(f"channel {c!r} has shape {stack.shape}, labels {labels.shape}")
    return [
        measure_plane(plane, {c: s[z] for c, s in stacks.items()}, features) for z, plane in enumerate(labels)
    ]


def _group(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Label numbers present, their pixel counts, and the labelled flat indices grouped by object
    (raster order within each) with each one's object index 0..n-1."""
    fg = np.flatnonzero(flat)
    values = flat[fg].astype(np.int64)
    if values.size and values.min() < 0:
        raise ValueError("labels must not be negative")
    if values.size and values.max() > 4 * flat.size:
        numbers, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    else:
        counts = np.bincount(values)
        numbers = np.flatnonzero(counts)
        counts = counts[numbers]
        lut = np.zeros(numbers[-1] + 1 if numbers.size else 1, np.int64)
        lut[numbers] = np.arange(numbers.size)
        inverse = lut[values]
    # uint16 keys sort by radix; a stable sort keeps raster order inside each object
    keys = inverse.astype(np.uint16) if numbers.size <= 1 << 16 else inverse
    order = np.argsort(keys, kind="stable")
    return numbers.astype(np.int64), counts.astype(np.int64), fg[order], inverse[order]


def _shape(
    labels: np.ndarray,
    numbers: np.ndarray,
    pixels: np.ndarray,
    obj: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
) -> dict[str, np.ndarray]:
    """Shape columns; ``pixels`` are flat indices grouped by object ``obj`` (0..n-1), raster order within."""
    n = counts.size
    width = labels.shape[1]
    rows, cols = np.divmod(pixels, width)
    cy = np.add.reduceat(rows, starts) / counts
    cx = np.add.reduceat(cols, starts) / counts
    dy = rows - np.repeat(cy, counts)
    dx = cols - np.repeat(cx, counts)
    # Inertia tensor [[a, b], [b, c]] (skimage: a = mu02 / mu00, c = mu20 / mu00, b = -mu11 / mu00).
    a = np.add.reduceat(dx * dx, starts) / counts
    c = np.add.reduceat(dy * dy, starts) / counts
    b = -np.add.reduceat(dx * dy, starts) / counts
    half_diff = np.hypot((a - c) / 2, b)
    l1 = (a + c) / 2 + half_diff
    with np.errstate(invalid="ignore", divide="ignore"):
        eccentricity = np.where(l1 > 0, np.sqrt(np.clip(2 * half_diff / l1, 0, 1)), 0.0)
    area = counts.astype(np.int64)
    return {
        "AreaShape_Area": area,
        "AreaShape_Perimeter": _perimeter(labels, numbers),
        "AreaShape_Eccentricity": eccentricity,
        "AreaShape_Solidity": area / _convex_area(rows, cols, obj, n),
        "AreaShape_Center_X": cx,
        "AreaShape_Center_Y": cy,
    }


def _perimeter(labels: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """skimage.measure.perimeter(object, 4) of every object, in increasing label order."""
    padded = np.pad(labels, 1)
    w = padded.shape[1]
    flat = padded.ravel()
    p = np.flatnonzero(flat)
    lab = flat[p]
    edge = np.zeros(flat.size, bool)
    edge[p] = (flat[p - 1] != lab) | (flat[p + 1] != lab) | (flat[p - w] != lab) | (flat[p + w] != lab)
    b = np.flatnonzero(edge)
    lab = flat[b]
    code = np.ones(b.size, np.intp)
    sides, corners = (1, -1, w, -w), (w + 1, w - 1, 1 - w, -w - 1)
    for offset, weight in [(o, 2) for o in sides] + [(o, 10) for o in corners]:
        q = b + offset
        code += weight * (edge[q] & (flat[q] == lab))
    n = numbers.size
    hist = np.bincount(4 * np.searchsorted(numbers, lab) + _PERIMETER_CLASS[code], minlength=4 * n)
    return hist.reshape(n, 4)[:, 1:] @ _PERIMETER_LENGTHS


def _convex_area(rows: np.ndarray, cols: np.ndarray, obj: np.ndarray, n: int) -> np.ndarray:
    """Pixel centres inside or on the convex hull of each object's pixel edge midpoints.

    In doubled coordinates (Y, X) = (2 row, 2 col) the hull points of a row's extreme pixels c0..c1 are
    (2r, 2c0 - 1), (2r, 2c1 + 1) and (2r +- 1, 2c0), (2r +- 1, 2c1); the hull's left edge is the convex
    minorant of the leftmost X per Y, its right edge the concave majorant of the rightmost.
    """
    new_run = np.ones(rows.size, bool)
    new_run[1:] = (obj[1:] != obj[:-1]) | (rows[1:] != rows[:-1])
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], rows.size) - 1
    k, r = obj[first], rows[first]  # one run per object row, sorted by (object, row)
    left = _envelope(*_row_points(k, r, 2 * cols[first]))
    right = _envelope(*_row_points(k, r, -2 * cols[last]))  # negated: its minorant is the majorant
    # Every row between an object's first and last, gaps included.
    first_run = np.flatnonzero(np.diff(k, prepend=-1))
    top, bottom = r[first_run], r[np.append(first_run[1:], k.size) - 1]
    heights = bottom - top + 1
    qk = np.repeat(np.arange(n), heights)
    qy = 2 * (np.arange(qk.size) - np.repeat(np.cumsum(heights) - heights, heights) + top[qk])
    lo = _ceil_div(*_at(left, qk, qy), 2)
    hi = -_ceil_div(*_at(right, qk, qy), 2)  # floor of the majorant / 2
    return np.bincount(qk, weights=np.maximum(hi - lo + 1, 0), minlength=n)


def _row_points(k: np.ndarray, r: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-run hull points (2r - 1, x), (2r, x - 1), (2r + 1, x), sorted by (k, Y), one per (k, Y).

    Where the next run is the next row of the same object, its (2r - 1) point merges with this run's
    (2r + 1) point, keeping the smaller x.
    """
    joined = np.zeros(k.size, bool)
    joined[1:] = (k[1:] == k[:-1]) & (r[1:] == r[:-1] + 1)
    below = x.copy()
    below[:-1][joined[1:]] = np.minimum(x[:-1], x[1:])[joined[1:]]
    pk = np.repeat(k, 3)
    py = (2 * r[:, None] + np.array([-1, 0, 1])).ravel()
    px = np.stack([x, x - 1, below], axis=1).ravel()
    keep = np.ones((k.size, 3), bool)
    keep[:, 0] = ~joined
    return pk[keep.ravel()], py[keep.ravel()], px[keep.ravel()]


def _ceil_div(num: np.ndarray, den: np.ndarray, scale: int) -> np.ndarray:
    return -((-num) // (den * scale))


def _envelope(k: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (k, y, x) of the convex minorant of x over y per group k; points sorted by (k, y)."""
    alive = np.ones(k.size, bool)
    active = np.arange(k.size)
    changed = np.zeros(k.size and int(k.max()) + 1, bool)
    # Drop every vertex on or above the chord of its neighbours; repeat for the groups that changed.
    while active.size > 2:
        ka, ya, xa = k[active], y[active], x[active]
        inner = (ka[1:-1] == ka[:-2]) & (ka[1:-1] == ka[2:])
        lhs = xa[1:-1] * (ya[2:] - ya[:-2])
        rhs = xa[:-2] * (ya[2:] - ya[1:-1]) + xa[2:] * (ya[1:-1] - ya[:-2])
        drop = inner & (lhs >= rhs)
        if not drop.any():
            break
        alive[active[1:-1][drop]] = False
        changed[:] = False
        changed[ka[1:-1][drop]] = True
        active = active[alive[active] & changed[ka]]
    return k[alive], y[alive], x[alive]


def _at(
    envelope: tuple[np.ndarray, np.ndarray, np.ndarray], qk: np.ndarray, qy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The envelope at (qk, qy) as an exact fraction (numerator, denominator > 0)."""
    k, y, x = envelope
    span = int(max(y.max(), qy.max()) - min(y.min(), qy.min())) + 2
    base = min(y.min(), qy.min())
    keys = k * span + (y - base)
    j = np.searchsorted(keys, qk * span + (qy - base), side="right") - 1
    j = np.minimum(j, keys.size - 2)  # qy is below each group's last vertex, so j + 1 is in the group
    y0, y1, x0, x1 = y[j], y[j + 1], x[j], x[j + 1]
    return x0 * (y1 - qy) + x1 * (qy - y0), y1 - y0
