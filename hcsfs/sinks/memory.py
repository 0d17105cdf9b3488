"""Write planes into a :class:`~hcsfs.sources.memory.MemoryPlate` (``output: memory``).

The plate is also the source that serves them: a plane is visible once :meth:`MemoryPlaneSink.write`
returned, and never before (``MemoryPlate.add`` stores a complete frozen copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hcsfs.naming import PlaneKey
from hcsfs.sources.memory import MemoryPlate

__all__ = ["MemoryPlaneSink"]


class MemoryPlaneSink:
    """Planes kept in RAM; nothing persists."""

    kind = "memory"

    def __init__(self, plate: MemoryPlate | None = None) -> None:
        self.plate = plate if plate is not None else MemoryPlate(name="pipeline output")

    def write(self, key: PlaneKey, plane: np.ndarray) -> dict[str, Any]:
        """Store one complete plane; returns its location record (empty: it lives in the plate)."""
        self.plate.add(key, plane)
        return {}

    def finish(self) -> None:
        """Nothing to flush."""
