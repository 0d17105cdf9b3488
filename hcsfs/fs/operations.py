"""The pyfuse3 request handlers: a plate source presented as a flat folder of TIFF planes.

Handlers are short: they find the node, ask the source (in a worker thread when that may block) and
answer. Blocking work never runs on the trio loop: source I/O and decoding go through
``trio.to_thread.run_sync`` behind capacity limiters; only answers already in memory (header bytes,
pinned pixels, cheap in-memory infos) are served inline.

Directories are generic: a node lists fixed children, entries a provider gives on demand (the
``.pipelines/`` files, run output folders) and the planes of a source (the plate at the root, a run's
outputs in its folder). Writes are handled in :mod:`hcsfs.fs.writes`.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyfuse3
import trio

from hcsfs.cache import ByteLRU
from hcsfs.errors import NotAPlaneError, PlaneNameError, PlaneNotFoundError, PlaneReadError
from hcsfs.fs.attributes import AttributePolicy
from hcsfs.fs.control import ControlArea, SpecFile
from hcsfs.fs.errno_map import fuse_errors
from hcsfs.fs.index_files import IndexFiles
from hcsfs.fs.invalidate import Invalidator
from hcsfs.fs.overview_files import OverviewFiles
from hcsfs.fs.prefetch import Prefetcher, successors
from hcsfs.fs.tree import ROOT_INODE, Entry, FileHandle, InodeTable, Node, NodeKind
from hcsfs.fs.writes import WritableOperations
from hcsfs.naming import PlaneKey, parse_name
from hcsfs.planefile import EncodedFile, PassthroughFile, PlaneFile
from hcsfs.sources.base import plate_summary
from hcsfs.sources.views import WellIndex, WellSource
from hcsfs.tiff import pixel_buffer

if TYPE_CHECKING:
    from hcsfs.pipelines import PipelineManager
    from hcsfs.sources.base import PlaneInfo, PlateSource

__all__ = ["PlateOperations"]

log = logging.getLogger("hcsfs.fs")
T = TypeVar("T")

XATTR_PREFIX = "user.hcs."
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
_READDIR_BATCH = 1024


def _same(value: T) -> T:
    return value


class _BytesFile:
    """A generated file's content, fixed at open."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    def read_ready(self, offset: int, size: int) -> bytes | None:
        return self.read(offset, size)

    def close(self) -> None:
        pass


@dataclass(slots=True)
class _Listing:
    """One open directory: named children (a snapshot taken at ``opendir``), then the source's planes,
    streamed a batch at a time so a listing never holds every entry of a huge plate."""

    inode: int
    named: list[Node]
    source: PlateSource | None
    keys: Iterator[PlaneKey] = field(default_factory=lambda: iter(()))
    position: int = 0
    """Listing offset of the next key ``keys`` yields."""
    entries: dict[int, tuple[bytes, int, int, int | None] | None] = field(default_factory=dict)
    """Planes' names, inodes, sizes and mtimes, computed a batch ahead of the kernel's requests."""
    templates: dict[tuple[int, int | None], pyfuse3.EntryAttributes] = field(default_factory=dict)
    """One attributes object per (size, mtime): ``readdir_reply`` copies it into the kernel's buffer,
    so a listing sets only ``st_ino`` per plane instead of building every entry's attributes."""

    def restart(self) -> None:
        self.keys = iter(self.source.keys()) if self.source is not None else iter(())
        self.position = len(self.named)
        self.entries.clear()


class PlateOperations(WritableOperations):
    """A mount of one :class:`~hcsfs.sources.base.PlateSource`, with an optional pipeline manager."""

    def __init__(
        self, source: PlateSource, *, cache_bytes: int, io_threads: int = 16, xattrs: bool = True,
        manager: PipelineManager | None = None, uid: int | None = None, gid: int | None = None,
        umask: int | None = None, mountpoint: Path | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.xattrs = xattrs
        self.tree = InodeTable()
        self.policy = AttributePolicy.for_current_user(time.time_ns(), uid=uid, gid=gid, umask=umask)
        # A plate file whose ctime is later than this changed while mounted. File systems may stamp from
        # the coarse clock (a tick behind), so a change in the mount's first tick can go unnoticed;
        # the other way round (a file written before the mount looking newer) cannot happen.
        self.started_ns = time.time_ns()
        self.pixel_cache: ByteLRU[tuple[int, PlaneKey, int], memoryview] = ByteLRU(cache_bytes, len)
        self.cpu_limiter = trio.CapacityLimiter(os.cpu_count() or 1)
        self.io_limiter = trio.CapacityLimiter(io_threads)
        self._handles: dict[int, PlaneFile | _BytesFile | SpecFile | FileHandle] = {}
        self.prefetcher = Prefetcher()
        self._listings: dict[int, _Listing] = {}
        self._next_fh = 1
        self._plate_json: bytes | None = None
        root = self.tree[ROOT_INODE]
        root.planes = lambda: self.source
        meta = self.tree.add_directory(ROOT_INODE, ".hcsfs")
        self.tree.add_file(meta.inode, "plate.json", self._render_plate_json)
        self.index_files = IndexFiles(source, mountpoint)
        meta.entries = self.index_files.entries
        overview = self.tree.add_directory(meta.inode, "overview")
        overview.entries = OverviewFiles(source).entries
        by_well = self.tree.add_directory(ROOT_INODE, ".by-well", listed=False)
        by_well.entries = self._well_folders
        self._wells = WellIndex(source)
        self._well_sources: dict[str, WellSource] = {}
        self.invalidator: Invalidator | None = None
        self.control: ControlArea | None = None
        if manager is not None:
            self.invalidator = Invalidator()
            pipelines = self.tree.add_directory(ROOT_INODE, ".pipelines", writable=True)
            self.control = ControlArea(manager, self.tree, ROOT_INODE, pipelines.inode, self.invalidator)
            pipelines.entries = self.control.pipelines_entries
            root.entries = self.control.root_entries

    # -- helpers ------------------------------------------------------------------------------

    def _well_folders(self) -> dict[str, Entry]:
        """``/.by-well/<well>/``: the same flat names, one folder per well (runs in a worker thread)."""
        folders = {}
        for well in self._wells.wells():
            source = self._well_sources.get(well)
            if source is None:
                source = self._well_sources[well] = WellSource(self.source, self._wells, well)
            folders[well] = Entry(NodeKind.DIRECTORY, planes=functools.partial(_same, source))
        return folders

    async def _blocking(self, fn: Callable[..., T], *args: Any, cpu: bool = False) -> T:
        limiter = self.cpu_limiter if cpu else self.io_limiter
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)

    async def _info(self, source: PlateSource, key: PlaneKey) -> PlaneInfo:
        if not source.blocking_info:
            return source.info(key)
        ready = getattr(source, "info_ready", None)
        info = ready(key) if ready is not None else None
        return info if info is not None else await self._blocking(source.info, key)

    def _render_plate_json(self) -> bytes:
        if self._plate_json is None:
            summary = plate_summary(self.source)
            self._plate_json = (json.dumps(summary, indent=2) + "\n").encode()
        return self._plate_json

    def _node(self, inode: int) -> Node:
        node = self.tree.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _source_of(self, directory: Node) -> PlateSource:
        source = directory.planes() if directory.planes is not None else None
        if source is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return source

    def _new_fh(self, handle: PlaneFile | _BytesFile | SpecFile | FileHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _entries(self, directory: Node) -> dict[str, Entry]:
        """A directory's provider-listed entries (may do I/O: call from a worker thread)."""
        return directory.entries() if directory.entries is not None else {}

    def _ensure(self, directory: Node, name: str, entry: Entry) -> Node:
        node = self.tree.entry(directory.inode, name, entry)
        if directory.writable and entry.kind is NodeKind.SPEC:
            node.writable = True
        return node

    async def _attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        if node.kind is NodeKind.DIRECTORY:
            subdirs = sum(c.is_directory for c in self.tree.children(node.inode))
            return self.policy.directory(node.inode, subdirs, writable=node.writable)
        if node.path is not None:
            size = (await self._blocking(node.path.stat)).st_size
            return self.policy.file(node.inode, size, None, immutable=not node.dynamic)
        if node.kind is not NodeKind.PLANE:
            assert node.content is not None
            content = node.content
            size = await self._blocking(node.size or (lambda: len(content())))
            return self.policy.file(node.inode, size, None, immutable=not node.dynamic,
                                    writable=node.writable)
        assert node.key is not None
        info = await self._info(self._source_of(self._node(node.parent)), node.key)
        return self.policy.file(node.inode, info.size, info.mtime_ns)

    # -- lookups and attributes ---------------------------------------------------------------

    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        text = os.fsdecode(name)
        if text == ".":
            return await self._attributes(parent)
        if text == "..":
            return await self._attributes(self._node(parent.parent))
        child = self.tree.child(parent_inode, text)
        if child is not None:
            return await self._attributes(child)
        if parent.entries is not None:
            entry = (await self._blocking(self._entries, parent)).get(text)
            if entry is not None:
                return await self._attributes(self._ensure(parent, text, entry))
        if parent.planes is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        try:
            key = parse_name(text)
        except PlaneNameError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        info = await self._info(self._source_of(parent), key)
        node = self.tree.plane(parent_inode, key)
        return self.policy.file(node.inode, info.size, info.mtime_ns)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return await self._attributes(self._node(inode))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """Inode numbers stay assigned for the mount's life, so there is nothing to release."""

    # -- directories ----------------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._node(inode)
        if node.kind is not NodeKind.DIRECTORY:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        source = node.planes() if node.planes is not None else None
        named = [child for child in self.tree.children(inode) if child.listed]
        if node.entries is not None:
            entries = await self._blocking(self._entries, node)
            named += [self._ensure(node, name, entry) for name, entry in entries.items()]
        named.sort(key=lambda n: n.name)
        listing = _Listing(inode, named, source)
        await self._blocking(listing.restart)
        fh = self._next_fh
        self._next_fh += 1
        self._listings[fh] = listing
        return fh

    def _plane_entry(
        self, listing: _Listing, key: PlaneKey
    ) -> tuple[bytes, int, int, int | None] | None:
        """Name, inode, size and mtime of a listed plane; ``None`` leaves a non-plane out (any thread)."""
        assert listing.source is not None
        inode = self.tree.plane_inode(listing.inode, key)
        try:
            info = listing.source.info(key)
        except NotAPlaneError:
            return None
        except PlaneNotFoundError:
            return None  # gone since the listing began (a replaced run's outputs)
        except PlaneReadError as exc:
            # Listed so that the user sees it; opening it gives EIO with the reason in the log.
            log.warning("%s", exc)
            return os.fsencode(key.name), inode, 0, None
        return os.fsencode(key.name), inode, info.size, info.mtime_ns

    def _plane_attributes(self, listing: _Listing, inode: int, size: int,
                          mtime_ns: int | None) -> pyfuse3.EntryAttributes:
        template = listing.templates.get((size, mtime_ns))
        if template is None:
            template = listing.templates[(size, mtime_ns)] = self.policy.file(inode, size, mtime_ns)
        template.st_ino = inode
        return template

    def _fill_batch(self, listing: _Listing, start: int) -> None:
        """Read the next batch of planes from ``start`` on (rewinding if the kernel seeks back)."""
        if start < listing.position:
            listing.restart()
        for key in listing.keys:
            index = listing.position
            listing.position += 1
            if index >= start:
                listing.entries[index] = self._plane_entry(listing, key)
                if index >= start + _READDIR_BATCH - 1:
                    break

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._listings[fh]
        index = start_id
        while True:
            entry: tuple[bytes, pyfuse3.EntryAttributes] | None
            if index < len(listing.named):
                node = listing.named[index]
                try:
                    entry = (os.fsencode(node.name), await self._attributes(node))
                except (OSError, KeyError):
                    entry = None  # removed since opendir
            else:
                if listing.source is None:
                    break
                if index not in listing.entries:
                    if listing.source.blocking_info:
                        await self._blocking(self._fill_batch, listing, index)
                    else:
                        self._fill_batch(listing, index)
                    if index not in listing.entries:
                        break  # no more planes
                plane = listing.entries[index]
                entry = None if plane is None else (
                    plane[0], self._plane_attributes(listing, plane[1], plane[2], plane[3]))
            if entry is not None and not pyfuse3.readdir_reply(token, *entry, index + 1):
                break  # the kernel's buffer is full; it asks again from this index
            listing.entries.pop(index, None)
            index += 1

    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    # -- files ------------------------------------------------------------------------------------

    def _load_pixels(self, source: PlateSource, info: PlaneInfo) -> Callable[[], memoryview]:
        assert info.layout is not None
        layout, key = info.layout, info.key

        def decode() -> memoryview:
            return pixel_buffer(layout, source.read_plane(key))

        # Sources that keep decoded data themselves (in RAM, or in their own chunk cache that got the
        # --cache-size budget) would only be cached twice.
        if getattr(source, "caches_planes", False):
            return decode
        return lambda: self.pixel_cache.get_or_load((id(source), key, info.mtime_ns), decode)

    def _open_passthrough(self, source: PlateSource, info: PlaneInfo) -> PassthroughFile:
        assert info.passthrough is not None
        # The plate's own files must not change while mounted; run outputs are written meanwhile.
        frozen = source is self.source or isinstance(source, WellSource)
        since = self.started_ns if frozen else None
        return PassthroughFile(info.passthrough, info.size, unchanged_since_ns=since)

    def _open_plane(self, source: PlateSource, key: PlaneKey) -> PlaneFile:
        info = source.info(key)
        if info.passthrough is not None:
            return self._open_passthrough(source, info)
        assert info.layout is not None
        return EncodedFile(info.layout, self._load_pixels(source, info))

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        if node.kind is NodeKind.DIRECTORY:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.kind is NodeKind.SPEC:
            if flags & _WRITE_FLAGS:
                self._check_owner(ctx)
            return await self._open_spec(node, flags)
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        if node.kind is NodeKind.FILE and node.path is not None:  # a complete file of a run, on disk
            path = node.path
            on_disk = await self._blocking(lambda: PassthroughFile(path, path.stat().st_size))
            return pyfuse3.FileInfo(fh=self._new_fh(on_disk), keep_cache=not node.dynamic,
                                    direct_io=node.dynamic)
        if node.kind is NodeKind.FILE and node.opener is not None:  # serves byte ranges itself
            streamed = await self._blocking(node.opener)
            return pyfuse3.FileInfo(fh=self._new_fh(streamed), keep_cache=not node.dynamic,
                                    direct_io=node.dynamic)
        if node.kind is NodeKind.FILE:
            assert node.content is not None
            handle = _BytesFile(await self._blocking(node.content))
            # Changing files (status, log) bypass the page cache so each read sees the latest.
            return pyfuse3.FileInfo(fh=self._new_fh(handle), keep_cache=not node.dynamic,
                                    direct_io=node.dynamic)
        assert node.key is not None
        source = self._source_of(self._node(node.parent))
        plane: PlaneFile
        ready = getattr(source, "info_ready", None) if source.blocking_info else None
        info = ready(node.key) if ready is not None else None
        if info is not None and info.layout is not None:  # encoded, metadata known: no I/O to open
            plane = EncodedFile(info.layout, self._load_pixels(source, info))
        elif info is not None and info.passthrough is not None:
            # A source file checked at lookup (passthrough files are local): open(2) of a cached dentry
            # costs microseconds, far less than a worker-thread trip (issue 14: opens are the cost of
            # warm reads).
            plane = self._open_passthrough(source, info)
        elif source.blocking_info:  # one trip to a worker thread for info and open(2)
            plane = await self._blocking(self._open_plane, source, node.key)
        else:
            plane = self._open_plane(source, node.key)
        if isinstance(plane, EncodedFile) and not getattr(source, "planes_in_memory", False):
            self._prefetch_after(source, node.key)
        return pyfuse3.FileInfo(fh=self._new_fh(plane), keep_cache=True)

    def _prefetch_after(self, source: PlateSource, key: PlaneKey) -> None:
        """Decode the plane a sequential reader opens next, in the background."""
        ready = getattr(source, "info_ready", None)

        def load() -> None:
            for candidate in successors(key):
                try:
                    info = ready(candidate) if ready is not None else None
                    info = info if info is not None else source.info(candidate)
                except PlaneNotFoundError:
                    continue
                if info.layout is not None:
                    self._load_pixels(source, info)()
                return

        self.prefetcher.submit(load)

    @fuse_errors
    async def read(  # type: ignore[override]  # pyfuse3 takes any contiguous buffer
        self, fh: int, off: int, size: int
    ) -> bytes | memoryview:
        handle = self._handles[fh]
        data = handle.read_ready(off, size)
        if data is None:
            data = await self._blocking(handle.read, off, size, cpu=isinstance(handle, EncodedFile))
        return data

    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is None:
            return
        handle.close()
        if isinstance(handle, SpecFile) and self.control is not None:
            try:
                await self._blocking(self.control.release, handle)
            except Exception:  # release cannot report errors; the run's status says what failed
                log.exception("handing .pipelines/%s to the pipeline manager failed", handle.name)

    # -- extended attributes and statfs ----------------------------------------------------------

    async def _plane_xattrs(self, inode: int) -> dict[str, str]:
        node = self._node(inode)
        if node.kind is not NodeKind.PLANE or node.key is None:
            return {}
        key = node.key
        info = await self._info(self._source_of(self._node(node.parent)), key)
        values = {"well": key.well, "site": key.site, "channel": key.channel, "z": key.z, "t": key.t}
        if info.channel_name:
            values["channel_name"] = info.channel_name
        if info.pixel_size_um is not None:
            values["pixel_size_um"] = repr(info.pixel_size_um)
        if info.passthrough is not None:
            values["source_path"] = str(info.passthrough)
        return {XATTR_PREFIX + k: str(v) for k, v in values.items()}

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        if not self.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)  # the kernel then stops asking
        return [name.encode() for name in await self._plane_xattrs(inode)]

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not self.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)  # the kernel then stops asking: faster ls -l
        text = os.fsdecode(name)
        if not text.startswith(XATTR_PREFIX):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        value = (await self._plane_xattrs(inode)).get(text)
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value.encode()

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = pyfuse3.StatvfsData()
        stats.f_bsize = 1 << 20
        stats.f_frsize = 512
        stats.f_blocks = stats.f_bfree = stats.f_bavail = 0
        stats.f_files = len(self.tree)
        stats.f_ffree = stats.f_favail = 0
        stats.f_namemax = 255
        return stats
