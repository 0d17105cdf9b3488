"""What appears under ``/<name>/``: published output planes and complete tables.

:class:`OutputPlate` is a :class:`~hcsfs.sources.base.PlateSource` over the planes a run has completely
written; the runner publishes a plane (adds its key) only after its sink's ``write`` returned. Each
published plane is also appended to ``planes.jsonl`` in the run folder, so a later mount over the same
outputs directory serves the same planes again (:func:`load_output`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hcsfs.errors import PlaneNotFoundError, PlaneReadError
from hcsfs.naming import PlaneKey, parse_name, sort_key
from hcsfs.sinks.zarr_planes import ZarrArrayCache
from hcsfs.sources.base import PlaneInfo, PlateDescription
from hcsfs.tiff import plan_tiff

__all__ = ["OutputPlate", "RunOutput", "load_output", "tables_csv", "KEY_COLUMNS"]

KEY_COLUMNS = ("well", "site", "channel", "z", "t")
PLANES_FILE = "planes.jsonl"
TABLES_DIR = "tables"


class OutputPlate:
    """The published planes of one run: keys grow while it runs; planes are read lazily."""

    format_name = "pipeline"
    blocking_info = False

    def __init__(self, name: str, *, pixel_size_um: float | None = None,
                 channel_names: Mapping[int, str] | None = None) -> None:
        self.name = name
        self.pixel_size_um = pixel_size_um
        self.channel_names = dict(channel_names or {})
        self._planes: dict[PlaneKey, tuple[Callable[[], np.ndarray], PlaneInfo]] = {}
        self._sorted: list[PlaneKey] | None = []
        self._lock = threading.Lock()

    def publish(self, key: PlaneKey, shape: tuple[int, int], dtype: np.dtype,
                reader: Callable[[], np.ndarray], passthrough: Path | None = None,
                size: int | None = None) -> None:
        """Make a completely written plane visible."""
        channel_name = self.channel_names.get(key.channel) if isinstance(key.channel, int) else None
        if passthrough is not None:
            info = PlaneInfo(key=key, size=int(size or passthrough.stat().st_size), mtime_ns=time.time_ns(),
                             passthrough=passthrough, channel_name=channel_name,
                             pixel_size_um=self.pixel_size_um)
        else:
            layout = plan_tiff(shape, dtype, self.pixel_size_um)
            info = PlaneInfo(key=key, size=layout.size, mtime_ns=time.time_ns(), layout=layout,
                             channel_name=channel_name, pixel_size_um=self.pixel_size_um)
        with self._lock:
            if key not in self._planes:
                self._sorted = None
            self._planes[key] = (reader, info)

    def __len__(self) -> int:
        return len(self._planes)

    def keys(self) -> list[PlaneKey]:
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._planes, key=sort_key)
            return self._sorted

    def _get(self, key: PlaneKey) -> tuple[Callable[[], np.ndarray], PlaneInfo]:
        try:
            return self._planes[key]
        except KeyError:
            raise PlaneNotFoundError(f"{key.name}: no such plane in the output of {self.name}") from None

    def info(self, key: PlaneKey) -> PlaneInfo:
        return self._get(key)[1]

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        reader, _ = self._get(key)
        try:
            return reader()
        except (OSError, ValueError, KeyError) as exc:
            raise PlaneReadError(f"{key.name}: cannot read the output plane: {exc}") from exc

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        info = self.info(key)
        if info.layout is not None:
            return info.layout.shape, info.layout.dtype.str.lstrip("<>|="), self.pixel_size_um
        plane = self.read_plane(key)
        return (plane.shape[0], plane.shape[1]), plane.dtype.str.lstrip("<>|="), self.pixel_size_um

    def describe(self) -> PlateDescription:
        return PlateDescription(format=self.format_name, source=self.name,
                                channel_names=dict(self.channel_names), pixel_size_um=self.pixel_size_um)

    def close(self) -> None:
        """Nothing to release."""


class RunOutput:
    """What the mount shows under ``/<name>/``: planes (``source``) and tables."""

    def __init__(self, source: Any, tables_dir: Path | None = None) -> None:
        self.source = source
        self._tables_dir = tables_dir
        self._tables: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def set_table(self, filename: str, data: bytes) -> None:
        with self._lock:
            self._tables[filename] = data

    def tables(self) -> dict[str, bytes]:
        """``{"objects.csv": bytes}``: complete tables only (written when the run is done)."""
        with self._lock:
            return dict(self._tables)


def tables_csv(columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """CSV bytes with a header; floats written with 10 significant digits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = list(columns)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{v:.10g}" if isinstance(v, float) else v for v in (row[c] for c in columns)])
    return buffer.getvalue().encode()


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file under a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class PlaneJournal:
    """``planes.jsonl``: one line per published plane, appended after the plane is complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, key: PlaneKey, record: Mapping[str, Any]) -> None:
        line = json.dumps({"name": key.name, **record}) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as file:
            file.write(line)


def load_output(folder: Path, name: str, *, pixel_size_um: float | None,
                channel_names: Mapping[int, str], s3_options: Mapping[str, Any] | None = None) -> RunOutput:
    """The output of a finished run from its folder (planes from ``planes.jsonl``, tables).

    Planes a Dask run stored elsewhere (a shared folder or ``s3://`` prefix: the record's ``data``)
    are read from there, with ``s3_options`` for object storage.
    """
    plate = OutputPlate(name, pixel_size_um=pixel_size_um, channel_names=channel_names)
    journal = folder / PLANES_FILE
    zarr_cache = ZarrArrayCache(folder / "data" / "plate.ome.zarr")
    elsewhere: dict[str, ZarrArrayCache] = {}
    lines = journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []
    for line in lines:
        try:
            record = json.loads(line)
            key = parse_name(record["name"])
            shape = (int(record["shape"][0]), int(record["shape"][1]))
            dtype = np.dtype(record["dtype"])
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # an interrupted last line: its plane was never published
        data = record.get("data")
        if "file" in record:
            path = Path(data or folder / "data") / "tiff" / Path(record["file"]).name
            if path.exists():
                plate.publish(key, shape, dtype, _tiff_reader(path), passthrough=path)
        elif "array" in record:
            cache = zarr_cache
            if isinstance(data, str):
                if data not in elsewhere:
                    from hcsfs.sinks.zarr import zarr_location

                    elsewhere[data] = ZarrArrayCache(zarr_location(data, **dict(s3_options or {}))
                                                     / "plate.ome.zarr")
                cache = elsewhere[data]
            plate.publish(key, shape, dtype, _zarr_reader(cache, record))
    output = RunOutput(plate)
    tables = folder / TABLES_DIR
    if tables.is_dir():
        for path in sorted(tables.glob("*.csv")):
            output.set_table(path.name, path.read_bytes())
    return output


def _tiff_reader(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import tifffile

        return np.asarray(tifffile.imread(path))

    return read


def _zarr_reader(cache: ZarrArrayCache, location: Mapping[str, Any]) -> Callable[[], np.ndarray]:
    location = {"array": location["array"], "index": location["index"]}
    return lambda: cache.read(location)
