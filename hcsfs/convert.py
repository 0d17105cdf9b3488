"""``hcsfs convert``: any plate hcsfs can open → an OME-Zarr HCS plate.

The plate is written under a temporary name beside the destination and renamed into place only when
its metadata is complete, so an interrupted conversion never leaves a store that looks finished.
Planes are grouped by (well, site) into field images ``(t, c, z, y, x)``; the t, c and z indexes a
field uses are mapped in order onto 0..n-1 (a field with channels 1 and 3 becomes a 2-channel image).
Planes whose index is a reduction name (``zmax``) have no place on a standard axis and are left out,
with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcsfs.errors import HcsfsError, OutputExistsError
from hcsfs.naming import PlaneKey
from hcsfs.sinks.zarr import OmeZarrPlateWriter, ZarrWriteOptions, zarr_location
from hcsfs.sources import open_plate
from hcsfs.sources.omezarr.remote import S3_OPTION_NAMES, RemotePath, is_url

if TYPE_CHECKING:
    from hcsfs.sources.base import PlateSource

__all__ = ["ConvertResult", "convert_plate"]

log = logging.getLogger(__name__)

DST_S3_OPTIONS = ("dst_anon", "dst_endpoint_url", "dst_region", "dst_profile", "dst_retries", "dst_timeout")
"""Options for an ``s3://`` destination, named like the source's S3 options with ``dst_`` first."""

Progress = Callable[[int, int], None]
"""Called as ``progress(planes_done, planes_total)`` after each plane."""


@dataclass(slots=True)
class ConvertResult:
    path: Path
    planes: int = 0
    fields: int = 0
    wells: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Field:
    well: str
    site: int
    keys: list[PlaneKey] = field(default_factory=list)

    def axis_values(self) -> tuple[list[int], list[int], list[int]]:
        ts = sorted({k.t for k in self.keys})  # type: ignore[type-var]
        cs = sorted({k.channel for k in self.keys})  # type: ignore[type-var]
        zs = sorted({k.z for k in self.keys})  # type: ignore[type-var]
        return ts, cs, zs  # type: ignore[return-value]


def _group_fields(keys: list[PlaneKey], skipped: list[str]) -> list[_Field]:
    fields: dict[tuple[str, int], _Field] = {}
    for key in keys:
        if not all(isinstance(v, int) for v in (key.site, key.channel, key.z, key.t)):
            skipped.append(key.name)
            continue
        fields.setdefault((key.well, key.site), _Field(key.well, key.site)).keys.append(key)  # type: ignore[arg-type]
    if skipped:
        log.warning("%d planes with reduced axes (e.g. %s) have no standard axis: left out",
                    len(skipped), skipped[0])
    return list(fields.values())


class _Converter:
    def __init__(self, source: PlateSource, writer: OmeZarrPlateWriter, total: int,
                 progress: Progress | None) -> None:
        self.source = source
        self.writer = writer
        self.total = total
        self.progress = progress
        self.done = 0
        self._lock = threading.Lock()
        self.channel_names = dict(source.describe().channel_names)

    def _names(self, first: PlaneKey, channels: list[int]) -> list[str]:
        names = []
        for c in channels:
            name = self.channel_names.get(c)
            if name is None:
                name = self.source.info(first.replace(channel=c)).channel_name
            names.append(name or f"c{c}")
        return names

    def field(self, fld: _Field) -> None:
        ts, cs, zs = fld.axis_values()
        first = fld.keys[0]
        info = self.source.info(first)
        (height, width), dtype, _ = self.source.plane_format(first)
        array = self.writer.create_field(
            fld.well, fld.site, (len(ts), len(cs), len(zs), height, width), dtype,
            channel_names=self._names(first, cs), pixel_size_um=info.pixel_size_um,
        )
        t_at = {v: i for i, v in enumerate(ts)}
        c_at = {v: i for i, v in enumerate(cs)}
        z_at = {v: i for i, v in enumerate(zs)}
        for key in fld.keys:
            plane = self.source.read_plane(key)
            if plane.shape != (height, width):
                raise HcsfsError(
                    f"{key.name}: shape {plane.shape} differs from {(height, width)} of {first.name}; "
                    "a field image needs planes of one shape"
                )
            array.write_plane(t_at[key.t], c_at[key.channel], z_at[key.z], plane)  # type: ignore[index]
            self._tick()
        array.close()

    def _tick(self) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        if self.progress is not None:
            self.progress(done, self.total)


def _partial_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.hcsfs-partial-{os.getpid()}")


def _write_plate(source: PlateSource, writer: OmeZarrPlateWriter, fields: list[_Field], total: int,
                 progress: Progress | None, threads: int) -> None:
    """Every field image, in worker threads, then the plate's metadata once."""
    converter = _Converter(source, writer, total, progress)
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="hcsfs-convert") as pool:
        list(pool.map(converter.field, fields))
    writer.finish(acquisition_name=f"hcsfs convert from {source.format_name}")


def convert_plate(
    src: str | os.PathLike[str] | PlateSource,
    dst: str | os.PathLike[str],
    *,
    ngff: str = "0.5",
    chunks: str = "plane",
    shard: str | tuple[int, ...] | None = None,
    compressor: str = "zstd",
    level: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    threads: int = 2,
    **open_options: Any,
) -> ConvertResult:
    """Convert the plate at ``src`` (a path or an open source) into an OME-Zarr plate at ``dst``.

    Raises :class:`~hcsfs.errors.OutputExistsError` when ``dst`` exists and ``overwrite`` is false.
    ``open_options`` reach :func:`hcsfs.open_plate` (``format=``, ``acquisition=``...).
    """
    options = ZarrWriteOptions(ngff=ngff, chunks=chunks, shard=shard,  # type: ignore[arg-type]
                               compressor=compressor, level=level)
    if is_url(dst) or isinstance(dst, RemotePath):
        dst_options = {k[4:]: open_options.pop(k) for k in DST_S3_OPTIONS if k in open_options}
        if not any(v is not None for v in dst_options.values()):  # default: the source's S3 options
            dst_options = {k: open_options[k] for k in S3_OPTION_NAMES if k in open_options}
        target = zarr_location(dst, **dst_options)
        return _convert_to_remote(src, target, options, overwrite=overwrite,  # type: ignore[arg-type]
                                  progress=progress, threads=threads, **open_options)
    dst = Path(dst).absolute()
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} exists; pass overwrite to replace it")
    source = open_plate(src, **open_options)
    result = ConvertResult(dst)
    fields = _group_fields(list(source.keys()), result.skipped)
    if not fields:
        raise HcsfsError(f"{src}: no planes to convert")
    partial = _partial_path(dst)
    if partial.exists():
        shutil.rmtree(partial)
    name = Path(source.describe().source).name or dst.stem
    writer = OmeZarrPlateWriter(partial, options, name=name)
    total = sum(len(f.keys) for f in fields)
    try:
        _write_plate(source, writer, fields, total, progress, threads)
        _replace(partial, dst)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if source is not src:
            source.close()
    return _counted(result, fields)


def _convert_to_remote(src: str | os.PathLike[str] | PlateSource, dst: RemotePath,
                       options: ZarrWriteOptions, *, overwrite: bool, progress: Progress | None,
                       threads: int, **open_options: Any) -> ConvertResult:
    """Object storage has no rename: the store is written in place and its plate document, written
    last, is what makes it a plate (until then no reader detects one). An existing plate is refused
    unless ``overwrite``; then its plate document goes first (it stops looking finished), then the
    rest of it, and the new store is written."""
    root_doc = dst / ("zarr.json" if options.zarr_format == 3 else ".zattrs")
    existing = root_doc.is_file() or (dst / ".zgroup").is_file() or (dst / "zarr.json").is_file()
    if existing and not overwrite:
        raise OutputExistsError(f"{dst} exists; pass overwrite to replace it")
    source = open_plate(src, **open_options)
    try:
        result = ConvertResult(dst)  # type: ignore[arg-type]
        fields = _group_fields(list(source.keys()), result.skipped)
        if not fields:
            raise HcsfsError(f"{src}: no planes to convert")
        if existing:
            for name in ("zarr.json", ".zattrs", ".zgroup"):
                (dst / name).unlink(missing_ok=True)
            dst.delete_tree()
        name = Path(source.describe().source).name or dst.name
        writer = OmeZarrPlateWriter(dst, options, name=name)
        total = sum(len(f.keys) for f in fields)
        try:
            _write_plate(source, writer, fields, total, progress, threads)
        except BaseException:
            with contextlib.suppress(Exception):
                dst.delete_tree()  # what was written has no plate document: remove it
            raise
    finally:
        if source is not src:
            source.close()
    return _counted(result, fields)


def _counted(result: ConvertResult, fields: list[_Field]) -> ConvertResult:
    result.planes = sum(len(f.keys) for f in fields)
    result.fields = len(fields)
    result.wells = len({f.well for f in fields})
    return result


def _replace(partial: Path, dst: Path) -> None:
    """Move the finished store into place; an existing ``dst`` is removed only after that."""
    if not dst.exists():
        os.rename(partial, dst)
        return
    old = dst.with_name(f".{dst.name}.hcsfs-old-{os.getpid()}")
    os.rename(dst, old)
    os.rename(partial, dst)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()
