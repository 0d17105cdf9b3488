"""OME-Zarr metadata read with :mod:`json`: plate, well, image (multiscales) and level-0 array.

Pure parsing plus single-file reads; no zarr library. Each node is one small JSON document
(``zarr.json`` for zarr v3 / NGFF 0.5, ``.zattrs`` and ``.zarray`` for zarr v2 / NGFF 0.4), so reading a
well costs a few file reads whatever the plate's size. Children are never discovered by listing a
folder: the plate names its wells and a well names its images. Anything malformed raises
:class:`~hcsfs.errors.PlateFormatError` with the file and the reason.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, overload

import numpy as np

from hcsfs.errors import PlateCollisionError, PlateFormatError
from hcsfs.naming import format_well, row_index, row_letters

if TYPE_CHECKING:
    from hcsfs.sources.omezarr.remote import RemotePath

Node = Union[Path, "RemotePath"]
"""A folder of the store: a local path, or a key on object storage (same interface)."""
Folder = Union[str, Path, "RemotePath"]
"""A node as the metadata reader takes it: also a local path as a plain ``str``, which joins and opens
without building :class:`~pathlib.Path` objects (a plate's metadata is tens of thousands of files)."""

__all__ = [
    "ArrayMeta",
    "Folder",
    "ImageMeta",
    "PlateMeta",
    "WellImage",
    "array_documents",
    "can_open",
    "child",
    "parse_array_meta",
    "parse_image_meta",
    "read_array_meta",
    "read_attrs",
    "read_image_meta",
    "read_plate_meta",
    "read_raw",
    "read_well_images",
]

PLANE_AXES = ("t", "c", "z")
_UNIT_TO_UM = {
    "angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "micron": 1.0, "µm": 1.0, "um": 1.0,
    "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6,
}
_ROW_RE = re.compile(r"[A-Za-z]{1,2}")
FILENAME_MAP_ATTRS = ("openhcs_filename_map", "polystore_filename_map")
_READ_SIZE = 1 << 16  # most documents fit one read; below malloc's mmap threshold


def _read_local(path: str | Path) -> bytes:
    """A local file's bytes with bare system calls (about half the time of ``open().read()``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) < _READ_SIZE:
            return data
        parts = [data]
        while more := os.read(fd, _READ_SIZE):
            parts.append(more)
        return b"".join(parts)
    finally:
        os.close(fd)


def _read(path: Folder) -> bytes:
    if isinstance(path, (str, Path)):
        return _read_local(path)
    return path.read_bytes()


def read_raw(path: Folder) -> bytes:
    """A metadata file's bytes. ``FileNotFoundError`` passes through (a missing node); a local read
    error is a :class:`PlateFormatError`; other ``OSError`` (object storage: maybe transient) pass."""
    try:
        return _read(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not isinstance(path, (str, Path)):  # object storage: a network failure, maybe transient
            raise
        raise PlateFormatError(f"{path}: unreadable JSON: {exc}") from exc


_PARSED: dict[tuple[Any, ...], Any] = {}
_PARSED_MAX = 256


def _parsed(key: tuple[Any, ...], parse: Any) -> Any:
    """A parse result shared by equal documents (a plate's field images are usually identical: issue
    14 measured 38,400 of them parsed one by one). Results are frozen; failures are not kept."""
    hit = _PARSED.get(key)
    if hit is None:
        hit = parse()
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = hit
    return hit


def _load_json(path: Folder, raw: bytes | None = None) -> dict[str, Any]:
    """One JSON document. ``FileNotFoundError`` passes through (a missing node); a broken document is
    a :class:`PlateFormatError`; any other ``OSError`` (a network failure on object storage) passes
    through too, so the caller can treat it as transient rather than as a broken well."""
    if raw is None:
        raw = read_raw(path)
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise PlateFormatError(f"{path}: unreadable JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise PlateFormatError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


@overload
def child(node: str, name: str) -> str: ...
@overload
def child(node: Path, name: str) -> Path: ...
@overload
def child(node: RemotePath, name: str) -> RemotePath: ...
def child(node: Folder, name: str) -> Folder:
    """``node / name``; for a ``str`` node a ``str`` (no :class:`~pathlib.Path` built)."""
    if isinstance(node, str):
        return f"{node}/{name}"
    return node / name


@overload
def metadata_file(node: str, zarr_format: int) -> str: ...
@overload
def metadata_file(node: Path, zarr_format: int) -> Path: ...
@overload
def metadata_file(node: RemotePath, zarr_format: int) -> RemotePath: ...
def metadata_file(node: Folder, zarr_format: int) -> Folder:
    """The file holding a group's attributes (``zarr.json`` or ``.zattrs``)."""
    return child(node, "zarr.json" if zarr_format == 3 else ".zattrs")


def read_attrs(node: Folder, zarr_format: int, *, expect: str = "group",
               raw: bytes | None = None) -> dict[str, Any]:
    """A group's attributes with the ``ome`` namespace (v0.5) merged over the top level.

    Raises ``FileNotFoundError`` when the node does not exist (the caller decides whether that is a
    missing well or a broken plate).
    """
    path = metadata_file(node, zarr_format)
    doc = _load_json(path, raw)
    if zarr_format == 3:
        if doc.get("zarr_format") != 3:
            raise PlateFormatError(f"{path}: zarr_format is {doc.get('zarr_format')!r}, expected 3")
        if doc.get("node_type") != expect:
            raise PlateFormatError(f"{path}: node_type is {doc.get('node_type')!r}, expected {expect}")
        attrs = doc.get("attributes", {})
    else:
        attrs = doc
    if not isinstance(attrs, dict):
        raise PlateFormatError(f"{path}: attributes are not a JSON object")
    ome = attrs.get("ome")
    return {**attrs, **ome} if isinstance(ome, dict) else dict(attrs)


def can_open(path: Node) -> bool:
    """A folder whose root metadata mentions ``plate`` (a substring test: no JSON parse)."""
    for name in ("zarr.json", ".zattrs"):
        try:
            if b'"plate"' in _read(path / name):
                return True
        except OSError:
            continue
    return False


# --- plate ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlateMeta:
    """The plate document: NGFF version, zarr format, and its wells by flat well name."""

    version: str
    zarr_format: int
    name: str
    wells: dict[str, str]  # flat well name ("B03") -> path in the store ("B/03")
    acquisitions: list[dict[str, Any]] = field(default_factory=list)
    field_count: int | None = None


def _row_letters(name: Any, index: int | None, path: str) -> str:
    if isinstance(name, str) and _ROW_RE.fullmatch(name):
        return name.upper()
    if index is not None:
        return row_letters(index + 1)
    raise PlateFormatError(f"well {path!r}: row {name!r} is not letters and has no rowIndex")


def _column_number(name: Any, index: int | None, path: str) -> int:
    if isinstance(name, str) and name.isdigit() and int(name) > 0:
        return int(name)
    if isinstance(name, int) and name > 0:
        return name
    if index is not None:
        return index + 1
    raise PlateFormatError(f"well {path!r}: column {name!r} is not a number and has no columnIndex")


def _well_name(entry: Any, rows: list[Any], columns: list[Any]) -> tuple[str, str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise PlateFormatError(f"plate well {entry!r} has no path")
    path = entry["path"].strip("/")
    parts = path.split("/")
    if len(parts) != 2 or not all(parts):
        raise PlateFormatError(f"plate well path {path!r} is not <row>/<column>")
    r, c = entry.get("rowIndex"), entry.get("columnIndex")
    r = r if isinstance(r, int) and 0 <= r < len(rows) else None
    c = c if isinstance(c, int) and 0 <= c < len(columns) else None
    row_name = parts[0] if r is None else rows[r].get("name", parts[0])
    column_name = parts[1] if c is None else columns[c].get("name", parts[1])
    letters = _row_letters(row_name, r, path)
    return format_well(row_index(letters), _column_number(column_name, c, path)), path


def read_plate_meta(root: Node) -> PlateMeta:
    """Parse the plate's root metadata once (v0.5 ``zarr.json`` or v0.4 ``.zattrs``)."""
    zarr_format = 3 if (root / "zarr.json").is_file() else 2
    try:
        attrs = read_attrs(root, zarr_format)
    except FileNotFoundError:
        raise PlateFormatError(f"{root}: no zarr.json or .zattrs: not an OME-Zarr store") from None
    plate = attrs.get("plate")
    if not isinstance(plate, dict):
        raise PlateFormatError(f"{root}: no 'plate' metadata: not an OME-Zarr HCS plate")
    version = str(attrs.get("version") or plate.get("version") or ("0.5" if zarr_format == 3 else "0.4"))
    rows = [r if isinstance(r, dict) else {} for r in plate.get("rows") or []]
    columns = [c if isinstance(c, dict) else {} for c in plate.get("columns") or []]
    entries = plate.get("wells")
    if not isinstance(entries, list):
        raise PlateFormatError(f"{root}: plate.wells is missing or not a list")
    wells: dict[str, str] = {}
    for entry in entries:
        try:
            name, path = _well_name(entry, rows, columns)
        except PlateFormatError as exc:
            raise PlateFormatError(f"{root}: {exc}") from None
        if name in wells and wells[name] != path:
            raise PlateCollisionError(f"{root}: wells {wells[name]!r} and {path!r} are both {name}")
        wells[name] = path
    acquisitions = [a for a in plate.get("acquisitions") or [] if isinstance(a, dict)]
    field_count = plate.get("field_count")
    return PlateMeta(
        version=version, zarr_format=zarr_format, name=str(plate.get("name") or root.name),
        wells=wells, acquisitions=acquisitions,
        field_count=field_count if isinstance(field_count, int) else None,
    )


# --- well ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WellImage:
    path: str
    acquisition: Any = None


def read_well_images(node: Folder, zarr_format: int) -> list[WellImage]:
    """The well's field images in the order it lists them."""
    attrs = read_attrs(node, zarr_format)
    well = attrs.get("well")
    if not isinstance(well, dict) or not isinstance(well.get("images"), list):
        raise PlateFormatError(f"{metadata_file(node, zarr_format)}: no well.images list")
    images = []
    for entry in well["images"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise PlateFormatError(f"{metadata_file(node, zarr_format)}: image entry {entry!r} has no path")
        images.append(WellImage(entry["path"].strip("/"), entry.get("acquisition")))
    return images


# --- image (multiscales) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """What one field image says about its level 0: axis names, path, pixel size, channel names."""

    axes: tuple[str, ...]
    level0: str
    pixel_size_um: float | None
    channel_names: tuple[str, ...] = ()


def _axes(multiscale: dict[str, Any], where: Folder) -> tuple[tuple[str, ...], list[str | None]]:
    raw = multiscale.get("axes")
    if raw is None:  # NGFF 0.1/0.2: always 5-D tczyx
        return ("t", "c", "z", "y", "x"), [None] * 5
    if not isinstance(raw, list) or not raw:
        raise PlateFormatError(f"{where}: multiscales.axes is not a non-empty list")
    names: list[str] = []
    units: list[str | None] = []
    for axis in raw:
        name = axis.get("name") if isinstance(axis, dict) else axis
        if not isinstance(name, str):
            raise PlateFormatError(f"{where}: axis {axis!r} has no name")
        names.append(name.lower())
        unit = axis.get("unit") if isinstance(axis, dict) else None
        units.append(unit if isinstance(unit, str) else None)
    if len(set(names)) != len(names):
        raise PlateFormatError(f"{where}: repeated axis names {names}")
    return tuple(names), units


def _scale(transforms: Any, ndim: int) -> list[float] | None:
    for transform in transforms or []:
        if isinstance(transform, dict) and transform.get("type") == "scale":
            scale = transform.get("scale")
            if isinstance(scale, list) and len(scale) == ndim:
                return [float(s) for s in scale]
    return None


def _pixel_size(
    multiscale: dict[str, Any], dataset: dict[str, Any], axes: tuple[str, ...], units: list[str | None]
) -> float | None:
    """Level-0 x pixel size in µm; ``None`` when x carries no (known) unit."""
    if "x" not in axes:
        return None
    x = axes.index("x")
    unit = units[x]
    if unit is None or unit.lower() not in _UNIT_TO_UM:
        return None
    scale = _scale(dataset.get("coordinateTransformations"), len(axes))
    outer = _scale(multiscale.get("coordinateTransformations"), len(axes))
    value = (scale[x] if scale else 1.0) * (outer[x] if outer else 1.0) * _UNIT_TO_UM[unit.lower()]
    return value if value > 0 and math.isfinite(value) else None


def read_image_meta(node: Folder, zarr_format: int) -> ImageMeta:
    """Parse a field image's ``multiscales`` (first multiscale, first dataset) and ``omero``."""
    return parse_image_meta(node, zarr_format, read_raw(metadata_file(node, zarr_format)))


def parse_image_meta(node: Folder, zarr_format: int, raw: bytes) -> ImageMeta:
    """:func:`read_image_meta` of a document already read (equal documents are parsed once)."""
    return _parsed(("image", zarr_format, raw),  # type: ignore[no-any-return]
                   lambda: _image_meta(node, zarr_format, raw))


def _image_meta(node: Folder, zarr_format: int, raw: bytes) -> ImageMeta:
    attrs = read_attrs(node, zarr_format, raw=raw)
    where = metadata_file(node, zarr_format)
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise PlateFormatError(f"{where}: no multiscales")
    multiscale = multiscales[0]
    axes, units = _axes(multiscale, where)
    datasets = multiscale.get("datasets")
    if not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], dict):
        raise PlateFormatError(f"{where}: multiscales[0].datasets is empty")
    level0 = datasets[0].get("path")
    if not isinstance(level0, str):
        raise PlateFormatError(f"{where}: datasets[0] has no path")
    names: list[str] = []
    omero = attrs.get("omero")
    if isinstance(omero, dict) and isinstance(omero.get("channels"), list):
        for i, channel in enumerate(omero["channels"]):
            label = channel.get("label") if isinstance(channel, dict) else None
            names.append(label if isinstance(label, str) and label else f"c{i + 1}")
    return ImageMeta(axes, level0.strip("/"), _pixel_size(multiscale, datasets[0], axes, units),
                     tuple(names))


# --- array ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArrayMeta:
    """Level-0 array facts, read from its JSON without a zarr library.

    ``read_chunk`` is the unit a reader decodes: the inner chunk of a sharded array, else the chunk.
    ``chunk`` is the unit stored as one key (the shard of a sharded array).
    """

    zarr_format: int
    shape: tuple[int, ...]
    dtype: np.dtype
    chunk: tuple[int, ...]
    read_chunk: tuple[int, ...]
    separator: str
    key_prefix: str  # "c" for the v3 default encoding, "" for v2 keys
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The v3 ``zarr.json`` as read, so an array on object storage opens without reading it again."""

    def chunk_key(self, read_chunk_coords: tuple[int, ...]) -> str:
        """The store key holding a read chunk (its shard's key for a sharded array)."""
        coords = [c * r // s for c, r, s in zip(read_chunk_coords, self.read_chunk, self.chunk, strict=True)]
        parts = [self.key_prefix] if self.key_prefix else []
        parts += [str(c) for c in coords]
        return self.separator.join(parts) if parts else "0"


def _dtype(value: Any, where: Folder) -> np.dtype:
    if not isinstance(value, str):
        raise PlateFormatError(f"{where}: unsupported data type {value!r}")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise PlateFormatError(f"{where}: unsupported data type {value!r}") from None
    if dtype.kind not in "uifb":
        raise PlateFormatError(f"{where}: data type {value!r} is not a numeric pixel type")
    return dtype


def _int_tuple(value: Any, ndim: int, what: str, where: Folder) -> tuple[int, ...]:
    if not (isinstance(value, list) and len(value) == ndim and all(isinstance(v, int) for v in value)):
        raise PlateFormatError(f"{where}: {what} {value!r} is not {ndim} integers")
    return tuple(value)


def _array_v3(node: Folder, raw: bytes) -> ArrayMeta:
    where = child(node, "zarr.json")
    doc = _load_json(where, raw)
    if doc.get("node_type") != "array":
        raise PlateFormatError(f"{where}: node_type is {doc.get('node_type')!r}, expected array")
    shape = doc.get("shape")
    if not isinstance(shape, list):
        raise PlateFormatError(f"{where}: no shape")
    ndim = len(shape)
    shape_t = _int_tuple(shape, ndim, "shape", where)
    grid = doc.get("chunk_grid") or {}
    if grid.get("name") != "regular":
        raise PlateFormatError(f"{where}: chunk grid {grid.get('name')!r} is not supported")
    chunk = _int_tuple((grid.get("configuration") or {}).get("chunk_shape"), ndim, "chunk_shape", where)
    read_chunk = chunk
    codecs = doc.get("codecs") or []
    if codecs and isinstance(codecs[0], dict) and codecs[0].get("name") == "sharding_indexed":
        inner = (codecs[0].get("configuration") or {}).get("chunk_shape")
        read_chunk = _int_tuple(inner, ndim, "inner chunk_shape", where)
    encoding = doc.get("chunk_key_encoding") or {"name": "default"}
    config = encoding.get("configuration") or {}
    if encoding.get("name") == "v2":
        separator, prefix = config.get("separator", "."), ""
    else:
        separator, prefix = config.get("separator", "/"), "c"
    found = doc.get("attributes")
    attributes: dict[str, Any] = found if isinstance(found, dict) else {}
    return ArrayMeta(3, shape_t, _dtype(doc.get("data_type"), where), chunk, read_chunk, separator,
                     prefix, attributes, doc)


def _array_v2(node: Folder, raw: bytes, attrs_raw: bytes | None) -> ArrayMeta:
    where = child(node, ".zarray")
    doc = _load_json(where, raw)
    if doc.get("zarr_format") != 2:
        raise PlateFormatError(f"{where}: zarr_format is {doc.get('zarr_format')!r}, expected 2")
    shape = doc.get("shape")
    if not isinstance(shape, list):
        raise PlateFormatError(f"{where}: no shape")
    shape_t = _int_tuple(shape, len(shape), "shape", where)
    chunk = _int_tuple(doc.get("chunks"), len(shape), "chunks", where)
    if doc.get("order", "C") != "C":
        raise PlateFormatError(f"{where}: order {doc.get('order')!r} is not supported")
    attributes = {} if attrs_raw is None else _load_json(child(node, ".zattrs"), attrs_raw)
    return ArrayMeta(2, shape_t, _dtype(doc.get("dtype"), where), chunk, chunk,
                     doc.get("dimension_separator") or ".", "", attributes)


def array_documents(node: Folder, zarr_format: int, *,
                    with_attributes: bool = False) -> tuple[bytes, bytes | None]:
    """A level-0 array's documents as read: ``zarr.json`` (v3), or ``.zarray`` and, when asked for,
    ``.zattrs`` (v2; ``None`` when absent or not asked for)."""
    if zarr_format == 3:
        return read_raw(child(node, "zarr.json")), None
    raw = read_raw(child(node, ".zarray"))
    if not with_attributes:
        return raw, None
    try:
        return raw, read_raw(child(node, ".zattrs"))
    except FileNotFoundError:
        return raw, None


def parse_array_meta(node: Folder, zarr_format: int, raw: bytes,
                     attrs_raw: bytes | None = None) -> ArrayMeta:
    """The :class:`ArrayMeta` of documents from :func:`array_documents` (equal ones parsed once)."""
    return _parsed(("array", zarr_format, raw, attrs_raw),  # type: ignore[no-any-return]
                   lambda: _array_meta(node, zarr_format, raw, attrs_raw))


def _array_meta(node: Folder, zarr_format: int, raw: bytes, attrs_raw: bytes | None) -> ArrayMeta:
    meta = _array_v3(node, raw) if zarr_format == 3 else _array_v2(node, raw, attrs_raw)
    if any(s < 0 for s in meta.shape) or any(c < 1 for c in meta.chunk + meta.read_chunk):
        raise PlateFormatError(f"{node}: negative shape or empty chunks")
    return meta


def read_array_meta(node: Folder, zarr_format: int, *, with_attributes: bool = False) -> ArrayMeta:
    """Parse a level-0 array's metadata; v2 attributes (``.zattrs``) only when asked for."""
    return parse_array_meta(node, zarr_format,
                            *array_documents(node, zarr_format, with_attributes=with_attributes))
