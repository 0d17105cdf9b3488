"""``/.hcsfs/overview/w<channel>.tif`` and ``.png``: whole-plate montages, rendered on first read.

Both sizes come from the montage's fixed geometry (the PNG is written with uncompressed deflate
blocks, see :mod:`hcsfs.png`), so ``ls -l`` and ``find`` show them without rendering anything.
A render lives as long as the handles reading it (single flight: concurrent openers render once); it is
not kept after them, since the mount's --cache-size budget already went to the source's decoded data
(a cp -r of the mount kept all 8 renders, 66 MB, on top of that budget).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING

from hcsfs.cache import ByteLRU
from hcsfs.fs.tree import Entry, NodeKind
from hcsfs.png import stored_png, stored_png_size
from hcsfs.tiff import encode_tiff, plan_tiff

if TYPE_CHECKING:
    from hcsfs.overview import OverviewGeometry
    from hcsfs.sources.base import PlateSource

__all__ = ["OverviewFiles"]

_KEEP_BYTES = 0


class OverviewFiles:
    """The entries of ``.hcsfs/overview/`` for one plate."""

    def __init__(self, source: PlateSource) -> None:
        self.source = source
        self._geometry: OverviewGeometry | None = None
        self._lock = threading.Lock()
        self._rendered: ByteLRU[tuple[str, int | str], bytes] = ByteLRU(_KEEP_BYTES, len)

    def geometry(self) -> OverviewGeometry:
        from hcsfs.overview import overview_geometry

        with self._lock:
            if self._geometry is None:
                self._geometry = overview_geometry(self.source)
            return self._geometry

    def entries(self) -> dict[str, Entry]:
        geometry = self.geometry()
        entries = {}
        for channel in geometry.channels:
            entries[f"w{channel}.tif"] = Entry(
                NodeKind.FILE, functools.partial(self.tiff, channel), size=self.tiff_size)
            entries[f"w{channel}.png"] = Entry(
                NodeKind.FILE, functools.partial(self.png, channel), size=self.png_size)
        return entries

    def tiff_size(self) -> int:
        geometry = self.geometry()
        return plan_tiff(geometry.shape, geometry.dtype, geometry.pixel_size_um).size

    def png_size(self) -> int:
        geometry = self.geometry()
        return stored_png_size(geometry.shape, geometry.dtype)

    def _montage(self, channel: int | str) -> bytes:
        from hcsfs.overview import render_overview

        geometry = self.geometry()
        return render_overview(self.source, channel, geometry, workers=min(4, os.cpu_count() or 1)).tobytes()

    def tiff(self, channel: int | str) -> bytes:
        import numpy as np

        geometry = self.geometry()

        def encode() -> bytes:
            montage = np.frombuffer(self._montage(channel), geometry.dtype).reshape(geometry.shape)
            return encode_tiff(montage, geometry.pixel_size_um)

        return self._rendered.get_or_load(("tif", channel), encode)

    def png(self, channel: int | str) -> bytes:
        import numpy as np

        geometry = self.geometry()

        def encode() -> bytes:
            montage = np.frombuffer(self._montage(channel), geometry.dtype).reshape(geometry.shape)
            return stored_png(montage)

        return self._rendered.get_or_load(("png", channel), encode)
