"""An OME-Zarr HCS plate (NGFF 0.4 and 0.5, and OpenHCS's layout) as a :class:`PlateSource`.

Cost model (why it is built this way: iohub 0.3 parsed every position's metadata on each open, which
made a per-position loop over a 7,035-well plate O(N^2)):

- opening parses the plate document once, with :mod:`json`;
- ``info``/``read_plane`` of one plane read only that well's metadata (well, image and level-0 array
  JSON, cached after first use) and the chunks the plane needs;
- ``keys()`` (the root listing) needs every well's metadata: it is fetched once, concurrently in
  worker threads, and cached.

Zarr groups are never listed: the plate names its wells and each well its images. A well whose
metadata is broken or missing is left out of the view (recorded in ``describe().skipped``/``missing``
and logged); the rest of the plate stays readable.

Sites are the images a well lists, in order, numbered from 1 (only those of one acquisition when
``acquisition`` is given). OpenHCS stores all fields of a well in one 5-D ``(field, c, z, y, x)`` array:
its ``field`` axis becomes the site, and its filename map (when present) says which planes exist.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hcsfs.cache import DEFAULT_CACHE_BYTES, parse_byte_size
from hcsfs.errors import PlaneNotFoundError, PlaneReadError, PlateFormatError
from hcsfs.naming import PlaneKey, parse_well
from hcsfs.sources.base import Listed, PlaneInfo, PlateDescription, SourceDefaults
from hcsfs.sources.omezarr.backends import ZarrImpl, get_zarr_impl
from hcsfs.sources.omezarr.chunks import ChunkReader, PlaneRef
from hcsfs.sources.omezarr.diskcache import DiskChunkCache
from hcsfs.sources.omezarr.meta import (
    FILENAME_MAP_ATTRS,
    ArrayMeta,
    ImageMeta,
    Node,
    PlateMeta,
    metadata_file,
    read_array_meta,
    read_image_meta,
    read_plate_meta,
    read_well_images,
)
from hcsfs.sources.omezarr.remote import S3_OPTION_NAMES, RemotePath, S3Options, is_url, remote_path
from hcsfs.tiff import TiffLayout, plan_tiff

__all__ = ["OmeZarrPlateSource"]

log = logging.getLogger(__name__)

_FIELD_AXES = ("field", "fov", "site", "position", "p")


@dataclass(frozen=True, slots=True)
class _Site:
    """One site of a well: where its planes live and how to index them."""

    array_path: Node
    meta: ArrayMeta
    axes: tuple[str, ...]
    fixed: tuple[tuple[int, int], ...]  # (axis position, index) of axes that are not t/c/z/y/x
    sizes: tuple[int, int, int]  # t, c, z
    present: frozenset[tuple[int, int]] | None  # (c, z) 0-based when a filename map restricts them
    layout: TiffLayout
    pixel_size_um: float | None
    channel_names: tuple[str, ...]

    def index(self, key: PlaneKey) -> tuple[int | None, ...] | None:
        t, c, z = key.t, key.channel, key.z
        if not (isinstance(t, int) and isinstance(c, int) and isinstance(z, int)):
            return None
        if t > self.sizes[0] or c > self.sizes[1] or z > self.sizes[2]:
            return None
        if self.present is not None and (c - 1, z - 1) not in self.present:
            return None
        values = {"t": t - 1, "c": c - 1, "z": z - 1, "y": None, "x": None}
        index: list[int | None] = [values.get(a, 0) for a in self.axes]
        for position, value in self.fixed:
            index[position] = value
        return tuple(index)

    def keys(self, well: str, site: int) -> list[PlaneKey]:
        t_n, c_n, z_n = self.sizes
        return [
            PlaneKey(well, site, c + 1, z + 1, t + 1)
            for c in range(c_n) for z in range(z_n) for t in range(t_n)
            if self.present is None or (c, z) in self.present
        ]


@dataclass(frozen=True, slots=True)
class _Well:
    sites: tuple[_Site, ...] = ()
    error: str | None = None
    missing: bool = False


def _sizes(axes: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, int, int]:
    size = dict(zip(axes, shape, strict=False))
    return size.get("t", 1), size.get("c", 1), size.get("z", 1)


def _check_axes(axes: tuple[str, ...], meta: ArrayMeta, where: Node) -> list[int]:
    """Validate the level-0 axes; return the positions of field axes (OpenHCS)."""
    if len(axes) != len(meta.shape):
        raise PlateFormatError(f"{where}: {len(axes)} axes {axes} but the array is {len(meta.shape)}-D")
    if axes[-2:] != ("y", "x"):
        raise PlateFormatError(f"{where}: the last two axes are {axes[-2:]}, expected ('y', 'x')")
    if min(meta.shape[-2:]) < 1:
        raise PlateFormatError(f"{where}: empty planes (shape {meta.shape})")
    fields = []
    for position, (name, size) in enumerate(zip(axes[:-2], meta.shape[:-2], strict=False)):
        if name in _FIELD_AXES:
            fields.append(position)
        elif name not in ("t", "c", "z") and size != 1:
            raise PlateFormatError(f"{where}: axis {name!r} of size {size} is not t, c, z or field")
    if len(fields) > 1:
        raise PlateFormatError(f"{where}: more than one field axis in {axes}")
    return fields


def _filename_map(meta: ArrayMeta) -> list[tuple[int, int, int]] | None:
    for attr in FILENAME_MAP_ATTRS:
        mapping = meta.attributes.get(attr)
        if isinstance(mapping, dict):
            coords = []
            for value in mapping.values():
                if isinstance(value, list) and len(value) >= 3 and all(isinstance(v, int) for v in value[:3]):
                    coords.append((value[0], value[1], value[2]))
            return coords
    return None


class OmeZarrPlateSource(SourceDefaults):
    """Planes of an OME-Zarr HCS plate, decoded from chunks and served as encoded TIFFs."""

    format_name = "ome-zarr"
    blocking_info = True
    caches_planes = True
    """Decoded chunks stay in this source's byte-bounded cache (the mount's --cache-size budget)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        acquisition: int | str | None = None,
        zarr_impl: str | ZarrImpl = "zarr-python",
        cache_bytes: int | str = DEFAULT_CACHE_BYTES // 4,
        threads: int | None = None,
        disk_cache: str | os.PathLike[str] | None = None,
        disk_cache_size: int | str = "10G",
        **s3_options: Any,
    ) -> None:
        """``path``: a folder, or an ``s3://bucket/key`` URL (then ``s3_options`` are
        :class:`~hcsfs.sources.omezarr.remote.S3Options`: anon, endpoint_url, region, profile, retries,
        timeout). ``disk_cache``: a folder for decoded chunks, at most ``disk_cache_size`` bytes."""
        self.root: Node
        if isinstance(path, RemotePath) or is_url(path):
            options = S3Options.pop_from(s3_options)
            self.root = path if isinstance(path, RemotePath) else remote_path(str(path), options)
        else:
            self.root = Path(path).resolve()
        if s3_options:
            names = ", ".join(sorted(s3_options))
            known = ", ".join(S3_OPTION_NAMES)
            raise PlateFormatError(f"unknown option(s) {names} (object storage takes {known} with "
                                   "s3:// URLs)")
        self.remote = not isinstance(self.root, Path)
        try:
            self.plate: PlateMeta = read_plate_meta(self.root)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or not self.remote:
                raise
            raise PlateFormatError(f"{self.root}: cannot read the plate: {exc}") from exc
        self.acquisition = acquisition
        if acquisition is not None and self.plate.acquisitions:
            ids = {str(a.get("id")) for a in self.plate.acquisitions}
            if str(acquisition) not in ids:
                raise PlateFormatError(
                    f"{self.root}: no acquisition {acquisition!r} (the plate has {sorted(ids)})"
                )
        root_doc = metadata_file(self.root, self.plate.zarr_format)
        self._mtime_ns = root_doc.stat().st_mtime_ns if isinstance(root_doc, Path) else root_doc.mtime_ns()
        # Well metadata is fetched concurrently for readdir; on object storage each file is a request.
        self._threads = threads or (32 if self.remote else 16)
        self._disk_cache = None
        if disk_cache is not None:
            self._disk_cache = DiskChunkCache(disk_cache, parse_byte_size(disk_cache_size),
                                              namespace=f"{self.root}@{self._mtime_ns}")
        self._impl_spec = zarr_impl
        self._cache_bytes = parse_byte_size(cache_bytes)
        self._reader: ChunkReader | None = None
        self._lock = threading.Lock()
        self._wells: dict[str, Future[_Well]] = {}
        # Identical field images (the usual plate) share one copy of what serving needs: array
        # metadata, TIFF layout, axes and channel names (issue 14: 38,400 fields kept 6 KB each).
        self._shared: dict[Any, Any] = {}
        self._keys: list[PlaneKey] | None = None
        self._well_order = sorted(self.plate.wells, key=parse_well)

    # --- lazy per-well metadata ------------------------------------------------------------------

    @property
    def reader(self) -> ChunkReader:
        with self._lock:
            if self._reader is None:
                self._reader = ChunkReader(get_zarr_impl(self._impl_spec), self._cache_bytes,
                                           disk_cache=self._disk_cache,
                                           concurrency=16 if self.remote else 4)
            return self._reader

    def _well(self, name: str) -> _Well:
        """The well's metadata, read once however many threads ask (single flight)."""
        with self._lock:
            future = self._wells.get(name)
            owner = future is None
            if owner:
                future = self._wells[name] = Future()
        assert future is not None
        if owner:
            try:
                future.set_result(self._load_well(name))
            except BaseException as exc:
                # Transient (object storage unreachable): fail this request, let the next one retry.
                with self._lock:
                    self._wells.pop(name, None)
                future.set_exception(exc)
        return future.result()

    def _load_well(self, name: str) -> _Well:
        node = self.root / self.plate.wells[name]
        try:
            sites = self._read_sites(name, node)
        except FileNotFoundError as exc:
            if str(exc.filename or "") == str(metadata_file(node, self.plate.zarr_format)):
                # A sparse plate: listed, never written. Summarised by keys(), not one line per well.
                log.debug("%s: well %s is listed by the plate but absent", self.root, name)
                return _Well(error="listed by the plate but absent", missing=True)
            log.warning("%s: well %s left out: missing %s", self.root, name, exc.filename)
            return _Well(error=f"missing {exc.filename}")
        except (PlateFormatError, ValueError) as exc:
            log.warning("%s: well %s left out: %s", self.root, name, exc)
            return _Well(error=str(exc))
        except OSError as exc:  # only object storage lets these through (meta._load_json)
            log.error("%s: well %s metadata could not be read: %s", self.root, name, exc)
            raise PlaneReadError(f"{self.root}: well {name} metadata could not be read: {exc}") from exc
        return _Well(tuple(sites))

    def _read_sites(self, well: str, node: Node) -> list[_Site]:
        zarr_format = self.plate.zarr_format
        images = read_well_images(node, zarr_format)
        if self.acquisition is not None:
            images = [i for i in images if str(i.acquisition) == str(self.acquisition)]
        sites: list[_Site] = []
        for image in images:
            image_node = node / image.path
            meta = read_image_meta(image_node, zarr_format)
            sites.extend(self._image_sites(image_node, meta))
        return sites

    def _image_sites(self, image_node: Node, image: ImageMeta) -> list[_Site]:
        array_path = image_node / image.level0
        is_openhcs = any(a in _FIELD_AXES for a in image.axes)
        meta = self._share_meta(read_array_meta(array_path, self.plate.zarr_format,
                                                with_attributes=is_openhcs))
        fields = _check_axes(image.axes, meta, array_path)
        layout_key = ("layout", meta.shape[-2:], meta.dtype.str, image.pixel_size_um)
        layout = self._shared.get(layout_key)
        if layout is None:
            layout = self._shared.setdefault(
                layout_key, plan_tiff(meta.shape[-2:], meta.dtype, image.pixel_size_um))  # type: ignore[arg-type]
        axes = self._shared.setdefault(("axes", image.axes), image.axes)
        channel_names = self._shared.setdefault(("names", image.channel_names), image.channel_names)
        sizes = self._shared.setdefault(("sizes", _sizes(axes, meta.shape)), _sizes(axes, meta.shape))
        if not fields:
            return [_Site(array_path, meta, axes, (), sizes, None, layout,
                          image.pixel_size_um, channel_names)]
        position = fields[0]
        mapped = _filename_map(meta)
        sites = []
        for f in range(meta.shape[position]):
            present = None
            if mapped is not None:
                present = frozenset((c, z) for ff, c, z in mapped if ff == f)
                if not present:
                    continue
            sites.append(_Site(array_path, meta, axes, ((position, f),), sizes, present, layout,
                               image.pixel_size_um, channel_names))
        return sites

    def _share_meta(self, meta: ArrayMeta) -> ArrayMeta:
        """One shared copy of equal array metadata (documents compared by value, in C)."""
        key = ("meta", meta.zarr_format, meta.shape, meta.dtype.str, meta.chunk, meta.read_chunk,
               meta.separator, meta.key_prefix)
        with self._lock:
            candidates = self._shared.setdefault(key, [])
            for shared in candidates:
                if shared.document == meta.document and shared.attributes == meta.attributes:
                    return shared  # type: ignore[no-any-return]
            if len(candidates) < 8:  # fields that all differ (an unusual plate) are kept as read
                candidates.append(meta)
        return meta

    def _site(self, key: PlaneKey) -> tuple[_Site, tuple[int | None, ...]]:
        if key.well not in self.plate.wells:
            raise PlaneNotFoundError(f"{key.name}: no well {key.well} in {self.root}")
        well = self._well(key.well)
        if well.error is not None:
            raise PlaneNotFoundError(f"{key.name}: well {key.well} is unreadable: {well.error}")
        if not isinstance(key.site, int) or key.site > len(well.sites):
            raise PlaneNotFoundError(f"{key.name}: no such site in well {key.well}")
        site = well.sites[key.site - 1]
        index = site.index(key)
        if index is None:
            raise PlaneNotFoundError(f"{key.name}: no such plane in {self.root}")
        return site, index

    # --- PlateSource -----------------------------------------------------------------------------

    def keys(self) -> list[PlaneKey]:
        with self._lock:
            if self._keys is not None:
                return self._keys
        todo = [w for w in self._well_order if w not in self._wells]
        if todo:
            workers = max(1, min(self._threads, len(todo)))
            with ThreadPoolExecutor(workers, thread_name_prefix="hcsfs-zarr-meta") as pool:
                list(pool.map(self._well, todo))
        keys: list[PlaneKey] = []
        absent = 0
        for name in self._well_order:
            well = self._well(name)
            absent += well.missing
            for number, site in enumerate(well.sites, start=1):
                keys.extend(site.keys(name, number))
        if absent:
            log.warning("%s: %d of %d wells listed by the plate are absent", self.root, absent,
                        len(self._well_order))
        with self._lock:
            self._keys = keys
        return keys

    def info(self, key: PlaneKey) -> PlaneInfo:
        site, _ = self._site(key)
        channel = key.channel
        names = site.channel_names
        channel_name = names[channel - 1] if isinstance(channel, int) and channel <= len(names) else None
        return PlaneInfo(
            key=key, size=site.layout.size, mtime_ns=self._mtime_ns, layout=site.layout,
            channel_name=channel_name, pixel_size_um=site.pixel_size_um,
        )

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        """:meth:`info` if the well's metadata is already read (no I/O), else None."""
        future = self._wells.get(key.well)
        if future is None or not future.done():
            return None
        return self.info(key)

    def listed(self) -> Iterator[Listed]:
        """Every plane with its size: all planes of a field image share one layout, so the site's
        metadata is looked up once per field, not once per plane."""
        mtime_ns, last, size = self._mtime_ns, None, 0
        for key in self.keys():
            if (key.well, key.site) != last:
                last = (key.well, key.site)
                size = self._site(key)[0].layout.size
            yield key, size, mtime_ns

    def wells(self) -> list[str]:
        """The plate's wells that have planes (each well's metadata is read once, as for keys)."""
        return [name for name in self._well_order if self._well(name).sites]

    def well_keys(self, well: str) -> list[PlaneKey]:
        """One well's keys from its own metadata only (``/.by-well/<well>/`` reads no other well)."""
        if well not in self.plate.wells:
            return []
        return [key for number, site in enumerate(self._well(well).sites, start=1)
                for key in site.keys(well, number)]

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        site, index = self._site(key)
        return self.reader.read_plane(PlaneRef(site.array_path, site.meta, index, key.name))

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        site, _ = self._site(key)
        return site.layout.shape, site.meta.dtype.str.lstrip("<>|="), site.pixel_size_um

    def _first_site(self, tries: int = 8) -> _Site | None:
        """The first readable site, looking at no more than ``tries`` wells (O(1) in plate size)."""
        for name in self._well_order[:tries]:
            well = self._well(name)
            if well.sites:
                return well.sites[0]
        return None

    def describe(self) -> PlateDescription:
        """Plate facts; channel names and pixel size come from the first readable well.

        Wells found broken or missing so far are reported; after ``keys()`` that is all of them.
        """
        first = self._first_site() if self._well_order else None
        skipped, missing = [], []
        with self._lock:
            done = {n: f.result() for n, f in self._wells.items() if f.done()}
        for name in self._well_order:
            well = done.get(name)
            if well is None or well.error is None:
                continue
            entry = {"name": name, "path": self.plate.wells[name]}
            if well.missing:
                missing.append(entry)
            else:
                skipped.append({"path": self.plate.wells[name], "reason": well.error})
        extra: dict[str, Any] = {
            "ngff_version": self.plate.version,
            "zarr_format": self.plate.zarr_format,
            "plate_name": self.plate.name,
            "acquisition": "all" if self.acquisition is None else self.acquisition,
            "acquisitions": self.plate.acquisitions,
            "zarr_impl": self._impl_spec if isinstance(self._impl_spec, str) else self._impl_spec.name,
        }
        return PlateDescription(
            format=self.format_name, source=str(self.root),
            channel_names={i + 1: n for i, n in enumerate(first.channel_names)} if first else {},
            pixel_size_um=first.pixel_size_um if first else None,
            skipped=skipped, missing=missing, extra=extra,
        )

    def cache_statistics(self) -> Any:
        return self.reader.statistics()

    def open_arguments(self) -> tuple[str, dict[str, Any]]:
        """``(location, options)`` that reopen this plate with :func:`hcsfs.open_plate` elsewhere
        (Dask workers): a path or URL, and the options that matter there."""
        options: dict[str, Any] = {"format": self.format_name}
        if self.acquisition is not None:
            options["acquisition"] = self.acquisition
        if isinstance(self._impl_spec, str):
            options["zarr_impl"] = self._impl_spec
        if isinstance(self.root, RemotePath):
            defaults = S3Options()
            for name in S3_OPTION_NAMES:
                value = getattr(self.root.options, name)
                if value != getattr(defaults, name):
                    options[name] = value
        return str(self.root), options

    def close(self) -> None:
        """Drop cached chunks and open arrays; metadata stays (it is small)."""
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
