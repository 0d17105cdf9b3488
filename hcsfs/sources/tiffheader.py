"""A fast look at a TIFF's first IFD: shape, dtype and ImageJ/MetaMorph pixel size, without tifffile.

``tifffile.TiffFile`` costs about 0.6 ms a file (it parses every tag and the whole page series); a table
of 100,000 planes (``/.hcsfs/planes.csv``) needs only a few tags of each. This reads the header and the
first IFD with ``struct`` (usually one 4 KiB read) and gives up, returning None, on anything unusual
(several samples per pixel, STK files, tags it does not know how to read): callers then ask
:func:`hcsfs.sources.tiffprobe.read_tiff_format`, which is the reference.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from hcsfs.sources.tiffprobe import metadata_xml_props

__all__ = ["fast_tiff_format"]

_FIRST_READ = 4096
_DTYPES = {(1, 8): "u1", (1, 16): "u2", (1, 32): "u4", (2, 8): "i1", (2, 16): "i2", (2, 32): "i4",
           (3, 32): "f4", (3, 64): "f8", (1, 64): "u8", (2, 64): "i8"}
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 16: 8}
_WANTED = {256, 257, 258, 277, 270, 282, 296, 339, 33628}


def _read(fd: int, head: bytes, offset: int, size: int) -> bytes:
    if offset + size <= len(head):
        return head[offset : offset + size]
    return os.pread(fd, size, offset)


def fast_tiff_format(path: str | Path, want_pixel_size: bool = True
                     ) -> tuple[tuple[int, int], str, float | None] | None:
    """``(shape, dtype, pixel_size_um)`` as :func:`~hcsfs.sources.tiffprobe.probe_tiff` gives them,
    or None when this reader is not sure (then use the reference). Raises ``OSError`` only."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.pread(fd, _FIRST_READ, 0)
        if len(head) < 8:
            return None
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None:
            return None
        magic = struct.unpack(order + "H", head[2:4])[0]
        if magic == 42:
            ifd = struct.unpack(order + "I", head[4:8])[0]
            count_fmt, entry_fmt, entry_size, count_size, inline = "H", "HHI4s", 12, 2, 4
        elif magic == 43:
            ifd = struct.unpack(order + "Q", head[8:16])[0]
            count_fmt, entry_fmt, entry_size, count_size, inline = "Q", "HHQ8s", 20, 8, 8
        else:
            return None
        count = struct.unpack(order + count_fmt, _read(fd, head, ifd, count_size))[0]
        if not 0 < count < 4096:
            return None
        table = _read(fd, head, ifd + count_size, count * entry_size)
        if len(table) < count * entry_size:
            return None
        tags: dict[int, tuple[int, int, bytes]] = {}
        for index in range(count):
            tag, kind, n, value = struct.unpack_from(order + entry_fmt, table, index * entry_size)
            if tag in _WANTED:
                tags[tag] = (kind, n, value)
        if 256 not in tags or 257 not in tags:
            return None
        if 33628 in tags and want_pixel_size:  # STK calibration (MetaMorph's UIC tags): the reference
            return None

        def values(tag: int) -> tuple[int, ...] | None:
            kind, n, value = tags[tag]
            size = _TYPE_SIZES.get(kind)
            if size is None:
                return None
            letter = {1: "B", 2: "B", 3: "H", 4: "I", 5: "I", 7: "B", 16: "Q"}[kind]
            n_items = n * (2 if kind == 5 else 1)
            data = value if size * n <= inline else _read(fd, head, struct.unpack(
                order + ("I" if inline == 4 else "Q"), value)[0], size * n)
            if len(data) < size * n:
                return None
            return struct.unpack_from(order + letter * n_items, data)

        def first(tag: int, default: int) -> int | None:
            if tag not in tags:
                return default
            found = values(tag)
            return found[0] if found else None

        width, length = first(256, 0), first(257, 0)
        samples, bits, sample_format = first(277, 1), first(258, 1), first(339, 1)
        if samples != 1 or not width or not length or bits is None or sample_format is None:
            return None
        dtype = _DTYPES.get((sample_format, bits))
        if dtype is None:
            return None
        pixel_size: float | None = None
        if want_pixel_size and 270 in tags:
            raw = values(270)
            if raw is None:
                return None
            description = bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")
            if description.startswith("ImageJ="):
                fields = dict(line.split("=", 1) for line in description.splitlines() if "=" in line)
                resolution = values(282) if 282 in tags else None
                if fields.get("unit") in ("micron", "um", "\\u00B5m", "µm") and resolution:
                    numerator, denominator = resolution[0], resolution[1]
                    pixel_size = denominator / numerator if numerator else None
            elif description.lstrip().startswith("<MetaData>"):
                props = metadata_xml_props(description)
                if props.get("spatial-calibration-x") and props.get("spatial-calibration-units", "um") in (
                        "um", "µm", "micron", "microns"):
                    pixel_size = float(props["spatial-calibration-x"])
        return (int(length), int(width)), dtype, pixel_size
    except (struct.error, ValueError, KeyError):
        return None
    finally:
        os.close(fd)
