"""Grayscale PNG whose size is known before it is encoded (pure: no I/O).

The pixels go into zlib *stored* (uncompressed) deflate blocks, so the file's length depends only on
the image's shape and bit depth: a mount can announce the size of ``/.hcsfs/overview/w1.png`` without
rendering the plate, just as it does for TIFFs. The cost is no compression (an 8-bit 3000 x 2000
overview is 6 MB).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["stored_png", "stored_png_size"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BLOCK = 65535  # the largest stored deflate block


def _raw_size(shape: tuple[int, int], itemsize: int) -> int:
    height, width = shape
    return height * (1 + width * itemsize)  # a filter byte (0: none) before each row


def _zlib_size(raw: int) -> int:
    blocks = max(1, -(-raw // _BLOCK))
    return 2 + raw + 5 * blocks + 4  # header, data, per-block headers, adler-32


def stored_png_size(shape: tuple[int, int], dtype: np.dtype | str) -> int:
    """The exact length of :func:`stored_png` of an array of this shape and dtype."""
    itemsize = np.dtype(dtype).itemsize
    idat = _zlib_size(_raw_size(shape, itemsize))
    return len(_SIGNATURE) + (12 + 13) + (12 + idat) + 12


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def stored_png(array: np.ndarray) -> bytes:
    """``array`` (2-D uint8 or uint16) as a grayscale PNG of :func:`stored_png_size` bytes."""
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8 or uint16 array, got {array.dtype} {array.shape}")
    height, width = array.shape
    rows = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).reshape(height, -1)
    raw = np.zeros((height, 1 + rows.shape[1] * rows.itemsize), np.uint8)
    raw[:, 1:] = rows.view(np.uint8).reshape(height, -1)
    data = raw.data.cast("B")  # blocks are views: the pixels are copied once, by the join
    parts: list[bytes | memoryview] = [b"\x78\x01"]  # zlib header: deflate, 32K window, no dictionary
    for start in range(0, max(len(data), 1), _BLOCK):
        block = data[start : start + _BLOCK]
        final = 1 if start + _BLOCK >= len(data) else 0
        parts += (struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF), block)
    parts.append(struct.pack(">I", zlib.adler32(data)))
    header = struct.pack(">IIBBBBB", width, height, array.dtype.itemsize * 8, 0, 0, 0, 0)
    crc = zlib.crc32(b"IDAT")
    for part in parts:
        crc = zlib.crc32(part, crc)
    idat = [struct.pack(">I", sum(len(p) for p in parts)), b"IDAT", *parts, struct.pack(">I", crc)]
    return b"".join([_SIGNATURE, _chunk(b"IHDR", header), *idat, _chunk(b"IEND", b"")])
