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
