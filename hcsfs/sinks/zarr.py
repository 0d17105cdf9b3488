"""Write an OME-Zarr HCS plate (NGFF 0.5 / zarr v3 by default, 0.4 / zarr v2 for older readers).

Arrays are created and filled with zarr-python, each with its own folder as the store root, so no
parent group document is written on the way. The group documents (plate, rows, wells, field images)
are plain JSON written by this module: field images when their array is written, and the plate, row
and well documents once, by :meth:`OmeZarrPlateWriter.finish` — never rewritten per well (rewriting
the plate document for each well is what makes position-by-position writers quadratic).

Standard axes ``t, c, z, y, x``; y/x carry ``micrometer`` and the pixel size when it is known (no unit
otherwise, so a reader does not invent one); channel names go into ``omero.channels[].label``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hcsfs.naming import parse_well, row_letters

if TYPE_CHECKING:
    from hcsfs.sources.omezarr.meta import Node

__all__ = ["COMPRESSORS", "FieldArray", "OmeZarrPlateWriter", "ZarrWriteOptions", "zarr_location"]

COMPRESSORS = ("zstd", "lz4", "blosclz4", "none")
AXES = ("t", "c", "z", "y", "x")


@dataclass(frozen=True, slots=True)
class ZarrWriteOptions:
    """How arrays are laid out and compressed."""

    ngff: Literal["0.4", "0.5"] = "0.5"
    chunks: Literal["plane", "well"] = "plane"
    shard: Literal["well"] | tuple[int, ...] | None = None
    compressor: str = "zstd"
    level: int | None = None

    def __post_init__(self) -> None:
        if self.ngff not in ("0.4", "0.5"):
            raise ValueError(f"ngff must be '0.4' or '0.5', not {self.ngff!r}")
        if self.chunks not in ("plane", "well"):
            raise ValueError(f"chunks must be 'plane' or 'well', not {self.chunks!r}")
        if self.compressor not in COMPRESSORS:
            raise ValueError(f"compressor must be one of {', '.join(COMPRESSORS)}, not {self.compressor!r}")
        if self.shard is not None and self.ngff == "0.4":
            raise ValueError("sharding needs zarr v3: use ngff 0.5")
        if isinstance(self.shard, str) and self.shard != "well":
            raise ValueError(f"shard must be 'well' or a 5-D shape, not {self.shard!r}")

    @property
    def zarr_format(self) -> int:
        return 3 if self.ngff == "0.5" else 2

    def chunk_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape) if self.chunks == "well" else (1, 1, 1, *shape[-2:])

    def shard_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        if self.shard is None:
            return None
        if self.shard == "well":
            return tuple(shape)
        shard = tuple(self.shard)
        if len(shard) != 5:
            raise ValueError(f"shard shape {shard} must have 5 entries (t, c, z, y, x)")
        return shard

    def compressors(self, dtype: np.dtype) -> Any:
        """The compressor for zarr-python's ``create_array(compressors=...)`` (or ``None``)."""
        name, level = self.compressor, self.level
        if name == "none":
            return None
        if self.zarr_format == 3:
            from zarr.codecs import BloscCodec, ZstdCodec

            if name == "zstd":
                return ZstdCodec(level=3 if level is None else level)
            if name == "blosclz4":
                return BloscCodec(cname="lz4", clevel=5 if level is None else level, shuffle="shuffle",
                                  typesize=dtype.itemsize)
            from zarr.codecs.numcodecs import LZ4  # not a zarr v3 core codec: zarr-python reads it

            return LZ4(acceleration=1 if level is None else max(1, level))
        import numcodecs

        if name == "zstd":
            return numcodecs.Zstd(level=3 if level is None else level)
        if name == "blosclz4":
            return numcodecs.Blosc(cname="lz4", clevel=5 if level is None else level,
                                   shuffle=numcodecs.Blosc.SHUFFLE)
        return numcodecs.LZ4(acceleration=1 if level is None else max(1, level))


def _write_json(path: Node, doc: Mapping[str, Any]) -> None:
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))


def zarr_location(path: str | os.PathLike[str] | Node, **s3_options: Any) -> Node:
    """A local folder, or the :class:`~hcsfs.sources.omezarr.remote.RemotePath` of an ``s3://`` URL."""
    from hcsfs.sources.omezarr.remote import RemotePath, S3Options, is_url, remote_path

    if isinstance(path, RemotePath):
        return path
    if is_url(path):
        return remote_path(str(path), S3Options.pop_from(s3_options))
    if any(v is not None for v in s3_options.values()):
        raise ValueError(f"{', '.join(s3_options)}: options for s3:// URLs only")
    return Path(path)  # type: ignore[arg-type]


def _array_store(node: Node) -> Any:
    from zarr.storage import LocalStore

    return LocalStore(node) if isinstance(node, Path) else node.zarr_store()


def _axes(pixel_size_um: float | None) -> list[dict[str, str]]:
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    for name in ("z", "y", "x"):
        axis = {"name": name, "type": "space"}
        if pixel_size_um is not None:
            axis["unit"] = "micrometer"
        axes.append(axis)
    return axes


def _omero(channel_names: Sequence[str], dtype: np.dtype) -> dict[str, Any]:
    top = float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
    low = float(np.iinfo(dtype).min) if dtype.kind in "ui" else 0.0
    return {
        "channels": [
            {"label": name, "color": "FFFFFF", "active": True, "coefficient": 1.0,
             "family": "linear", "inverted": False,
             "window": {"min": low, "max": top, "start": low, "end": top}}
            for name in channel_names
        ],
        "rdefs": {"defaultT": 0, "defaultZ": 0, "model": "greyscale"},
    }


class FieldArray:
    """One field image's level-0 ``(t, c, z, y, x)`` array, being filled."""

    def __init__(self, array: Any, options: ZarrWriteOptions) -> None:
        self._array = array
        self.shape: tuple[int, ...] = tuple(array.shape)
        self._buffer: np.ndarray | None = None
        if options.chunks == "well" or options.shard is not None:
            # A chunk or shard spans many planes: gather them and write each chunk once.
            self._buffer = np.zeros(self.shape, dtype=array.dtype)

    def write_plane(self, t: int, c: int, z: int, plane: np.ndarray) -> None:
        """Write one plane (0-based indexes)."""
        if plane.shape != self.shape[-2:]:
            raise ValueError(f"plane shape {plane.shape} differs from the field's {self.shape[-2:]}")
        if self._buffer is not None:
            self._buffer[t, c, z] = plane
        else:
            self._array[t, c, z] = plane

    def close(self) -> None:
        if self._buffer is not None:
            self._array[...] = self._buffer
            self._buffer = None


class OmeZarrPlateWriter:
    """Builds a plate under ``path`` (which must not exist yet); :meth:`finish` writes its metadata."""

    def __init__(self, path: str | os.PathLike[str] | Node, options: ZarrWriteOptions | None = None, *,
                 name: str = "", shared: bool = False) -> None:
        """``path``: a folder or an ``s3://`` location. ``shared``: several writers (Dask workers) fill
        one plate: the folder may exist and a field image another writer created is opened, not an
        error (field documents and array metadata are deterministic, so concurrent creation writes
        the same bytes)."""
        self.path: Node = zarr_location(path)
        self.options = options or ZarrWriteOptions()
        self.name = name or self.path.name
        self.shared = shared
        self._fields: dict[str, dict[int, Any]] = {}
        self._lock = threading.Lock()
        if isinstance(self.path, Path):
            self.path.mkdir(parents=True, exist_ok=shared)
        elif not shared and (self.path / ("zarr.json" if self._v3 else ".zattrs")).is_file():
            raise FileExistsError(f"{self.path} already holds a zarr group")

    @property
    def _v3(self) -> bool:
        return self.options.zarr_format == 3

    @staticmethod
    def well_path(well: str) -> str:
        row, column = parse_well(well)
        return f"{row_letters(row)}/{column}"

    def _group(self, node: Node, ome: dict[str, Any]) -> None:
        if self._v3:
            _write_json(node / "zarr.json", {
                "zarr_format": 3, "node_type": "group",
                "attributes": {"ome": {"version": "0.5", **ome}} if ome else {},
            })
        else:
            _write_json(node / ".zgroup", {"zarr_format": 2})
            if ome:
                _write_json(node / ".zattrs", ome)

    def create_field(
        self, well: str, site: int, shape: tuple[int, int, int, int, int], dtype: np.dtype | str, *,
        channel_names: Sequence[str], pixel_size_um: float | None,
    ) -> FieldArray:
        """Create field image ``site`` (1-based) of ``well`` and its level-0 array."""
        import zarr

        dtype = np.dtype(dtype)
        if len(shape) != 5:
            raise ValueError(f"a field image is (t, c, z, y, x), got shape {shape}")
        if len(channel_names) != shape[1]:
            raise ValueError(f"{len(channel_names)} channel names for {shape[1]} channels")
        image_path = f"{self.well_path(well)}/{site - 1}"
        node = self.path / image_path
        xy = 1.0 if pixel_size_um is None else float(pixel_size_um)
        multiscale: dict[str, Any] = {
            "name": f"{well}/{site - 1}",
            "type": "none",  # one resolution level: nothing was downsampled
            "metadata": {"description": "level 0 only, written by hcsfs convert"},
            "axes": _axes(pixel_size_um),
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, 1.0, xy, xy]}]}],
        }
        if not self._v3:
            multiscale["version"] = "0.4"
        self._group(node, {"multiscales": [multiscale], "omero": _omero(channel_names, dtype)})
        opts = self.options
        chunks = opts.chunk_shape(shape)
        kwargs: dict[str, Any] = {}
        if self._v3:
            kwargs["dimension_names"] = AXES
            kwargs["shards"] = opts.shard_shape(shape)
        else:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        try:
            array = zarr.create_array(
                store=_array_store(node / "0"), shape=shape, chunks=chunks, dtype=dtype,
                compressors=opts.compressors(dtype), fill_value=0,
                zarr_format=opts.zarr_format,  # type: ignore[arg-type]
                write_data=True, **kwargs,
            )
        except zarr.errors.ContainsArrayError:
            if not self.shared:
                raise
            array = zarr.open_array(_array_store(node / "0"), mode="r+",
                                    zarr_format=opts.zarr_format)  # type: ignore[arg-type]
            if tuple(array.shape) != tuple(shape) or np.dtype(array.dtype) != dtype:
                raise ValueError(f"{node / '0'}: another writer made it {array.shape} {array.dtype}, "
                                 f"not {shape} {dtype}") from None
        with self._lock:
            self._fields.setdefault(well, {})[site] = image_path
        return FieldArray(array, opts)

    def write_field(self, well: str, site: int, data: np.ndarray, *, channel_names: Sequence[str],
                    pixel_size_um: float | None) -> None:
        """Create and fill a field image from a whole ``(t, c, z, y, x)`` array."""
        field = self.create_field(well, site, data.shape, data.dtype,  # type: ignore[arg-type]
                                  channel_names=channel_names, pixel_size_um=pixel_size_um)
        field._array[...] = data

    def add_field(self, well: str, site: int) -> None:
        """Record a field image another writer created (it gets listed by :meth:`finish`)."""
        with self._lock:
            self._fields.setdefault(well, {})[site] = f"{self.well_path(well)}/{site - 1}"

    def finish(self, *, acquisition_name: str = "hcsfs convert") -> None:
        """Write the well, row and plate documents, once."""
        wells = sorted(self._fields, key=parse_well)
        rows = sorted({parse_well(w)[0] for w in wells})
        columns = sorted({parse_well(w)[1] for w in wells})
        entries = []
        for well in wells:
            row, column = parse_well(well)
            entries.append({"path": self.well_path(well), "rowIndex": rows.index(row),
                            "columnIndex": columns.index(column)})
            images = [{"path": str(site - 1), "acquisition": 0} for site in sorted(self._fields[well])]
            body: dict[str, Any] = {"images": images}
            if not self._v3:
                body["version"] = "0.4"
            self._group(self.path / self.well_path(well), {"well": body})
        for row in rows:
            self._group(self.path / row_letters(row), {})
        field_count = max((len(f) for f in self._fields.values()), default=1)
        plate: dict[str, Any] = {
            "name": self.name,
            "rows": [{"name": row_letters(r)} for r in rows],
            "columns": [{"name": str(c)} for c in columns],
            "wells": entries,
            "acquisitions": [{"id": 0, "name": acquisition_name, "maximumfieldcount": field_count}],
            "field_count": field_count,
        }
        if not self._v3:
            plate["version"] = "0.4"
        self._group(self.path, {"plate": plate})
