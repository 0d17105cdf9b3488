"""OME-Zarr HCS plates (NGFF 0.4 / zarr v2 and 0.5 / zarr v3, and OpenHCS's layout).

``meta`` parses the JSON documents, ``backends`` holds the pluggable zarr implementations, ``chunks``
assembles planes from a cache of decoded chunks and ``source`` ties them into a PlateSource. Importing
this package imports no zarr library: that happens on the first pixel read.
"""

from __future__ import annotations

from hcsfs.sources.omezarr.backends import ZARR_IMPLS, get_zarr_impl
from hcsfs.sources.omezarr.meta import can_open
from hcsfs.sources.omezarr.source import OmeZarrPlateSource

__all__ = ["ZARR_IMPLS", "OmeZarrPlateSource", "can_open", "get_zarr_impl"]
