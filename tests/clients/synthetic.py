"""Plates for client tests: planes with countable 'nuclei' and exact expected statistics."""

from __future__ import annotations

import hashlib

import numpy as np

from hcsfs import MemoryPlate, PlaneKey
from tests.plates import plate_keys


def _rng(key: PlaneKey) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.name.encode()).digest()[:8], "little"))


def nuclei_count(key: PlaneKey) -> int:
    """How many nuclei the DNA plane of ``key``'s field holds (varies per well, site, z and t)."""
    digest = hashlib.sha256(f"{key.well}:{key.site}:{key.z}:{key.t}".encode()).digest()
    return 3 + digest[0] % 6


def nuclei_plane(key: PlaneKey, shape: tuple[int, int] = (256, 256), radius: int = 9) -> np.ndarray:
    """uint16: dim noisy background; on channel 1, ``nuclei_count(key)`` bright disks on a grid
    (well apart and off the border, so any sane segmentation finds exactly that many)."""
    rng = _rng(key)
    plane = rng.integers(80, 120, shape).astype(np.float64)
    if key.channel == 1:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        step = 3 * radius + 8
        slots = [(y, x) for y in range(2 * radius, shape[0] - 2 * radius, step)
                 for x in range(2 * radius, shape[1] - 2 * radius, step)]
        chosen = rng.choice(len(slots), size=nuclei_count(key), replace=False)
        for index in chosen:
            cy, cx = slots[index]
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            plane[disk] = rng.integers(20000, 40000)
    else:
        plane += rng.integers(0, 5000) + np.linspace(0, 3000, shape[1])[None, :]
    return plane.astype(np.uint16)


def nuclei_plate(wells=("A01", "A02", "B01"), sites=2, channels=2, z=2, t=1,
                 shape=(256, 256)) -> MemoryPlate:
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DNA", 2: "GFP"})
    for key in plate_keys(wells, sites=sites, channels=channels, z=z, t=t):
        plate.add(key, nuclei_plane(key, shape))
    return plate


# Two-channel fields for object-level measurements: DAPI nuclei of varied size and texture, GFP levels
# that differ from nucleus to nucleus, so a mix-up of objects or channels shows in every column.

MEASURED_SLOT_STEP = 44  # nuclei sit on a grid this far apart: separate even after smoothing


def _field_digest(key: PlaneKey, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}:{key.well}:{key.site}:{key.z}:{key.t}".encode()).digest()


def measured_nuclei_count(key: PlaneKey) -> int:
    """How many nuclei the field of ``key`` holds in ``measured_nuclei_plane`` (4 to 10)."""
    return 4 + _field_digest(key, "count")[0] % 7


def measured_nuclei_plane(key: PlaneKey, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    """uint16, one field's plane of a two-channel plate (channel 1 DAPI, channel 2 GFP).

    The field's nuclei (``measured_nuclei_count(key)``, shared by both channels) are ellipses of radii
    6..14 on a grid, off the border and well apart; some have a dark hole in the middle that survives a
    Gaussian blur of sigma 2. DAPI: a bright level per nucleus plus pixel noise, on a dim noisy
    background. GFP: a background with a gradient, and a level of its own per nucleus (plus noise).
    """
    geometry = np.random.default_rng(int.from_bytes(_field_digest(key, "geometry")[:8], "little"))
    noise = _rng(key)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    margin = MEASURED_SLOT_STEP // 2 + 2
    slots = [(y, x) for y in range(margin, shape[0] - margin + 1, MEASURED_SLOT_STEP)
             for x in range(margin, shape[1] - margin + 1, MEASURED_SLOT_STEP)]
    chosen = geometry.choice(len(slots), size=measured_nuclei_count(key), replace=False)
    if key.channel == 1:
        plane = noise.integers(80, 120, shape).astype(np.float64)
    else:
        plane = 200 + np.linspace(0, 800, shape[1])[None, :] + noise.normal(0, 20, shape)
    for index in chosen:
        cy, cx = slots[index]
        ry, rx = geometry.integers(6, 15, size=2)
        dapi, gfp = geometry.integers(15000, 35000), geometry.integers(500, 20000)
        holed = geometry.random() < 0.4 and min(ry, rx) >= 11
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if holed:
            inside &= (yy - cy) ** 2 + (xx - cx) ** 2 > 16
        level, spread = (dapi, 1500) if key.channel == 1 else (gfp, 0.1 * gfp)
        plane[inside] = level + noise.normal(0, spread, int(inside.sum()))
    return np.clip(np.rint(plane), 0, 65535).astype(np.uint16)


def measured_nuclei_plate(wells=("A01", "B02"), sites=2, z=1, t=1, shape=(256, 256)) -> MemoryPlate:
    """Two channels (1: DAPI, 2: GFP) of ``measured_nuclei_plane`` fields."""
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for key in plate_keys(wells, sites=sites, channels=2, z=z, t=t):
        plate.add(key, measured_nuclei_plane(key, shape))
    return plate
