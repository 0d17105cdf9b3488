"""Data generators for tests: synthetic plates in memory and on disk, and source-tree checksums."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tifffile

from hcsfs import MemoryPlate, PlaneKey

SAMPLES = (Path(__file__).resolve().parents[2] / "shared" / "samples").resolve()


def synthetic_plane(key: PlaneKey, shape: tuple[int, int], dtype: str, seed: int = 0) -> np.ndarray:
    """A deterministic plane whose values differ per key (so a mix-up shows)."""
    digest = hashlib.sha256(f"{seed}:{key.name}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.normal(100, 25, shape).astype(dt)
    top = min(np.iinfo(dt).max, 60000)
    low = max(np.iinfo(dt).min, -1000)
    return rng.integers(low, top, shape, endpoint=True).astype(dt)


def plate_keys(
    wells: Iterable[str] = ("A01", "A02", "B01"), sites: int = 2, channels: int = 2, z: int = 1,
    t: int = 1,
) -> list[PlaneKey]:
    return [
        PlaneKey(w, s, c, zz, tt)
        for w in wells
        for s in range(1, sites + 1)
        for c in range(1, channels + 1)
        for zz in range(1, z + 1)
        for tt in range(1, t + 1)
    ]


def memory_plate(
    keys: Iterable[PlaneKey] | None = None, shape: tuple[int, int] = (48, 64), dtype: str = "u2",
    pixel_size_um: float | None = 0.65, channel_names: dict[int, str] | None = None,
) -> MemoryPlate:
    plate = MemoryPlate(pixel_size_um=pixel_size_um,
                        channel_names=channel_names or {1: "DAPI", 2: "GFP"})
    for key in keys if keys is not None else plate_keys():
        plate.add(key, synthetic_plane(key, shape, dtype))
    return plate


def write_tiff_folder(folder: Path, plate: MemoryPlate) -> Path:
    """Write ``plate`` as a flat-named TIFF folder (tifffile, so the bytes are not hcsfs's own)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key in plate.keys():
        tifffile.imwrite(folder / key.name, plate.read_plane(key), photometric="minisblack")
    return folder


def tree_checksums(root: Path) -> dict[str, tuple[str, int, int]]:
    """``relative path -> (sha256, size, mtime_ns)`` of every file under ``root`` (links not followed)."""
    sums = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink():
                sums[str(path.relative_to(root))] = (os.readlink(path), 0, st.st_mtime_ns)
                continue
            sums[str(path.relative_to(root))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return sums


def imagexpress_folder(root: Path, plate: MemoryPlate) -> Path:
    """The plate as an ImageXpress folder: TimePoint_1 with MetaXpress names."""
    folder = root / "TimePoint_1"
    folder.mkdir(parents=True)
    for key in plate.keys():
        name = f"screen_C2_{key.well}_s{key.site}_w{key.channel}.TIF"
        tifffile.imwrite(folder / name, plate.read_plane(key))
    return root


def zarr_plate(root: Path, plate: MemoryPlate) -> Path:
    from hcsfs.convert import convert_plate

    return convert_plate(plate, root / "plate.zarr").path
