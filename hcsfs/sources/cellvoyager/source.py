"""A CellVoyager measurement as a :class:`~hcsfs.sources.base.PlateSource`: records → flat names.

The ``.mlf`` records are the ground truth: ``Row``/``Column`` → well, ``FieldIndex`` → site, ``ZIndex``
→ z (a projection record's ``ZImageProcessing`` → ``zmax``/``zmin``/``zsum``), ``TimePoint`` → t, and
(timeline, action, ``Ch``) → channel (:mod:`~hcsfs.sources.cellvoyager.channels`). File names are never
parsed: they differ between software releases, and a plate name can hold a well-like token of its own.

Opening is one pass over the records plus one ``scandir`` of each folder they point into (so files no
record names are found, and listed as skipped). TIFF planes are passed through byte for byte. PNG
planes (some CQ1/CV8000 exports) are decoded on read and served as hcsfs's encoded TIFF, whose size
comes from the ``.mrf`` alone (camera width, height, bit depth): listing them reads no file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcsfs.errors import PlaneNameError, PlaneReadError, PlateFormatError
from hcsfs.naming import PlaneKey, format_well
from hcsfs.sources.base import PlaneInfo
from hcsfs.sources.cellvoyager.channels import FlatChannel, map_channels, plate_pixel_size
from hcsfs.sources.cellvoyager.meta import (
    ErrorRecord,
    ImageRecord,
    Measurement,
    MeasurementData,
    MeasurementDetail,
    find_measurements,
    read_mlf,
    read_mrf,
    read_setting_channels,
)
from hcsfs.sources.workspace import PassthroughSource, WorkspaceBuilder
from hcsfs.tiff import plan_tiff

if TYPE_CHECKING:
    import numpy as np

    from hcsfs.tiff import TiffLayout

__all__ = ["CellVoyagerSource"]

POSITION_CONVENTION = (
    "x_um = stage X, y_um = -stage Y (image coordinates, y grows downwards; fractal-tasks-core's "
    "convention); stage_x_um/stage_y_um as the .mlf records them; mean over the field's records"
)
_REDUCTIONS = {"maximum": "max", "minimum": "min", "sum": "sum", "average": "mean", "mean": "mean"}
_RAW = ("", "none", "raw", "slice", "slices")
_METADATA_SUFFIXES = (".mlf", ".mrf", ".mes", ".wpi", ".wpp", ".xml", ".xsd")


def _z_of(record: ImageRecord) -> int | str:
    """A record's z: its ``ZIndex``, or the projection's name for a ``ZImageProcessing`` record."""
    processing = record.z_processing
    if processing is None or processing.strip().lower() in _RAW:
        return record.z
    word = processing.strip().lower()
    return _REDUCTIONS.get(word) or re.sub(r"[^a-z]", "", word) or "proj"


def _relpath(name: str) -> str:
    """The record's file relative to the measurement folder; a path leaving it keeps its name only."""
    if "/" not in name and "\\" not in name and ":" not in name:
        return name  # the usual case: a name in the measurement folder
    rel = name.replace("\\", "/").removeprefix("./")
    parts = rel.split("/")
    if rel.startswith("/") or ":" in parts[0] or ".." in parts:
        return parts[-1]
    return rel


@dataclass(slots=True)
class _Field:
    sum_x: float = 0.0
    sum_y: float = 0.0
    count: int = 0
    time: str | None = None


class _Mapper:
    """One pass over the image records: flat keys, field positions and z steps."""

    def __init__(self, data: MeasurementData, detail: MeasurementDetail,
                 channels: dict[tuple[int, int, int], FlatChannel], builder: WorkspaceBuilder) -> None:
        self.data = data
        self.detail = detail
        self.channels = channels
        self.builder = builder
        self.fields: dict[tuple[str, int], _Field] = {}
        self.stacks: dict[int, tuple[tuple[str, int, int], dict[int, float]]] = {}
        self.wells: dict[tuple[int, int], str] = {}
        self.png: set[PlaneKey] = set()

    def well(self, record: ImageRecord) -> str:
        """The well of a record's Row/Column, checked against the plate's size once per well."""
        cell = (record.row, record.column)
        well = self.wells.get(cell)
        if well is None:
            rows, columns = self.detail.rows, self.detail.columns
            where = f"{self.data.path}, line {record.line}"
            if rows and not 1 <= record.row <= rows or columns and not 1 <= record.column <= columns:
                raise PlateFormatError(
                    f"{where}: Row {record.row}, Column {record.column} is outside the plate's "
                    f"{rows} x {columns} wells ({self.detail.path.name})")
            try:
                well = self.wells[cell] = format_well(record.row, record.column)
            except PlaneNameError as exc:
                raise PlateFormatError(f"{where}: {exc}") from None
        return well

    def run(self, present: set[str]) -> None:
        # The hot loop of opening a plate (one turn per record): locals, and the common cases inline.
        builder, channels, wells, fields, png = self.builder, self.channels, self.wells, self.fields, self.png
        for record in self.data.images:
            well = wells.get((record.row, record.column)) or self.well(record)
            channel = channels[(record.timeline, record.action, record.ch)]
            z = record.z if record.z_processing is None else _z_of(record)
            try:
                key = PlaneKey(well, record.field, channel.index, z, record.timepoint)
            except PlaneNameError as exc:
                raise PlateFormatError(f"{self.data.path}, line {record.line}: {exc}") from None
            rel = _relpath(record.file)
            if rel in present:
                builder.add(key, rel)
                if rel[-4:].lower() == ".png":
                    png.add(key)
            else:
                builder.miss(key, rel)
            spot = fields.get((well, record.field))
            if spot is None:
                spot = fields[(well, record.field)] = _Field()
            if record.x is not None and record.y is not None:
                spot.sum_x += record.x
                spot.sum_y += record.y
                spot.count += 1
            # ISO times of one measurement share their offset: the earliest is the smallest string.
            if record.time and (spot.time is None or record.time < spot.time):
                spot.time = record.time
            if isinstance(z, int) and record.z_um is not None:
                self._stack(channel.index, well, record, record.z_um)

    def _stack(self, channel: int, well: str, record: ImageRecord, z_um: float) -> None:
        """Z positions of each channel's first stack (its z step, without keeping every record's Z)."""
        where = (well, record.field, record.timepoint)
        stack = self.stacks.get(channel)
        if stack is None:
            stack = self.stacks[channel] = (where, {})
        if stack[0] == where:
            stack[1][record.z] = z_um

    def z_steps(self) -> dict[int, float | None]:
        steps: dict[int, float | None] = {}
        for channel, (_, positions) in self.stacks.items():
            ordered = [positions[z] for z in sorted(positions)]
            diffs = sorted(abs(b - a) for a, b in zip(ordered, ordered[1:], strict=False))
            steps[channel] = round(diffs[len(diffs) // 2], 6) if diffs else None
        return steps

    def positions(self) -> list[dict[str, Any]]:
        out = []
        for (well, site), spot in self.fields.items():
            entry: dict[str, Any] = {"well": well, "site": site}
            if spot.count:
                x, y = spot.sum_x / spot.count, spot.sum_y / spot.count
                entry.update(x_um=round(x, 6), y_um=round(-y, 6) + 0.0,
                             stage_x_um=round(x, 6), stage_y_um=round(y, 6))
            entry["time"] = spot.time
            out.append(entry)
        return out


def _listing(root: Path, folders: set[str]) -> tuple[set[str], list[str]]:
    """Files (relative paths) in the folders the records point into, and the root's subfolders."""
    files: set[str] = set()
    subfolders: list[str] = []
    for folder in sorted(folders):
        try:
            with os.scandir(root / folder if folder else root) as entries:
                for entry in entries:
                    rel = f"{folder}/{entry.name}" if folder else entry.name
                    if entry.is_dir():
                        if not folder:
                            subfolders.append(rel)
                    else:
                        files.add(rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return files, subfolders


def _open_measurement(path: Path) -> Measurement:
    found = find_measurements(path)
    if not found:
        raise PlateFormatError(
            f"{path}: no CellVoyager measurement (MeasurementData.mlf and MeasurementDetail.mrf) here "
            "or one folder down")
    if len(found) > 1:
        names = ", ".join(m.folder.name for m in found)
        raise PlateFormatError(f"{path}: holds {len(found)} CellVoyager measurements ({names}); "
                               "mount one of them")
    return found[0]


_ERROR_FIELDS = {"FieldIndex": ("field", int), "ZIndex": ("z", int), "TimePoint": ("timepoint", int),
                 "TimelineIndex": ("timeline", int), "ActionIndex": ("action", int), "Ch": ("ch", int),
                 "Time": ("time", str), "X": ("stage_x_um", float), "Y": ("stage_y_um", float)}


def _error_entry(record: ErrorRecord, wells: dict[tuple[int, int], str]) -> dict[str, Any]:
    """An ERR record for plate.json: its message, well and whatever else it says (ERR records of an
    autofocus failure carry no FieldIndex, ZIndex or Ch)."""
    a = record.attributes
    entry: dict[str, Any] = {"message": record.message, "line": record.line}
    try:
        cell = (int(a["Row"]), int(a["Column"]))
        entry["well"] = wells.get(cell) or format_well(*cell)
    except (KeyError, ValueError, PlaneNameError):
        pass
    for theirs, (ours, kind) in _ERROR_FIELDS.items():
        if theirs in a:
            try:
                entry[ours] = kind(a[theirs])
            except ValueError:
                entry[ours] = a[theirs]
    return entry


class CellVoyagerSource(PassthroughSource):
    """A Yokogawa CellVoyager (CV7000, CV8000, CQ1) measurement, served as flat names."""

    format_name = "cellvoyager"

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        measurement = _open_measurement(Path(path).resolve())
        root = measurement.folder
        detail = read_mrf(measurement.mrf)
        # The .mrf names its setting file; only that name is used, looked for beside it.
        setting_name = (detail.setting_file or "").replace("\\", "/").rpartition("/")[2]
        setting = root / setting_name if setting_name else None
        settings = read_setting_channels(setting) if setting is not None and setting.is_file() else {}
        data = read_mlf(measurement.mlf)
        kinds = {(r.timeline, r.action, r.ch): r.action_kind for r in data.images}
        channels, numbering = map_channels(kinds, detail.channels, settings)
        named = {_relpath(r.file) for r in data.images}
        present, subfolders = _listing(root, {rel.rpartition("/")[0] for rel in named} | {""})
        builder = WorkspaceBuilder(root)
        mapper = _Mapper(data, detail, channels, builder)
        mapper.run(present)
        read = {measurement.mlf.name, measurement.mrf.name} | ({setting.name} if setting else set())
        self._skip_unnamed(builder, present - named - read, subfolders, named, detail)
        errors = [_error_entry(e, mapper.wells) for e in data.errors]
        if strict and (builder.missing or errors):
            first = builder.missing[0]["path"] if builder.missing else errors[0]["message"]
            raise PlateFormatError(
                f"{measurement.mlf}: {len(builder.missing)} recorded images are missing and "
                f"{len(errors)} records are acquisition errors (first: {first}); without --strict "
                "they are left out and listed in plate.json")
        by_index = {c.index: c for c in channels.values()}
        self._check_png_geometry(mapper.png, by_index)
        steps = mapper.z_steps()
        super().__init__(
            builder.build(),
            channel_names={c.index: c.name for c in by_index.values() if c.name},
            pixel_size_um=plate_pixel_size(by_index.values()),
            extra=self._plate_extra(measurement, detail, data, numbering, by_index, steps, mapper,
                                    errors, setting if settings else None),
        )
        self.detail = detail
        self._channels = by_index
        self._png = frozenset(mapper.png)
        self._mtime_ns = measurement.mlf.stat().st_mtime_ns
        self._layouts: dict[int, TiffLayout] = {}

    # -- opening ------------------------------------------------------------------------------
    @staticmethod
    def _skip_unnamed(builder: WorkspaceBuilder, unnamed: set[str], subfolders: list[str],
                      named: set[str], detail: MeasurementDetail) -> None:
        shading = {g.attributes.get("ShadingCorrectionSource") for g in detail.channels.values()}
        for rel in unnamed:
            if rel.rpartition("/")[2] in shading:
                builder.skip(rel, "shading-correction image named by the .mrf, not a plane")
            elif rel.lower().endswith(_METADATA_SUFFIXES):
                builder.skip(rel, "CellVoyager metadata, not a plane")
            else:
                builder.skip(rel, "not named in any record of MeasurementData.mlf")
        used = {rel.partition("/")[0] for rel in named if "/" in rel}
        for folder in subfolders:
            if folder not in used:
                builder.skip(folder + "/", "folder not named in any record of MeasurementData.mlf")

    @staticmethod
    def _check_png_geometry(png: set[PlaneKey], channels: dict[int, FlatChannel]) -> None:
        for index in {key.channel for key in png}:
            channel = channels[index]  # type: ignore[index]
            geometry = channel.geometry
            if geometry is None or not (geometry.width and geometry.height and geometry.dtype):
                raise PlateFormatError(
                    f"PNG planes of Ch {channel.ch} need its width, height and bit depth from "
                    "MeasurementDetail.mrf (HorizontalPixels, VerticalPixels, InputBitDepth 1-16)")

    @staticmethod
    def _plate_extra(measurement: Measurement, detail: MeasurementDetail, data: MeasurementData,
               numbering: str, channels: dict[int, FlatChannel], steps: dict[int, float | None],
               mapper: _Mapper, errors: list[dict[str, Any]], setting: Path | None) -> dict[str, Any]:
        system = detail.attributes.get("TargetSystem")
        release = detail.attributes.get("ReleaseNumber")
        about = ", ".join(v for v in (system, release) if v)
        known_steps = {s for s in steps.values() if s is not None}
        return {
            "instrument": "Yokogawa CellVoyager" + (f" ({about})" if about else ""),
            "measurement": str(measurement.folder),
            "mlf": measurement.mlf.name,
            "mrf": measurement.mrf.name,
            "mes": setting.name if setting else None,
            "plate_rows": detail.rows,
            "plate_columns": detail.columns,
            "measurement_detail": detail.attributes,
            "sample_plate": detail.plate,
            "records": {"images": len(data.images), "errors": len(data.errors),
                        "other": dict(data.other_types)},
            "channel_numbering": numbering,
            "channel_map": [
                {**c.describe(), "z_step_um": steps.get(c.index)} for c in sorted(
                    channels.values(), key=lambda c: c.index)
            ],
            "z_step_um": known_steps.pop() if len(known_steps) == 1 else None,
            "position_convention": POSITION_CONVENTION,
            "fields": mapper.positions(),
            "acquisition_errors": errors,
        }

    # -- one plane ----------------------------------------------------------------------------
    def _layout(self, channel: int) -> TiffLayout:
        layout = self._layouts.get(channel)
        if layout is None:
            geometry = self._channels[channel].geometry
            assert geometry is not None and geometry.width and geometry.height and geometry.dtype
            layout = self._layouts[channel] = plan_tiff(
                (geometry.height, geometry.width), geometry.dtype, geometry.pixel_size_um)
        return layout

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        """A PNG plane's info from metadata alone (no I/O); None for TIFF planes (they need a stat)."""
        if key not in self._png:
            return None
        layout = self._layout(key.channel)  # type: ignore[arg-type]
        return PlaneInfo(key=key, size=layout.size, mtime_ns=self._mtime_ns, layout=layout,
                         channel_name=self._channel_name(key), pixel_size_um=self._plane_pixel_size(key))

    def info(self, key: PlaneKey) -> PlaneInfo:
        return self.info_ready(key) or super().info(key)

    def _plane_pixel_size(self, key: PlaneKey) -> float | None:
        channel = self._channels.get(key.channel) if isinstance(key.channel, int) else None
        own = channel.geometry.pixel_size_um if channel and channel.geometry else None
        return own if own is not None else self.pixel_size_um()

    def _probe_pixel_size(self) -> float | None:
        # Only when the .mrf knows no pixel size (sizes that differ are per plane), and never from a PNG.
        if any(c.geometry and c.geometry.pixel_size_um for c in self._channels.values()):
            return None
        if self._workspace.keys[:1] and self._workspace.keys[0] in self._png:
            return None
        return super()._probe_pixel_size()

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        if key not in self._png:
            return super().read_plane(key)
        layout = self._layout(key.channel)  # type: ignore[arg-type]
        return _decode_png(self.path_of(key), layout.shape, layout.dtype)

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        if key not in self._png:
            return super().plane_format(key)
        self.path_of(key)  # unknown keys raise PlaneNotFoundError
        layout = self._layout(key.channel)  # type: ignore[arg-type]
        return layout.shape, layout.dtype.str.lstrip("<>|="), self._plane_pixel_size(key)


def _decode_png(path: Path, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """A PNG plane's pixels, as the ``.mrf`` promised them (uint8 data may widen to uint16)."""
    import imagecodecs
    import numpy as np

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlaneReadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        array = imagecodecs.png_decode(data)
    except Exception as exc:  # imagecodecs raises its own error types for damaged files
        raise PlaneReadError(f"{path}: cannot decode the PNG: {exc}") from exc
    if array.shape != shape:
        raise PlaneReadError(f"{path}: PNG is {array.shape}, MeasurementDetail.mrf says {shape}")
    if array.dtype != dtype:
        if array.dtype.kind != "u" or array.dtype.itemsize > dtype.itemsize:
            raise PlaneReadError(f"{path}: PNG holds {array.dtype}, MeasurementDetail.mrf says {dtype}")
        array = array.astype(dtype)
    return np.ascontiguousarray(array)
