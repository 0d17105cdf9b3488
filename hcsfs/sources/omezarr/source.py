"""An OME-Zarr HCS plate (NGFF 0.4 and 0.5, and OpenHCS's layout) as a :class:`PlateSource`.

Cost model (why it is built this way: iohub 0.3 parsed every position's metadata on each open, which
made a per-position loop over a 7,035-well plate O(N^2)):

- opening parses the plate document once, with :mod:`json`;
- ``info``/``read_plane`` of one plane read only that well's metadata (well, image and level-0 array
  JSON, cached after first use) and the chunks the plane needs;
- ``keys()`` (the root listing) needs every well's metadata: it is fetched once, concurrently in
  worker threads, and cached;
- a field image's documents are read for every field, but parsed and turned into sites only when
  their bytes differ from the fields seen before; one :class:`_Site` (array metadata without its
  attributes, TIFF layout, axes, channel names) serves every identical field, so a field costs two
  file reads and a few pointers (a 921,600-plane plate of 38,400 fields: 1.3 s of CPU for keys()).

Zarr groups are never listed: the plate names its wells and each well its images. A well whose
metadata is broken or missing is left out of the view (recorded in ``describe().skipped``/``missing``
and logged); the rest of the plate stays readable.

Sites are the images a well lists, in order, numbered from 1 (only those of one acquisition when
``acquisition`` is given). OpenHCS stores all fields of a well in one 5-D ``(field, c, z, y, x)`` array:
its ``field`` axis becomes the site, and its filename map (when present) says which planes exist.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hcsfs.cache import DEFAULT_CACHE_BYTES, parse_byte_size
from hcsfs.errors import PlaneNotFoundError, PlaneReadError, PlateFormatError
from hcsfs.naming import PlaneKey, parse_well, unchecked_key
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
    array_documents,
    child,
    metadata_file,
    parse_array_meta,
    parse_image_meta,
    read_plate_meta,
    read_raw,
    read_well_images,
)
from hcsfs.sources.omezarr.remote import S3_OPTION_NAMES, RemotePath, S3Options, is_url, remote_path
from hcsfs.tiff import TiffLayout, plan_tiff

__all__ = ["OmeZarrPlateSource"]

log = logging.getLogger(__name__)

_FIELD_AXES = frozenset(("field", "fov", "site", "position", "p"))
_FIELDS_KEPT = 256  # distinct field images whose sites are kept by their documents (_field_sites)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: building a million keys (which form no cycles) would
    otherwise trigger hundreds of collections that walk them all (a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class _Site:
    """How to serve one site's planes. Nothing in it names the well or the field, so one object serves
    every identical field of the plate (the usual plate: one per distinct metadata, not per field)."""

    level0: str  # the level-0 array's folder inside its field image
    meta: ArrayMeta
    axes: tuple[str, ...]
    fixed: tuple[tuple[int, int], ...]  # (axis position, index) of axes that are not t/c/z/y/x
    sizes: tuple[int, int, int]  # t, c, z
    present: frozenset[tuple[int, int]] | None  # (c, z) 0-based when a filename map restricts them
    layout: TiffLayout
    pixel_size_um: float | None
    channel_names: tuple[str, ...]

    def has(self, key: PlaneKey) -> bool:
        """Whether the site holds ``key``'s plane (its well and site are the caller's business)."""
        t, c, z = key.t, key.channel, key.z
        if not (isinstance(t, int) and isinstance(c, int) and isinstance(z, int)):
            return False
        if t > self.sizes[0] or c > self.sizes[1] or z > self.sizes[2]:
            return False
        return self.present is None or (c - 1, z - 1) in self.present

    def index(self, key: PlaneKey) -> tuple[int | None, ...] | None:
        if not self.has(key):
            return None
        t, c, z = key.t, key.channel, key.z
        assert isinstance(t, int) and isinstance(c, int) and isinstance(z, int)
        values = {"t": t - 1, "c": c - 1, "z": z - 1, "y": None, "x": None}
        index: list[int | None] = [values.get(a, 0) for a in self.axes]
        for position, value in self.fixed:
            index[position] = value
        return tuple(index)

    def planes(self) -> list[tuple[int, int, int]]:
        """``(channel, z, t)`` of each plane, 1-based, in key order."""
        t_n, c_n, z_n = self.sizes
        return [(c + 1, z + 1, t + 1) for c in range(c_n) for z in range(z_n) for t in range(t_n)
                if self.present is None or (c, z) in self.present]

    def keys(self, well: str, site: int) -> list[PlaneKey]:
        """The site's keys; ``well`` must be a valid well name and ``site`` >= 1 (not checked again)."""
        return [unchecked_key(well, site, c, z, t) for c, z, t in self.planes()]


@dataclass(frozen=True, slots=True)
class _Well:
    sites: tuple[_Site, ...] = ()
    images: tuple[str, ...] = ()
    """Each site's field image folder in the well (interned: one string per name in the plate)."""
    error: str | None = None
    missing: bool = False


def _sizes(axes: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, int, int]:
    size = dict(zip(axes, shape, strict=False))
    return size.get("t", 1), size.get("c", 1), size.get("z", 1)


def _check_axes(axes: tuple[str, ...], meta: ArrayMeta, where: str | Node) -> list[int]:
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
        # Metadata is read with plain strings as local paths (no Path objects: tens of thousands of files).
        self._folder: str | RemotePath = self.root if isinstance(self.root, RemotePath) else str(self.root)
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
        """Wells being read (single flight); once read, a well moves to ``_done``."""
        self._done: dict[str, _Well] = {}
        # Identical field images (the usual plate) share one copy of what serving needs: array
        # metadata, TIFF layout, axes and channel names (issue 14: 38,400 fields kept 6 KB each).
        self._shared: dict[Any, Any] = {}
        self._fields: dict[tuple[Any, ...], tuple[_Site, ...]] = {}
        """A field image's sites by its documents as read: equal documents are turned into sites once."""
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
        well = self._done.get(name)  # one dict lookup once read: stat and open ask for it per plane
        if well is not None:
            return well
        with self._lock:
            well = self._done.get(name)
            if well is not None:
                return well
            future = self._wells.get(name)
            owner = future is None
            if owner:
                future = self._wells[name] = Future()
        assert future is not None
        if not owner:
            return future.result()
        try:
            well = self._load_well(name)
        except BaseException as exc:
            # Transient (object storage unreachable): fail this request, let the next one retry.
            with self._lock:
                self._wells.pop(name, None)
            future.set_exception(exc)
            raise
        with self._lock:
            self._done[name] = well
            self._wells.pop(name, None)
        future.set_result(well)
        return well

    def _load_well(self, name: str) -> _Well:
        node = child(self._folder, self.plate.wells[name])
        try:
            well = self._read_sites(node)
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
        return well

    def _read_sites(self, node: str | RemotePath) -> _Well:
        zarr_format = self.plate.zarr_format
        images = read_well_images(node, zarr_format)
        if self.acquisition is not None:
            images = [i for i in images if str(i.acquisition) == str(self.acquisition)]
        sites: list[_Site] = []
        folders: list[str] = []
        for image in images:
            folder = sys.intern(image.path)
            field_sites = self._field_sites(child(node, folder))
            sites.extend(field_sites)
            folders.extend([folder] * len(field_sites))
        return _Well(tuple(sites), tuple(folders))

    def _field_sites(self, image_node: str | RemotePath) -> tuple[_Site, ...]:
        """A field image's sites: its documents are read every time, but turned into sites only
        when they differ from every field seen so far (a bounded cache keyed by their bytes)."""
        zarr_format = self.plate.zarr_format
        image = parse_image_meta(image_node, zarr_format, read_raw(metadata_file(image_node, zarr_format)))
        array_node = child(image_node, image.level0)
        is_openhcs = not _FIELD_AXES.isdisjoint(image.axes)
        raws = array_documents(array_node, zarr_format, with_attributes=is_openhcs)
        key = (image, *raws)
        sites = self._fields.get(key)
        if sites is None:
            meta = parse_array_meta(array_node, zarr_format, *raws)
            sites = tuple(self._image_sites(array_node, image, meta))
            with self._lock:
                if len(self._fields) >= _FIELDS_KEPT:
                    self._fields.clear()
                self._fields[key] = sites
        return sites

    def _image_sites(self, array_path: str | RemotePath, image: ImageMeta, read: ArrayMeta) -> list[_Site]:
        fields = _check_axes(image.axes, read, array_path)
        mapped = _filename_map(read) if fields else None
        meta = self._share_meta(self._compact(read))
        layout_key = ("layout", meta.shape[-2:], meta.dtype.str, image.pixel_size_um)
        layout = self._shared.get(layout_key)
        if layout is None:
            layout = self._shared.setdefault(
                layout_key, plan_tiff(meta.shape[-2:], meta.dtype, image.pixel_size_um))  # type: ignore[arg-type]
        axes = self._shared.setdefault(("axes", image.axes), image.axes)
        channel_names = self._shared.setdefault(("names", image.channel_names), image.channel_names)
        sizes = self._shared.setdefault(("sizes", _sizes(axes, meta.shape)), _sizes(axes, meta.shape))
        level0 = sys.intern(image.level0)
        if not fields:
            return [_Site(level0, meta, axes, (), sizes, None, layout, image.pixel_size_um, channel_names)]
        position = fields[0]
        sites = []
        for f in range(meta.shape[position]):
            present = None
            if mapped is not None:
                present = frozenset((c, z) for ff, c, z in mapped if ff == f)
                if not present:
                    continue
            sites.append(_Site(level0, meta, axes, ((position, f),), sizes, present, layout,
                               image.pixel_size_um, channel_names))
        return sites

    def _compact(self, meta: ArrayMeta) -> ArrayMeta:
        """What serving needs of the array metadata: no attributes (OpenHCS's filename map is turned
        into sites already), and its document only where an array opens from it (object storage)."""
        document = {k: v for k, v in meta.document.items() if k != "attributes"} if self.remote else {}
        return replace(meta, attributes={}, document=document)

    def _share_meta(self, meta: ArrayMeta) -> ArrayMeta:
        """One shared copy of equal array metadata (documents compared by value, in C)."""
        key = ("meta", meta.zarr_format, meta.shape, meta.dtype.str, meta.chunk, meta.read_chunk,
               meta.separator, meta.key_prefix)
        with self._lock:
            candidates = self._shared.setdefault(key, [])
            for shared in candidates:
                if shared.document == meta.document:
                    return shared  # type: ignore[no-any-return]
            if len(candidates) < 8:  # fields that all differ (an unusual plate) are kept as read
                candidates.append(meta)
        return meta

    def _site(self, key: PlaneKey) -> tuple[_Site, tuple[int | None, ...]]:
        site = self._served(key)
        index = site.index(key)
        assert index is not None  # _served checked it
        return site, index

    def _served(self, key: PlaneKey) -> _Site:
        """The site serving ``key``'s plane; ``PlaneNotFoundError`` when there is none."""
        well = self._done.get(key.well)
        if well is None:
            if key.well not in self.plate.wells:
                raise PlaneNotFoundError(f"{key.name}: no well {key.well} in {self.root}")
            well = self._well(key.well)
        if well.error is not None:
            raise PlaneNotFoundError(f"{key.name}: well {key.well} is unreadable: {well.error}")
        if not isinstance(key.site, int) or key.site > len(well.sites):
            raise PlaneNotFoundError(f"{key.name}: no such site in well {key.well}")
        site = well.sites[key.site - 1]
        if not site.has(key):
            raise PlaneNotFoundError(f"{key.name}: no such plane in {self.root}")
        return site

    def _array_path(self, key: PlaneKey, site: _Site) -> Node:
        """Where ``key``'s level-0 array lives (built per read: fields keep no path of their own)."""
        well = self._done[key.well]
        assert isinstance(key.site, int)
        return self.root / self.plate.wells[key.well] / well.images[key.site - 1] / site.level0

    # --- PlateSource -----------------------------------------------------------------------------

    def keys(self) -> list[PlaneKey]:
        with self._lock:
            if self._keys is not None:
                return self._keys
        todo = [w for w in self._well_order if w not in self._done]
        if todo:
            workers = max(1, min(self._threads, len(todo)))
            with ThreadPoolExecutor(workers, thread_name_prefix="hcsfs-zarr-meta") as pool:
                list(pool.map(self._well, todo))
        keys: list[PlaneKey] = []
        absent = 0
        with _gc_paused():
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
        site = self._served(key)
        channel = key.channel
        names = site.channel_names
        channel_name = names[channel - 1] if isinstance(channel, int) and channel <= len(names) else None
        return PlaneInfo(
            key=key, size=site.layout.size, mtime_ns=self._mtime_ns, layout=site.layout,
            channel_name=channel_name, pixel_size_um=site.pixel_size_um,
        )

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        """:meth:`info` if the well's metadata is already read (no I/O), else None."""
        if key.well not in self._done:
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
        return self.reader.read_plane(PlaneRef(self._array_path(key, site), site.meta, index, key.name))

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
            done = dict(self._done)
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
