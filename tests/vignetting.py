"""Synthetic plates for illumination correction: ground-truth planes (a background level that varies
from plane to plane, sparse bright objects) times a known vignetting profile, plus an optional
dark-field, plus camera noise; and the flatness measure the tests state their tolerances in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from hcsfs import MemoryPlate, PlaneKey


def vignette(shape: tuple[int, int], centre: tuple[float, float] = (0.5, 0.5), strength: float = 0.45,
             tilt: float = 0.1) -> np.ndarray:
    """A radial fall-off (``1 - strength r^2``, r = 1 at half the larger side) with a linear tilt along x,
    normalized to mean 1: 1.3 in the middle, 0.55-0.7 in the corners."""
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    r2 = ((y + 0.5 - centre[0] * rows) ** 2 + (x + 0.5 - centre[1] * cols) ** 2) / (max(rows, cols) / 2) ** 2
    profile = (1 - strength * r2) * (1 + tilt * (x / cols - 0.5))
    return profile / profile.mean()


def darkfield(shape: tuple[int, int]) -> np.ndarray:
    """A camera offset of 100 with a gradient of 30 counts down the rows."""
    rows, cols = shape
    return 100 + 30 * np.mgrid[0:rows, 0:cols][0] / rows


def truth_plane(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A background level of 400-1200 and objects (about 5 % of the plane) up to 3x brighter."""
    level = rng.uniform(400, 1200)
    smooth = ndi.gaussian_filter(rng.random(shape), 2)
    smooth = (smooth - smooth.min()) / (np.ptp(smooth) or 1)
    objects = np.clip((smooth - 0.7) / 0.3, 0, 1) * 2
    return level * (1 + objects)


@dataclass
class VignettedPlate:
    plate: MemoryPlate
    truth: dict[PlaneKey, np.ndarray] = field(default_factory=dict)
    flat: dict[int, np.ndarray] = field(default_factory=dict)
    dark: dict[int, np.ndarray] = field(default_factory=dict)


def vignetted_plate(wells: tuple[str, ...] = ("A01", "A02", "B01", "B02", "C01", "C02"), sites: int = 4,
                    channels: int = 2, shape: tuple[int, int] = (96, 128), seed: int = 0, noise: float = 0.01,
                    dark: bool = False) -> VignettedPlate:
    """``raw = truth x flat (+ dark) + noise`` (noise: ``noise`` x the plane's level), stored as uint16.
    Channel 2's optics are off-centre."""
    rng = np.random.default_rng(seed)
    made = VignettedPlate(MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"}))
    for channel in range(1, channels + 1):
        made.flat[channel] = vignette(shape, (0.5, 0.5) if channel == 1 else (0.45, 0.55))
        made.dark[channel] = darkfield(shape) if dark else np.zeros(shape)
    for well in wells:
        for site in range(1, sites + 1):
            for channel in range(1, channels + 1):
                key = PlaneKey(well, site, channel)
                truth = truth_plane(rng, shape)
                raw = truth * made.flat[channel] + made.dark[channel]
                raw += rng.normal(0, noise * truth.min(), shape)
                made.truth[key] = truth
                made.plate.add(key, np.clip(np.rint(raw), 0, 65535).astype(np.uint16))
    return made


def block_means(image: np.ndarray, block: int = 8) -> np.ndarray:
    rows, cols = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    return image[:rows, :cols].reshape(rows // block, block, cols // block, block).mean(axis=(1, 3))


def unevenness(image: np.ndarray, truth: np.ndarray, block: int = 8) -> float:
    """How far a plane is from its ground truth in shading: the largest relative deviation of its
    ``block x block`` means from the truth's (0: flat; a raw plane of :func:`vignette` is about 0.45).
    Block means average the camera noise away, so what is left is the illumination."""
    return float(np.max(np.abs(block_means(image, block) / block_means(truth, block) - 1)))
