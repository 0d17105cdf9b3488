"""The plane index tables of a mount: ``/.hcsfs/planes.csv`` and ``/.hcsfs/loaddata.csv``.

Both are produced row by row from one pass over a source (pure: no FUSE), so a caller can stream them
to any size of plate:

- ``planes.csv``: one row per plane: ``name, well, site, channel, channel_name, z, t, shape, dtype,
  pixel_size_um, source_path``. ``shape`` is ``HEIGHTxWIDTH`` (rows x columns); ``source_path`` is the
  instrument file served unchanged (empty for encoded planes: zarr, memory). Encoded planes take shape
  and dtype from their planned TIFF (no I/O); passed-through planes from their own TIFF header, read
  by a few threads at once. A plane whose header cannot be read keeps its row with empty fields.
- ``loaddata.csv``: CellProfiler's LoadData table: one row per image set (well, site, z, t) with
  ``Metadata_Plate, Metadata_Well, Metadata_Row, Metadata_Column, Metadata_Site, Metadata_ZSlice,
  Metadata_TimePoint`` and, per channel ``c`` of the plate, ``FileName_w<c>`` and ``PathName_w<c>``
  (the folder the planes are seen in: the mountpoint). An image set that lacks a channel has empty
  cells for it. It needs the keys only, never a plane's info.

Sources list keys in natural order (well, site, channel, z, t), so the planes of one (well, site) are
consecutive: loaddata rows are built one site at a time and memory stays bounded by one site.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcsfs.errors import HcsfsError, NotAPlaneError, PlaneNotFoundError
from hcsfs.naming import PlaneKey, parse_well, row_letters
from hcsfs.sources.tiffheader import fast_tiff_format

if TYPE_CHECKING:
    from hcsfs.sources.base import PlaneInfo, PlateSource

__all__ = ["PLANES_COLUMNS", "loaddata_columns", "loaddata_lines", "planes_lines", "image_name"]

PLANES_COLUMNS = ("name", "well", "site", "channel", "channel_name", "z", "t", "shape", "dtype",
                  "pixel_size_um", "source_path")
METADATA_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Column", "Metadata_Site",
                    "Metadata_ZSlice", "Metadata_TimePoint")
_BATCH = 64
_HEADER_THREADS = 4


class _CsvText:
    """CSV rows written into one buffer and taken out as bytes, many rows at a time (a writer and a
    buffer per row cost more than the row itself: a third of building ``planes.csv``)."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def add(self, values: Iterable[Any]) -> None:
        self._writer.writerow(["" if v is None else v for v in values])

    def take(self) -> bytes:
        text = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


def _line(values: Iterable[Any]) -> bytes:
    text = _CsvText()
    text.add(values)
    return text.take()


def _row_of(source: PlateSource, key: PlaneKey) -> tuple[Any, ...] | None:
    try:
        info: PlaneInfo | None = source.info(key)
    except (NotAPlaneError, PlaneNotFoundError):
        return None  # left out of the listing too
    except (HcsfsError, OSError):
        info = None
    shape: tuple[int, int] | None = None
    dtype: str | None = None
    pixel_size = info.pixel_size_um if info is not None else None
    if info is not None and info.layout is not None:
        shape, dtype = info.layout.shape, info.layout.dtype.str.lstrip("<>|=")
    fast = None
    if info is not None and info.passthrough is not None:
        try:
            fast = fast_tiff_format(info.passthrough, want_pixel_size=pixel_size is None)
        except OSError:
            fast = None
    if fast is not None:
        shape, dtype = fast[0], fast[1]
        pixel_size = pixel_size if pixel_size is not None else fast[2]
    elif shape is None:
        try:
            shape, dtype, header_pixel_size = source.plane_format(key)
            pixel_size = pixel_size if pixel_size is not None else header_pixel_size
        except (HcsfsError, OSError, ValueError):
            pass  # a damaged plane: listed (as it is at the root), its format unknown
    return (
        key.name, key.well, key.site, key.channel, info.channel_name if info is not None else None,
        key.z, key.t, f"{shape[0]}x{shape[1]}" if shape is not None else None, dtype,
        repr(pixel_size) if pixel_size is not None else None,
        str(info.passthrough) if info is not None and info.passthrough is not None else None,
    )


def _rows_text(source: PlateSource, keys: Iterable[PlaneKey]) -> bytes:
    """The rows of ``keys`` (planes only) as CSV text."""
    text = _CsvText()
    for key in keys:
        row = _row_of(source, key)
        if row is not None:
            text.add(row)
    return text.take()


def planes_lines(source: PlateSource) -> Iterator[bytes]:
    """The text of ``planes.csv`` (header first), produced in blocks of many rows."""
    yield _line(PLANES_COLUMNS)
    keys = iter(source.keys())
    if not source.blocking_info:  # in memory: nothing to wait for, no threads
        while batch := list(itertools.islice(keys, _BATCH * 16)):
            yield _rows_text(source, batch)
        return

    def rows(chunk: list[PlaneKey]) -> bytes:
        return _rows_text(source, chunk)

    # Threads hide the latency of headers on network storage; chunks keep their overhead small.
    with ThreadPoolExecutor(_HEADER_THREADS, thread_name_prefix="hcsfs-planes-csv") as pool:
        while batch := list(itertools.islice(keys, _BATCH * _HEADER_THREADS)):
            chunks = [batch[i : i + _BATCH] for i in range(0, len(batch), _BATCH)]
            yield from pool.map(rows, chunks)


def image_name(channel: int | str) -> str:
    """CellProfiler's name for a channel's images: ``w1``, ``w12`` (``FileName_w1``, ``PathName_w1``)."""
    return "w" + re.sub(r"[^A-Za-z0-9_]", "_", str(channel))


def _channels(keys: Iterable[PlaneKey]) -> list[int | str]:
    found = {key.channel for key in keys}
    return sorted(found, key=lambda c: (0, c, "") if isinstance(c, int) else (1, 0, c))


def loaddata_columns(channels: Iterable[int | str]) -> list[str]:
    columns = list(METADATA_COLUMNS)
    for channel in channels:
        columns += [f"FileName_{image_name(channel)}", f"PathName_{image_name(channel)}"]
    return columns


def _axis(value: int | str) -> tuple[int, int | str]:
    return (0, value) if isinstance(value, int) else (1, value)


def loaddata_lines(source: PlateSource, folder: Path | str, plate: str | None = None) -> Iterator[bytes]:
    """The lines of ``loaddata.csv`` for planes seen in ``folder`` (header first)."""
    channels = _channels(source.keys())
    yield _line(loaddata_columns(channels))
    plate_name = plate if plate is not None else _plate_name(source)
    path = str(folder)
    text = _CsvText()
    for (well, site), planes in itertools.groupby(source.keys(), key=lambda k: (k.well, k.site)):
        row, column = parse_well(well)
        sets: dict[tuple[int | str, int | str], dict[int | str, str]] = {}
        for key in planes:
            sets.setdefault((key.z, key.t), {})[key.channel] = key.name
        for z, t in sorted(sets, key=lambda zt: (_axis(zt[0]), _axis(zt[1]))):
            names = sets[(z, t)]
            values: list[Any] = [plate_name, well, row_letters(row), column, site, z, t]
            for channel in channels:
                name = names.get(channel)
                values += [name, path if name is not None else None]
            text.add(values)
        yield text.take()  # one site's image sets


def _plate_name(source: PlateSource) -> str:
    name = str(source.describe().source).rstrip("/")
    return name.rsplit("/", 1)[-1] or name
