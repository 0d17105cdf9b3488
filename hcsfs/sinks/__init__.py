"""Where outputs are written: memory, OME-Zarr, TIFF folder.

Plane sinks (used by pipelines) share one small protocol: ``write(key, plane) -> location`` returns
once the plane is completely stored, and ``finish()`` writes whatever metadata comes once at the end.
"""

from __future__ import annotations

from hcsfs.sinks.memory import MemoryPlaneSink
from hcsfs.sinks.tiff import TiffFolderSink, write_plane_tiff
from hcsfs.sinks.zarr_planes import ZarrArrayCache, ZarrPlaneSink

__all__ = ["MemoryPlaneSink", "TiffFolderSink", "ZarrArrayCache", "ZarrPlaneSink", "write_plane_tiff"]
