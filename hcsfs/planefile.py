"""The bytes of one served plane file, for one open handle.

Two kinds: :class:`PassthroughFile` serves a source TIFF unchanged through its own file descriptor (so a
source file replaced while open keeps serving the old bytes), and :class:`EncodedFile` serves the TIFF
encoding of a decoded plane, pinning the pixels once loaded so one handle never mixes two versions.

A passthrough file rewritten in place (same inode) would mix versions under one handle, and one
changed after the kernel cached its size would be served cut short or zero-filled: so a passthrough
handle refuses (``PlaneReadError``, hence ``EIO``) a file whose status changed after the mount began
(``st_ctime``, which every write, truncation and rename into place moves forward), or while it is open,
or that ends before the size it was opened with.
``read`` may block (call it from a worker thread); ``read_ready`` answers only without blocking.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hcsfs.errors import PlaneReadError
from hcsfs.tiff import read_range

if TYPE_CHECKING:
    from pathlib import Path

    from hcsfs.tiff import TiffLayout

__all__ = ["PlaneFile", "PassthroughFile", "EncodedFile"]

_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
_PREFETCH_LIMIT = 64 << 20

Chunk = bytes | memoryview


class PlaneFile(Protocol):
    size: int

    def read(self, offset: int, size: int) -> Chunk:
        """Bytes ``[offset, offset + size)``, short only at EOF; may block."""
        ...

    def read_ready(self, offset: int, size: int) -> Chunk | None:
        """The same bytes if they can be had without blocking, else ``None``."""
        ...

    def close(self) -> None: ...


class PassthroughFile:
    """A source TIFF served byte for byte."""

    def __init__(self, path: Path, size: int, *, unchanged_since_ns: int | None = None) -> None:
        """``unchanged_since_ns``: refuse the file if its status changed after this time (the mount's
        start, for the plate's own planes; ``None`` for run outputs, which are written while mounted)."""
        self.path = path
        self.size = size
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise PlaneReadError(f"{path}: cannot open: {exc.strerror or exc}") from exc
        stat = os.fstat(self._fd)
        self._ctime_ns = stat.st_ctime_ns
        problem = None
        if unchanged_since_ns is not None and stat.st_ctime_ns > unchanged_since_ns:
            problem = "changed after the mount started (planes are immutable while mounted; remount " \
                      "to serve the new version)"
        elif stat.st_size != size:
            problem = f"is {stat.st_size} bytes, {size} expected: it changed while being opened"
        if problem is not None:
            os.close(self._fd)
            raise PlaneReadError(f"{path}: {problem}")
        self._read_ahead = size <= _PREFETCH_LIMIT

    def _start_reading_ahead(self) -> None:
        """Readers of a plane read all of it: on the first request the page cache cannot answer, ask
        the disk for the whole file, so the following requests find their bytes cached and are answered
        without a worker thread. Not at open: a warm re-read is served from the mount's own page cache
        (``keep_cache``) and sends no read at all, and the advice walks every cached page (45 us for
        8 MiB, most of an open's cost)."""
        if self._read_ahead:
            self._read_ahead = False
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_WILLNEED)

    def _check_unchanged(self) -> None:
        """After a read: the bytes just read belong to the version this handle opened."""
        if os.fstat(self._fd).st_ctime_ns != self._ctime_ns:
            raise PlaneReadError(f"{self.path}: changed while open (planes are immutable while mounted)")

    def read(self, offset: int, size: int) -> bytes:
        want = max(0, min(size, self.size - offset))
        try:
            self._start_reading_ahead()
            data = os.pread(self._fd, size, offset)
            if len(data) < want:  # pread may return short before EOF; never pass that on
                parts = [data]
                done = len(data)
                while done < want:
                    more = os.pread(self._fd, want - done, offset + done)
                    if not more:
                        break
                    parts.append(more)
                    done += len(more)
                data = b"".join(parts)
        except OSError as exc:
            raise PlaneReadError(f"{self.path}: read failed: {exc.strerror or exc}") from exc
        if len(data) < want:  # the kernel would zero-fill the rest: an error instead
            raise PlaneReadError(f"{self.path}: ends at {offset + len(data)}, before its size {self.size}")
        self._check_unchanged()
        return data[:want] if len(data) > want else data

    def read_ready(self, offset: int, size: int) -> memoryview | None:
        """The bytes if the page cache holds all of them (``RWF_NOWAIT``: never waits for a disk)."""
        if _RWF_NOWAIT is None:
            return None
        want = max(0, min(size, self.size - offset))
        buffer = bytearray(want)
        try:
            got = os.preadv(self._fd, [buffer], offset, _RWF_NOWAIT)
        except OSError:  # EAGAIN (not cached), EOPNOTSUPP (filesystem without NOWAIT), ...
            self._start_reading_ahead()
            return None
        if got != want:
            self._start_reading_ahead()
            return None
        self._check_unchanged()
        return memoryview(buffer)

    def close(self) -> None:
        os.close(self._fd)


class EncodedFile:
    """A plane encoded on read as the TIFF planned in ``layout``."""

    def __init__(self, layout: TiffLayout, load_pixels: Callable[[], memoryview]) -> None:
        self.layout = layout
        self.size = layout.size
        self._load_pixels = load_pixels
        self._pixels: memoryview | None = None
        self._lock = threading.Lock()

    def _pixels_now(self) -> memoryview:
        with self._lock:
            if self._pixels is None:
                pixels = self._load_pixels()
                if len(pixels) != self.layout.pixel_nbytes:
                    raise PlaneReadError(
                        f"decoded plane has {len(pixels)} bytes, expected {self.layout.pixel_nbytes}"
                    )
                self._pixels = pixels
            return self._pixels

    def _slice(self, offset: int, size: int, pixels: memoryview) -> Chunk:
        start = offset - self.layout.pixel_offset
        if start >= 0:  # inside the pixels: a view, no copy
            return pixels[start : start + size]
        return read_range(self.layout, offset, size, pixels)

    def read(self, offset: int, size: int) -> Chunk:
        if not self.layout.needs_pixels(offset, size):
            return read_range(self.layout, offset, size, None)
        return self._slice(offset, size, self._pixels_now())

    def read_ready(self, offset: int, size: int) -> Chunk | None:
        if not self.layout.needs_pixels(offset, size):
            return read_range(self.layout, offset, size, None)
        pixels = self._pixels
        return None if pixels is None else self._slice(offset, size, pixels)

    def close(self) -> None:
        self._pixels = None
