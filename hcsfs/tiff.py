"""The TIFF file served for an encoded plane: layout planned from metadata, bytes served by range.

Pure code, no I/O. :func:`plan_tiff` builds the whole header from the plane's shape, dtype and pixel size,
so the file size is exact before any pixel is decoded and the same plane always gives the same bytes.
The file is an uncompressed little-endian baseline TIFF (BigTIFF only when it would reach 4 GiB) with one
IFD and the pixels in one contiguous strip at the end::

    [TIFF header][IFD][out-of-line tag values][padding to 16][pixels, C order, little-endian]

Pixel size is written the ImageJ way: ``unit=micron`` in an ImageJ ``ImageDescription`` plus
``XResolution``/``YResolution`` in pixels per micron with ``ResolutionUnit`` NONE (with INCH, Bio-Formats
reports 16,510 µm per pixel).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

__all__ = ["TiffLayout", "plan_tiff", "pixel_buffer", "read_range", "encode_tiff", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = frozenset(
    np.dtype(t) for t in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8")
)
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
_PIXEL_ALIGNMENT = 16
_CLASSIC_LIMIT = 2**32

# TIFF field types
_ASCII, _SHORT, _LONG, _RATIONAL, _LONG8 = 2, 3, 4, 5, 16
_TYPE_FORMAT = {_ASCII: "s", _SHORT: "H", _LONG: "I", _RATIONAL: "II", _LONG8: "Q"}
_TYPE_SIZE = {_ASCII: 1, _SHORT: 2, _LONG: 4, _RATIONAL: 8, _LONG8: 8}


@dataclass(frozen=True, slots=True)
class _TiffFlavour:
    """What differs between classic TIFF and BigTIFF."""

    bigtiff: bool
    header_size: int
    entry_size: int
    count_format: str  # IFD entry count
    offset_format: str  # offsets and entry counts
    inline_size: int  # bytes of a value that fit in the entry itself

    def file_header(self, first_ifd: int) -> bytes:
        if self.bigtiff:
            return b"II" + struct.pack("<HHHQ", 43, 8, 0, first_ifd)
        return b"II" + struct.pack("<HI", 42, first_ifd)


_CLASSIC = _TiffFlavour(False, 8, 12, "<H", "<I", 4)
_BIGTIFF = _TiffFlavour(True, 16, 20, "<Q", "<Q", 8)


@dataclass(frozen=True, slots=True)
class TiffLayout:
    """The planned file: its header bytes (padding included) and where the pixels go."""

    header: bytes = field(repr=False)
    shape: tuple[int, int]
    dtype: np.dtype
    bigtiff: bool

    @property
    def pixel_offset(self) -> int:
        return len(self.header)

    @property
    def pixel_nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    @property
    def size(self) -> int:
        """Exact size of the served file in bytes."""
        return self.pixel_offset + self.pixel_nbytes

    def needs_pixels(self, offset: int, size: int) -> bool:
        """Whether the byte range ``[offset, offset + size)`` reaches into the pixel data."""
        return size > 0 and offset + size > self.pixel_offset and offset < self.size


def _resolution(pixel_size_um: float | None) -> tuple[int, int]:
    """Pixels per micron as a TIFF RATIONAL; the exact decimal of the pixel size where it fits."""
    if pixel_size_um is None:
        return (1, 1)
    if not (pixel_size_um > 0 and np.isfinite(pixel_size_um)):
        raise ValueError(f"pixel size must be a positive finite number, not {pixel_size_um!r}")
    per_micron = 1 / Fraction(repr(float(pixel_size_um)))
    limit = _CLASSIC_LIMIT - 1
    if per_micron.numerator > limit or per_micron.denominator > limit:
        per_micron = per_micron.limit_denominator(limit)
        if per_micron.numerator > limit:  # a pixel smaller than ~2e-10 µm: clamp
            per_micron = Fraction(limit, 1)
    return (per_micron.numerator, per_micron.denominator)


def imagej_description(pixel_size_um: float | None) -> str:
    """The ImageJ ``ImageDescription`` for one plane (depends on metadata only)."""
    text = "ImageJ=1.11a\nimages=1\n"
    if pixel_size_um is not None:
        text += "unit=micron\n"
    return text


def _tags(
    shape: tuple[int, int], dtype: np.dtype, pixel_size_um: float | None, pixel_offset: int,
    nbytes: int, flavour: _TiffFlavour,
) -> list[tuple[int, int, object]]:
    height, width = shape
    offset_type = _LONG8 if flavour.bigtiff else _LONG
    resolution = _resolution(pixel_size_um)
    return [  # sorted by tag number, as TIFF requires
        (254, _LONG, 0),  # NewSubfileType
        (256, _LONG, width),  # ImageWidth
        (257, _LONG, height),  # ImageLength
        (258, _SHORT, dtype.itemsize * 8),  # BitsPerSample
        (259, _SHORT, 1),  # Compression: none
        (262, _SHORT, 1),  # PhotometricInterpretation: MinIsBlack
        (270, _ASCII, imagej_description(pixel_size_um).encode("ascii") + b"\0"),
        (273, offset_type, pixel_offset),  # StripOffsets
        (277, _SHORT, 1),  # SamplesPerPixel
        (278, _LONG, height),  # RowsPerStrip: one strip
        (279, offset_type, nbytes),  # StripByteCounts
        (282, _RATIONAL, resolution),  # XResolution
        (283, _RATIONAL, resolution),  # YResolution
        (284, _SHORT, 1),  # PlanarConfiguration: contiguous
        (296, _SHORT, 1),  # ResolutionUnit: NONE (the unit is in the description)
        (339, _SHORT, _SAMPLE_FORMAT[dtype.kind]),  # SampleFormat
    ]


def _value_bytes(field_type: int, value: object) -> tuple[int, bytes]:
    if field_type == _ASCII:
        assert isinstance(value, bytes)
        return len(value), value
    if field_type == _RATIONAL:
        assert isinstance(value, tuple)
        return 1, struct.pack("<II", *value)
    return 1, struct.pack("<" + _TYPE_FORMAT[field_type], value)


def _build_header(
    shape: tuple[int, int], dtype: np.dtype, pixel_size_um: float | None, flavour: _TiffFlavour,
    pixel_offset: int, nbytes: int,
) -> bytes:
    tags = _tags(shape, dtype, pixel_size_um, pixel_offset, nbytes, flavour)
    ifd_offset = flavour.header_size
    ifd_size = struct.calcsize(flavour.count_format) + len(tags) * flavour.entry_size
    ifd_size += struct.calcsize(flavour.offset_format)
    extra_offset = ifd_offset + ifd_size
    entries = [struct.pack(flavour.count_format, len(tags))]
    extra = b""
    for tag, field_type, value in tags:
        count, data = _value_bytes(field_type, value)
        if len(data) <= flavour.inline_size:
            inline = data.ljust(flavour.inline_size, b"\0")
        else:
            inline = struct.pack(flavour.offset_format, extra_offset + len(extra))
            extra += data + (b"\0" if len(data) % 2 else b"")  # values start on word boundaries
        entries.append(struct.pack("<HH", tag, field_type))
        entries.append(struct.pack(flavour.offset_format, count) + inline)
    entries.append(struct.pack(flavour.offset_format, 0))  # no next IFD
    header = flavour.file_header(ifd_offset) + b"".join(entries) + extra
    return header


def plan_tiff(
    shape: tuple[int, int], dtype: np.dtype | str, pixel_size_um: float | None = None
) -> TiffLayout:
    """Plan the served TIFF of a ``shape`` plane of ``dtype``: exact size, header bytes.

    Layouts are immutable and shared: all planes of one shape, dtype and pixel size get one object.
    """
    return _plan_tiff(tuple(int(n) for n in shape), np.dtype(dtype).str, pixel_size_um)


@functools.lru_cache(maxsize=1024)
def _plan_tiff(shape: tuple[int, ...], dtype_str: str, pixel_size_um: float | None) -> TiffLayout:
    dtype = np.dtype(dtype_str)
    if dtype == np.dtype(bool):
        dtype = np.dtype("u1")
    dtype = dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype
    if dtype.newbyteorder("=") not in SUPPORTED_DTYPES and dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"cannot serve planes of dtype {dtype} as TIFF")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"a plane must be 2-D and non-empty, got shape {shape}")
    shape = (int(shape[0]), int(shape[1]))
    nbytes = shape[0] * shape[1] * dtype.itemsize
    for flavour in (_CLASSIC, _BIGTIFF):
        # The header's length does not depend on the offset values it holds, so plan it twice.
        draft = _build_header(shape, dtype, pixel_size_um, flavour, 0, 0)
        pixel_offset = -(-len(draft) // _PIXEL_ALIGNMENT) * _PIXEL_ALIGNMENT
        if flavour.bigtiff or pixel_offset + nbytes < _CLASSIC_LIMIT:
            header = _build_header(shape, dtype, pixel_size_um, flavour, pixel_offset, nbytes)
            header = header.ljust(pixel_offset, b"\0")
            return TiffLayout(header, shape, dtype, flavour.bigtiff)
    raise AssertionError("unreachable")


def pixel_buffer(layout: TiffLayout, plane: np.ndarray) -> memoryview:
    """The plane's pixel bytes as the layout stores them (little-endian, C order), as a flat view."""
    if plane.shape != layout.shape:
        raise ValueError(f"plane shape {plane.shape} differs from the planned {layout.shape}")
    data = np.ascontiguousarray(plane, dtype=layout.dtype)
    return memoryview(data).cast("B")  # type: ignore[arg-type]


def read_range(
    layout: TiffLayout, offset: int, size: int, pixels: bytes | bytearray | memoryview | None
) -> bytes:
    """Bytes ``[offset, offset + size)`` of the file, short only at EOF.

    ``pixels`` (from :func:`pixel_buffer`) may be ``None`` when the range lies inside the header.
    """
    if offset < 0 or size < 0:
        raise ValueError("offset and size must be >= 0")
    end = min(offset + size, layout.size)
    if offset >= end:
        return b""
    header_end = layout.pixel_offset
    if end <= header_end:
        return layout.header[offset:end]
    if pixels is None:
        raise ValueError("this range needs the pixel data")
    view = memoryview(pixels)
    start = max(offset, header_end)
    body = view[start - header_end : end - header_end]
    if offset >= header_end:
        return bytes(body)
    return b"".join((layout.header[offset:], body))  # one copy of the pixels, not two


def encode_tiff(plane: np.ndarray, pixel_size_um: float | None = None) -> bytes:
    """The whole served file of ``plane`` (for tests, benchmarks and small planes)."""
    layout = plan_tiff(plane.shape, plane.dtype, pixel_size_um)  # type: ignore[arg-type]
    return read_range(layout, 0, layout.size, pixel_buffer(layout, plane))
