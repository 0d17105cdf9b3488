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
from hcsfs.sources.base import PlaneInfo, PlateDescription, SourceDefaults
from hcsfs.tiff import plan_tiff

__all__ = ["OutputPlate", "RunOutput", "load_output", "tables_csv", "KEY_COLUMNS"]

KEY_COLUMNS = ("well", "site", "channel", "z", "t")
PLANES_FILE = "planes.jsonl"
TABLES_DIR = "tables"
FILE_FOLDERS = ("rois", "heatmaps", "illumination")
"""Folders of complete files in a run (ROI sets, heatmap pictures, illumination profiles)."""


class OutputPlate(SourceDefaults):
    """The published planes of one run: keys grow while it runs; planes are read lazily."""

    format_name = "pipeline"
    blocking_info = False
    frozen = False
    """Written while mounted: a run publishes and replaces planes."""

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
    """What the mount shows under ``/<name>/``: planes, result folders, tables and other files.

    Version-1 runs show their planes in the run folder itself (``source``); analysis runs show one
    folder per saved result (``results``), ``rois/`` and ``heatmaps/`` (``folders``) and their tables.
    Tables and files live on disk and are served from there (never held in memory).
    """

    def __init__(self, source: Any = None) -> None:
        self.source = source
        self._results: dict[str, Any] = {}
        self._tables: dict[str, Path] = {}
        self._folders: dict[str, dict[str, Path]] = {}
        self._lock = threading.Lock()

    def set_table(self, filename: str, path: Path) -> None:
        with self._lock:
            self._tables[filename] = path

    def tables(self) -> dict[str, Path]:
        """``{"nuclei.csv": path}``: complete tables only (written when the run is done)."""
        with self._lock:
            return dict(self._tables)

    def table_bytes(self) -> dict[str, bytes]:
        """The complete tables' contents (small tables, notebooks and tests)."""
        return {name: path.read_bytes() for name, path in self.tables().items()}

    def set_result(self, name: str, plate: Any) -> None:
        with self._lock:
            self._results[name] = plate

    def results(self) -> dict[str, Any]:
        """Saved result -> the source of its published planes."""
        with self._lock:
            return dict(self._results)

    def add_file(self, folder: str, filename: str, path: Path) -> None:
        """A complete file (an ROI set, a heatmap) in ``/<name>/<folder>/``."""
        with self._lock:
            self._folders.setdefault(folder, {})[filename] = path

    def folder_files(self, folder: str) -> dict[str, Path]:
        with self._lock:
            return dict(self._folders.get(folder, {}))

    def folders(self) -> list[str]:
        with self._lock:
            return sorted(self._folders)


def tables_csv(columns: Iterable[str], rows: Iterable[Mapping[str, Any]],
               format_value: Callable[[Any], Any] | None = None) -> bytes:
    """CSV bytes with a header; floats written with 10 significant digits (or by ``format_value``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = list(columns)
    writer.writerow(columns)
    def default(v: Any) -> Any:
        return f"{v:.10g}" if isinstance(v, float) else v

    fmt = format_value or default
    for row in rows:
        writer.writerow([fmt(row[c]) for c in columns])
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
                channel_names: Mapping[int, str], s3_options: Mapping[str, Any] | None = None,
                committed: Mapping[str, Mapping[str, Any]] | None = None) -> RunOutput:
    """The output of a finished run from its folder (planes from ``planes.jsonl``, tables, files).

    A journal record with a ``result`` belongs to that result's folder (analysis runs). Planes a Dask
    run stored elsewhere (a shared folder or ``s3://`` prefix: the record's ``data``) are read from
    there, with ``s3_options`` for object storage. ``committed``: the unit journal's records
    (:mod:`hcsfs.pipelines.journal`): only the planes and ROI sets of committed units are shown (a unit a
    crash cut short shows nothing).
    """
    plates: dict[str | None, OutputPlate] = {}
    caches: dict[str, ZarrArrayCache] = {}
    journal = folder / PLANES_FILE
    lines = journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []
    for line in lines:
        try:
            record = json.loads(line)
            key = parse_name(record["name"])
            shape = (int(record["shape"][0]), int(record["shape"][1]))
            dtype = np.dtype(record["dtype"])
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # an interrupted last line: its plane was never published
        if committed is not None and "unit" in record and record["unit"] not in committed:
            continue
        result = record.get("result")
        plate = plates.get(result)
        if plate is None:
            plate = plates[result] = OutputPlate(name if result is None else f"{name}/{result}",
                                                 pixel_size_um=pixel_size_um, channel_names=channel_names)
        base = Path(record["data"]) if isinstance(record.get("data"), str) and "://" not in record["data"] \
            else folder / "data"
        sub = base / result if result else base
        if "file" in record:
            path = sub / "tiff" / Path(record["file"]).name
            if path.exists():
                plate.publish(key, shape, dtype, _tiff_reader(path), passthrough=path)
        elif "array" in record:
            location = str(record.get("data") or sub)
            cache_key = f"{location}\0{result}"
            if cache_key not in caches:
                if "://" in location:
                    from hcsfs.sinks.zarr import zarr_location

                    root: Any = zarr_location(location, **dict(s3_options or {}))
                    root = root / result if result else root
                else:
                    root = sub
                caches[cache_key] = ZarrArrayCache(root / "plate.ome.zarr")
            plate.publish(key, shape, dtype, _zarr_reader(caches[cache_key], record))
    output = RunOutput(plates.get(None))
    for result, plate in plates.items():
        if result is not None:
            output.set_result(result, plate)
    tables = folder / TABLES_DIR
    if tables.is_dir():
        for path in sorted(tables.iterdir()):
            if path.suffix in (".csv", ".parquet") and not path.name.startswith("."):
                output.set_table(path.name, path)
    rois = None if committed is None else {n for r in committed.values() for n in r.get("rois", ())}
    for sub_folder in FILE_FOLDERS:
        directory = folder / sub_folder
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                if path.name.startswith(".") or (sub_folder == "rois" and rois is not None
                                                 and path.name not in rois):
                    continue
                output.add_file(sub_folder, path.name, path)
    return output


def _tiff_reader(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import tifffile

        return np.asarray(tifffile.imread(path))

    return read


def _zarr_reader(cache: ZarrArrayCache, location: Mapping[str, Any]) -> Callable[[], np.ndarray]:
    location = {"array": location["array"], "index": location["index"]}
    return lambda: cache.read(location)
