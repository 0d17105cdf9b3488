"""One open directory of the virtual tree: a snapshot of its named entries, then its source's planes.

Named entries (fixed children and provider entries, with their attributes) are taken at ``opendir``;
planes are streamed from the source's keys a batch at a time, so a listing never holds every entry of
a huge plate, and resumes in O(1) at any offset the kernel asks for (rewinding only when it seeks
back). Offsets are stable: the n-th entry of a listing is always the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from hcsfs.fs.answers import Answer, Blocking, then
from hcsfs.fs.attributes import Attributes

if TYPE_CHECKING:
    from hcsfs.fs.attributes import AttributePolicy
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
    """Entries of one open directory by offset: ``batch(i)`` answers entries ``i, i+1, ...``."""

    def __init__(self, named: list[Listed], source: PlateSource | None,
                 plane_inode: Callable[[PlaneKey], int], policy: AttributePolicy) -> None:
        self.named = named
        self.source = source
        self._plane_inode = plane_inode
        self._listed: Iterator[SourceListed] = iter(())
        self._position = 0
        """Listing offset of the next plane ``_listed`` yields."""
        self._batch: list[Listed] = []
        """The latest batch of planes, from listing offset ``_batch_start`` on."""
        self._batch_start = 0
        self._template = policy.file(0, None)
        """A plane's attributes but for its size and time (every plane of a mount has the same mode,
        owner and timeouts)."""
        self._suffixes: dict[tuple[int, int, int], bytes] = {}
        """``b"2_z001_t003.tif"`` per (channel, z, t): names are a prefix per site plus one of these."""

    def restart(self) -> None:
        """Start the planes again from the first (may do I/O: the source's listing)."""
        self._listed = iter(self.source.listed()) if self.source is not None else iter(())
        self._position = len(self.named)
        self._batch, self._batch_start = [], self._position

    def batch(self, start: int) -> Answer[Sequence[Listed]]:
        """The entries from offset ``start`` on, as many as come at once (the rest of the named ones,
        or up to a batch of planes): entry ``i`` of the answer is at offset ``start + i``. Empty at the
        end. The kernel takes what fits in its buffer and asks again from the first it did not take."""
        if start < len(self.named):
            return self.named[start:]
        offset = start - self._batch_start
        if 0 <= offset < len(self._batch):
            return self._batch[offset:]
        if self.source is None:
            return ()
        if self.source.blocking_info:
            return Blocking(lambda: self._filled(start))
        return self._filled(start)

    def at(self, index: int) -> Answer[Listed | object]:
        """Entry ``index`` alone, or :data:`END`."""
        return then(self.batch(index), lambda entries: entries[0] if entries else END)

    def _filled(self, start: int) -> list[Listed]:
        self._fill(start)
        return self._batch

    def _fill(self, start: int) -> None:
        """Compute the next batch of planes from ``start`` on (rewinding if the kernel seeks back).

        The hot loop of a listing (a million planes in seconds): names are built from a prefix per
        well and site and a suffix per (channel, z, t), and planes of the same size and time share
        one attributes value."""
        if start < self._position:
            self.restart()
        planes: list[Listed] = []
        inode_of = self._plane_inode
        template, suffixes = self._template, self._suffixes
        last_site: tuple[str, object] | None = None
        prefix = b""
        attributes = template
        for key, size, mtime_ns in self._listed:
            index = self._position
            self._position += 1
            if index < start:
                continue
            site, channel, z, t = key.site, key.channel, key.z, key.t
            if type(site) is int and type(channel) is int and type(z) is int and type(t) is int:
                if last_site is None or last_site[0] != key.well or last_site[1] != site:
                    last_site = (key.well, site)
                    prefix = f"{key.well}_s{site:03d}_w".encode()
                suffix = suffixes.get((channel, z, t))
                if suffix is None:
                    if len(suffixes) >= BATCH:
                        suffixes.clear()
                    suffix = suffixes[(channel, z, t)] = f"{channel}_z{z:03d}_t{t:03d}.tif".encode()
                name = prefix + suffix
            else:
                name = key.name.encode("utf-8", "surrogateescape")
            time_ns = template.time_ns if mtime_ns is None else mtime_ns
            if attributes.size != size or attributes.time_ns != time_ns:
                attributes = Attributes(template.mode, template.nlink, size, time_ns, template.uid,
                                        template.gid, template.timeout)
            planes.append((name, inode_of(key), attributes))
            if index >= start + BATCH - 1:
                break
        self._batch, self._batch_start = planes, start
