"""Yokogawa CellVoyager plates (CV7000, CV8000, CQ1): ``MeasurementData.mlf`` + ``MeasurementDetail.mrf``.

``meta`` finds a measurement and reads its three XML files (records, detail, setting), ``channels``
maps (timeline, action, Ch) to flat channels and ``source`` builds the flat view from the records.
"""

from __future__ import annotations

from hcsfs.sources.cellvoyager.meta import can_open, find_measurements, read_mlf, read_mrf
from hcsfs.sources.cellvoyager.source import CellVoyagerSource

__all__ = ["CellVoyagerSource", "can_open", "find_measurements", "read_mlf", "read_mrf"]
