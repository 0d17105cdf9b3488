"""``/.hcsfs/planes.csv`` and ``/.hcsfs/loaddata.csv``: generated once, held compressed, streamed.

A table is produced by one pass over the source (on the first ``stat`` or ``open``, in a worker
thread) and kept as zlib-compressed blocks of about 256 KiB of text each, so its exact size is known
before any byte is served and a plate of a million planes costs a few MiB of memory, not the 150 MiB
of its text. A read decompresses only the blocks it touches; an open file keeps the last block it
decompressed, so a sequential reader decompresses each block once. The plate's planes do not change
while mounted, so neither does a table (as with ``plate.json``).
"""

from __future__ import annotations

import bisect
import threading
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from hcsfs.fs.tree import Entry, NodeKind
from hcsfs.planeindex import loaddata_lines, planes_lines

if TYPE_CHECKING:
    from hcsfs.sources.base import PlateSource

__all__ = ["StreamedText", "StreamedTextFile", "IndexFiles"]

BLOCK_BYTES = 256 << 10


class StreamedText:
    """Text made once from ``produce()`` (lines of bytes), kept as compressed blocks."""

    def __init__(self, produce: Callable[[], Iterable[bytes]], block_bytes: int = BLOCK_BYTES) -> None:
        self._produce = produce
        self._block_bytes = block_bytes
        self._lock = threading.Lock()
        self._starts: list[int] | None = None
        self._blocks: list[bytes] = []
        self._size = 0

    def _build(self) -> list[int]:
        with self._lock:
            if self._starts is not None:
                return self._starts
            starts: list[int] = []
            blocks: list[bytes] = []
            pending = bytearray()
            size = 0

            def flush() -> None:
                starts.append(size - len(pending))
                blocks.append(zlib.compress(bytes(pending), 1))
                pending.clear()

            for line in self._produce():
                pending += line
                size += len(line)
                if len(pending) >= self._block_bytes:
                    flush()
            if pending or not blocks:
                flush()
            self._blocks, self._size = blocks, size
            self._starts = starts
            return starts

    @property
    def size(self) -> int:
        """The exact size in bytes (builds the text on first use)."""
        self._build()
        return self._size

    @property
    def compressed_bytes(self) -> int:
        self._build()
        return sum(len(block) for block in self._blocks)

    def block_at(self, offset: int) -> tuple[int, int]:
        """``(index, start)`` of the block holding byte ``offset``."""
        starts = self._build()
        index = max(0, bisect.bisect_right(starts, offset) - 1)
        return index, starts[index]

    def block(self, index: int) -> bytes:
        self._build()
        return zlib.decompress(self._blocks[index])

    def read(self, offset: int, size: int) -> bytes:
        return self.open().read(offset, size)

    def open(self) -> StreamedTextFile:
        self._build()
        return StreamedTextFile(self)

    def tobytes(self) -> bytes:
        self._build()
        return b"".join(self.block(i) for i in range(len(self._blocks)))


class StreamedTextFile:
    """One open handle of a :class:`StreamedText` (the mount's file-handle protocol)."""

    def __init__(self, text: StreamedText) -> None:
        self.text = text
        self.size = text.size
        self._cached: tuple[int, int, bytes] | None = None  # index, start, data

    def _cached_range(self, offset: int, size: int) -> bytes | None:
        if self._cached is None:
            return None
        _, start, data = self._cached
        if start <= offset and offset + size <= start + len(data):
            return data[offset - start : offset - start + size]
        return None

    def read_ready(self, offset: int, size: int) -> bytes | None:
        """The bytes without decompressing anything, or None (then :meth:`read` in a worker thread)."""
        if offset >= self.size or size <= 0:
            return b""
        return self._cached_range(offset, min(size, self.size - offset))

    def read(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        parts = []
        while size > 0:
            ready = self._cached_range(offset, size)
            if ready is not None:
                parts.append(ready)
                break
            index, start = self.text.block_at(offset)
            data = self.text.block(index)
            self._cached = (index, start, data)
            part = data[offset - start : offset - start + size]
            if not part:
                break
            parts.append(part)
            offset += len(part)
            size -= len(part)
        return b"".join(parts)

    def close(self) -> None:
        self._cached = None


class IndexFiles:
    """The two tables of one mount's ``/.hcsfs/``."""

    def __init__(self, source: PlateSource, mountpoint: Path | None) -> None:
        self.source = source
        self.mountpoint = mountpoint
        self.planes = StreamedText(lambda: planes_lines(source))
        folder = mountpoint if mountpoint is not None else Path(".")
        self.loaddata = StreamedText(lambda: loaddata_lines(source, folder))

    def entries(self) -> dict[str, Entry]:
        entries = {"planes.csv": self._entry(self.planes)}
        if self.mountpoint is not None:  # PathName needs the folder the planes are seen in
            entries["loaddata.csv"] = self._entry(self.loaddata)
        return entries

    @staticmethod
    def _entry(text: StreamedText) -> Entry:
        return Entry(NodeKind.FILE, text.tobytes, size=lambda: text.size, opener=text.open)
