"""Plates of every source type on disk, the in-process reference bytes, and random read plans."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import tifffile

from hcsfs import MemoryPlate, open_plate
from hcsfs.sources.base import PlateSource
from hcsfs.tiff import pixel_buffer, read_range
from tests.plates import (  # noqa: F401  (re-exported for the torture tests)
    SAMPLES,
    imagexpress_folder,
    memory_plate,
    plate_keys,
    write_tiff_folder,
    zarr_plate,
)

SOURCE_TYPES = ("memory", "tiff-folder", "imagexpress", "phenix", "ome-zarr", "cellvoyager")


def small_plate(shape: tuple[int, int] = (96, 130), dtype: str = "u2") -> MemoryPlate:
    """12 planes: 3 wells (one on row AF), 2 sites, 2 channels."""
    return memory_plate(plate_keys(("A01", "B02", "AF48"), sites=2, channels=2), shape=shape, dtype=dtype)




def make_source(kind: str, root: Path, plate: MemoryPlate | None = None) -> PlateSource | Path:
    """A plate of ``kind``: the MemoryPlate itself, or a folder under ``root``."""
    plate = plate if plate is not None else small_plate()
    if kind == "memory":
        return plate
    if kind == "tiff-folder":
        return write_tiff_folder(root / "tiffs", plate)
    if kind == "imagexpress":
        return imagexpress_folder(root / "ixm", plate)
    if kind == "phenix":
        if not (SAMPLES / "phenix_harmony5_a").is_dir():
            import pytest

            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail("the Phenix sample is not in ../shared/samples")
            pytest.skip(reason="the Phenix sample is not in ../shared/samples")
        return Path(shutil.copytree(SAMPLES / "phenix_harmony5_a", root / "phenix"))
    if kind == "ome-zarr":
        return zarr_plate(root, plate)
    if kind == "cellvoyager":  # PNG planes: encoded TIFFs sized from the .mrf
        from tests.sources.generate_cellvoyager import cellvoyager_folder

        return cellvoyager_folder(root / "cellvoyager", plate)
    raise ValueError(kind)


def reference_files(source: PlateSource | Path) -> dict[str, bytes]:
    """Every plane's served bytes as the in-process encoder (or the passthrough file) gives them."""
    plate = source if isinstance(source, PlateSource) else open_plate(source)
    files = {}
    for key in plate.keys():
        info = plate.info(key)
        if info.passthrough is not None:
            files[key.name] = info.passthrough.read_bytes()
        else:
            assert info.layout is not None
            pixels = pixel_buffer(info.layout, plate.read_plane(key))
            files[key.name] = bytes(read_range(info.layout, 0, info.size, pixels))
    return files


def header_boundary(name: str, data: bytes) -> int:
    """Where a served TIFF's pixels start (the strip offset), found by tifffile."""
    import io

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        return int(tif.pages[0].dataoffsets[0])


def read_plan(files: dict[str, bytes], count: int, seed: int) -> list[tuple[str, int, int]]:
    """``count`` reads ``(name, offset, size)``: uniform, across the header/pixel boundary, at EOF."""
    rng = random.Random(seed)
    names = sorted(files)
    boundaries = {n: header_boundary(n, files[n]) for n in names}
    plan = []
    for i in range(count):
        name = rng.choice(names)
        size = len(files[name])
        kind = i % 4
        if kind == 0:
            offset = rng.randrange(size)
        elif kind == 1:  # straddles the header/pixel boundary
            offset = max(0, boundaries[name] - rng.randrange(1, 600))
        elif kind == 2:  # at or past EOF
            offset = size - rng.randrange(0, 300) + rng.choice((0, 0, 0, 7))
            offset = max(0, offset)
        else:
            offset = rng.randrange(min(size, 4096))
        length = rng.choice((1, 7, 512, 4096, 65536, 131072, rng.randrange(1, 300_000)))
        plan.append((name, offset, length))
    return plan


Builder = Callable[[Path, MemoryPlate], Path]
