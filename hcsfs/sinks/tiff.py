"""Write planes as single-plane TIFF files in one folder, named by their flat names (``output: tiff``).

Each file is written under a temporary name and renamed into place, so a reader (or the mount, which
serves these files as passthrough) never sees a half-written plane. The folder is an ordinary flat
TIFF folder: ``hcsfs mount`` opens it again as a plate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from hcsfs.naming import PlaneKey
from hcsfs.tiff import imagej_description

__all__ = ["TiffFolderSink", "write_plane_tiff"]


def write_plane_tiff(path: Path, plane: np.ndarray, pixel_size_um: float | None) -> int:
    """Write ``plane`` to ``path`` atomically (temporary name, fsync-free rename); returns its size."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    resolution = None if pixel_size_um is None else (1.0 / pixel_size_um, 1.0 / pixel_size_um)
    try:
        tifffile.imwrite(tmp, np.ascontiguousarray(plane), photometric="minisblack",
                         description=imagej_description(pixel_size_um), metadata=None,
                         resolution=resolution, resolutionunit=1 if resolution else None)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


class TiffFolderSink:
    """Planes as ``<folder>/<flat name>.tif``."""

    kind = "tiff"

    def __init__(self, folder: str | os.PathLike[str], *, pixel_size_um: float | None = None) -> None:
        self.folder = Path(folder)
        self.pixel_size_um = pixel_size_um
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, key: PlaneKey, plane: np.ndarray) -> dict[str, Any]:
        """Write one complete plane; returns ``{"file": <name>}`` relative to the folder."""
        if plane.dtype == np.bool_:
            plane = plane.astype(np.uint8)
        write_plane_tiff(self.folder / key.name, plane, self.pixel_size_um)
        return {"file": key.name}

    def finish(self) -> None:
        """Every file is complete when :meth:`write` returns."""
