"""One open directory of the virtual tree: a snapshot of its named entries, then its source's planes.

Named entries (fixed children and provider entries, with their attributes) are taken at ``opendir``;
planes are streamed from the source's keys a batch at a time, so a listing never holds every entry of
a huge plate, and resumes in O(1) at any offset the kernel asks for (rewinding only when it seeks
back). Offsets are stable: the n-th entry of a listing is always the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from hcsfs.fs.answers import Answer, Blocking

if TYPE_CHECKING:
    from hcsfs.fs.attributes import AttributePolicy, Attributes
    from hcsfs.naming import PlaneKey
    from hcsfs.sources.base import Listed as SourceListed
    from hcsfs.sources.base import PlateSource

__all__ = ["Listing", "Listed", "END", "BATCH"]

Listed = tuple[bytes, int, "Attributes"]
"""One entry of a listing: its name, inode number and attributes."""

END: Final = object()
"""No entry at this offset or after it."""

BATCH = 1024


class Listing:
    """Entries of one open directory by offset; ``at(i)`` answers entry ``i``, ``None`` for an offset
    that lists nothing (a plane gone since the listing began) or :data:`END`."""

    def __init__(self, named: list[Listed], source: PlateSource | None,
                 plane_inode: Callable[[PlaneKey], int], policy: AttributePolicy) -> None:
        self.named = named
        self.source = source
        self._plane_inode = plane_inode
        self._policy = policy
        self._listed: Iterator[SourceListed] = iter(())
        self._position = 0
        """Listing offset of the next plane ``_listed`` yields."""
        self._planes: dict[int, Listed | None] = {}
        """Planes' entries, computed a batch ahead of the kernel's requests."""
        self._templates: dict[tuple[int, int | None], Attributes] = {}
        """One attributes value per (size, mtime), shared by every plane that has them."""

    def restart(self) -> None:
        """Start the planes again from the first (may do I/O: the source's listing)."""
        self._listed = iter(self.source.listed()) if self.source is not None else iter(())
        self._position = len(self.named)
        self._planes.clear()

    def at(self, index: int) -> Answer[Listed | None | object]:
        if index < len(self.named):
            return self.named[index]
        if index in self._planes:
            return self._planes[index]
        if self.source is None:
            return END
        if self.source.blocking_info:
            return Blocking(lambda: self._filled(index))
        return self._filled(index)

    def done(self, index: int) -> None:
        """The kernel took entry ``index``: forget it (it asks again from an offset it did not take)."""
        self._planes.pop(index, None)

    def _filled(self, index: int) -> Listed | None | object:
        self._fill(index)
        return self._planes.get(index, END)

    def _fill(self, start: int) -> None:
        """Compute the next batch of planes from ``start`` on (rewinding if the kernel seeks back)."""
        if start < self._position:
            self.restart()
        planes, inode_of, attributes = self._planes, self._plane_inode, self._attributes
        for key, size, mtime_ns in self._listed:
            index = self._position
            self._position += 1
            if index >= start:
                planes[index] = (key.name.encode("utf-8", "surrogateescape"), inode_of(key),
                                 attributes(size, mtime_ns))
                if index >= start + BATCH - 1:
                    break

    def _attributes(self, size: int, mtime_ns: int | None) -> Attributes:
        attributes = self._templates.get((size, mtime_ns))
        if attributes is None:
            if len(self._templates) >= BATCH:  # a plate of distinct times: keep the memory bounded
                self._templates.clear()
            attributes = self._templates[(size, mtime_ns)] = self._policy.file(size, mtime_ns)
        return attributes
