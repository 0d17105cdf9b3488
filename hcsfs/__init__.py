"""hcsfs: mount a high-content-screening plate as a flat folder of TIFF planes."""

from __future__ import annotations

from hcsfs.errors import HcsfsError
from hcsfs.naming import PlaneKey, format_name, parse_name
from hcsfs.sources import MemoryPlate, PlateSource, open_plate

__version__ = "0.1.0"

__all__ = [
    "HcsfsError",
    "MemoryPlate",
    "PlaneKey",
    "PlateSource",
    "format_name",
    "mounted",
    "open_plate",
    "parse_name",
    "__version__",
]


def __getattr__(name: str) -> object:
    # The FUSE layer (pyfuse3, trio) is imported only when a mount is asked for.
    if name == "mounted":
        from hcsfs.fs.mount import mounted

        return mounted
    raise AttributeError(f"module 'hcsfs' has no attribute {name!r}")
