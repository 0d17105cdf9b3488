"""Write planes one at a time into an OME-Zarr plate (``output: zarr``), readable while it grows.

Built on :class:`hcsfs.sinks.zarr.OmeZarrPlateWriter`: a field image is created when its first plane
arrives (its y/x shape and dtype are known then), with one chunk per plane, so writing a plane touches
only its own chunk and concurrent writers of different planes never share one. A plane is complete on
disk when :meth:`ZarrPlaneSink.write` returns; the plate, row and well documents are written once by
:meth:`ZarrPlaneSink.finish`. :func:`read_zarr_plane` reads a plane back from its location record.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcsfs.naming import Index, PlaneKey
from hcsfs.sinks.zarr import FieldArray, OmeZarrPlateWriter, ZarrWriteOptions

if TYPE_CHECKING:
    from hcsfs.sources.omezarr.meta import Node

__all__ = ["ZarrPlaneSink", "ZarrArrayCache"]


class ZarrPlaneSink:
    """A plate whose (t, c, z) axes hold the given index values, in order, filled plane by plane."""

    kind = "zarr"

    def __init__(
        self, path: str | os.PathLike[str] | Node, *, t: Sequence[Index], channel: Sequence[Index],
        z: Sequence[Index], channel_names: Mapping[Any, str] | None = None,
        pixel_size_um: float | None = None, name: str = "", options: ZarrWriteOptions | None = None,
        shared: bool = False,
    ) -> None:
        """``shared``: one of several writers of the same plate (Dask workers; see
        :class:`~hcsfs.sinks.zarr.OmeZarrPlateWriter`); only one of them calls :meth:`finish`, after
        :meth:`add_field` for the fields the others wrote."""
        self._writer = OmeZarrPlateWriter(path, options or ZarrWriteOptions(), name=name, shared=shared)
        self.path = self._writer.path
        self._axes = {"t": list(t), "c": list(channel), "z": list(z)}
        names = channel_names or {}
        self._channel_names = [names.get(c, f"channel {c}") for c in channel]
        self.pixel_size_um = pixel_size_um
        self._fields: dict[tuple[str, Index], FieldArray] = {}
        self._creating: dict[tuple[str, Index], threading.Lock] = {}
        self._others = False
        self._lock = threading.Lock()

    def _field(self, key: PlaneKey, plane: np.ndarray) -> FieldArray:
        """The plane's field image, created by its first plane (under that field's own lock, so writers
        of other fields do not wait for it)."""
        site = (key.well, key.site)
        field = self._fields.get(site)
        if field is None:
            with self._lock:
                creating = self._creating.setdefault(site, threading.Lock())
            with creating:
                field = self._fields.get(site) or self._create_field(key, plane)
        if field.shape[-2:] != plane.shape or field.dtype != plane.dtype:
            raise ValueError(f"{key.name}: plane {plane.shape} {plane.dtype} differs from its field's "
                             f"{field.shape[-2:]} {field.dtype}")
        return field

    def _create_field(self, key: PlaneKey, plane: np.ndarray) -> FieldArray:
        if not isinstance(key.site, int):
            raise ValueError(f"{key.name}: a zarr field needs an integer site")
        shape = (len(self._axes["t"]), len(self._axes["c"]), len(self._axes["z"]), *plane.shape)
        field = self._writer.create_field(
            key.well, key.site, shape, plane.dtype,  # type: ignore[arg-type]
            channel_names=self._channel_names, pixel_size_um=self.pixel_size_um)
        with self._lock:
            self._fields[(key.well, key.site)] = field
        return field

    def write(self, key: PlaneKey, plane: np.ndarray) -> dict[str, Any]:
        """Write one complete plane; returns its location ``{"array", "index"}`` (array relative)."""
        if plane.dtype == np.bool_:
            plane = plane.astype(np.uint8)
        index = (self._axes["t"].index(key.t), self._axes["c"].index(key.channel),
                 self._axes["z"].index(key.z))
        self._field(key, plane).write_plane(*index, plane)
        array = f"{self._writer.well_path(key.well)}/{int(key.site) - 1}/0"
        return {"array": array, "index": list(index)}

    def add_field(self, well: str, site: int) -> None:
        """A field image another writer of this (shared) plate created."""
        with self._lock:
            self._others = True
            self._writer.add_field(well, site)

    def finish(self) -> None:
        """Write the plate, row and well documents (once), if any plane was written."""
        with self._lock:
            for field in self._fields.values():
                field.close()
            if self._fields or self._others:
                self._writer.finish(acquisition_name="hcsfs pipeline")


class ZarrArrayCache:
    """Opens each field array of a plate once and reads planes from location records."""

    def __init__(self, root: Path | Node) -> None:
        self.root = root
        self._arrays: dict[str, Any] = {}
        self._lock = threading.Lock()

    def read(self, location: Mapping[str, Any]) -> np.ndarray:
        import zarr
        from zarr.storage import LocalStore

        path = str(location["array"])
        with self._lock:
            array = self._arrays.get(path)
            if array is None:
                node = self.root / path
                store = LocalStore(node, read_only=True) if isinstance(node, Path) else node.zarr_store()
                array = zarr.open_array(store=store, mode="r")
                self._arrays[path] = array
        t, c, z = location["index"]
        return np.asarray(array[t, c, z])
