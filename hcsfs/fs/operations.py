"""The pyfuse3 request handlers: a plate source presented as a flat folder of TIFF planes.

Handlers are short: they find the node, ask the source (in a worker thread when that may block) and
answer. Blocking work never runs on the trio loop: source I/O and decoding go through
``trio.to_thread.run_sync`` behind capacity limiters; only answers already in memory (header bytes,
pinned pixels, cheap in-memory infos) are served inline.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pyfuse3
import trio

from hcsfs.cache import ByteLRU
from hcsfs.errors import NotAPlaneError, PlaneNameError, PlaneReadError
from hcsfs.fs.attributes import AttributePolicy
from hcsfs.fs.errno_map import fuse_errors
from hcsfs.fs.readonly import ReadOnlyOperations
from hcsfs.fs.tree import ROOT_INODE, InodeTable, Node, NodeKind
from hcsfs.naming import PlaneKey, parse_name
from hcsfs.planefile import EncodedFile, PassthroughFile, PlaneFile
from hcsfs.sources.base import plate_summary
from hcsfs.tiff import pixel_buffer

if TYPE_CHECKING:
    from hcsfs.sources.base import PlaneInfo, PlateSource

__all__ = ["PlateOperations"]

log = logging.getLogger("hcsfs.fs")
T = TypeVar("T")

XATTR_PREFIX = "user.hcs."
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
_READDIR_BATCH = 128


class _BytesFile:
    """A virtual file's content, fixed at open."""

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
    """A directory snapshot taken at ``opendir``: named children first, then plane keys."""

    inode: int
    named: list[Node]
    keys: Sequence[PlaneKey]
    entries: dict[int, tuple[bytes, pyfuse3.EntryAttributes] | None] = field(default_factory=dict)
    """Planes' names and attributes, computed a batch ahead of the kernel's requests."""

    def __len__(self) -> int:
        return len(self.named) + len(self.keys)


class PlateOperations(ReadOnlyOperations):
    """A read-only mount of one :class:`~hcsfs.sources.base.PlateSource`."""

    def __init__(
        self, source: PlateSource, *, cache_bytes: int, io_threads: int = 16, xattrs: bool = True
    ) -> None:
        super().__init__()
        self.source = source
        self.xattrs = xattrs
        self.tree = InodeTable()
        self.policy = AttributePolicy.for_current_user(time.time_ns())
        self.pixel_cache: ByteLRU[tuple[PlaneKey, int], memoryview] = ByteLRU(cache_bytes, len)
        self.cpu_limiter = trio.CapacityLimiter(os.cpu_count() or 1)
        self.io_limiter = trio.CapacityLimiter(io_threads)
        # Sources that keep decoded data themselves (in RAM, or in their own chunk cache that got the
        # --cache-size budget) would only be cached twice.
        self._source_caches = bool(getattr(source, "caches_planes", False))
        self._handles: dict[int, PlaneFile | _BytesFile] = {}
        self._listings: dict[int, _Listing] = {}
        self._next_fh = 1
        self._plate_json: bytes | None = None
        meta = self.tree.add_directory(ROOT_INODE, ".hcsfs")
        self.tree.add_virtual_file(meta.inode, "plate.json", self._render_plate_json)

    # -- helpers ------------------------------------------------------------------------------

    async def _blocking(self, fn: Callable[..., T], *args: Any, cpu: bool = False) -> T:
        limiter = self.cpu_limiter if cpu else self.io_limiter
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)

    async def _info(self, key: PlaneKey) -> PlaneInfo:
        if self.source.blocking_info:
            return await self._blocking(self.source.info, key)
        return self.source.info(key)

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

    def _new_fh(self, handle: PlaneFile | _BytesFile) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    async def _attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        if node.kind is NodeKind.DIRECTORY:
            subdirs = sum(c.kind is NodeKind.DIRECTORY for c in self.tree.children(node.inode))
            return self.policy.directory(node.inode, subdirs)
        if node.kind is NodeKind.VIRTUAL_FILE:
            assert node.content is not None
            content = await self._blocking(node.content)
            return self.policy.file(node.inode, len(content))
        assert node.key is not None
        info = await self._info(node.key)
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
        if parent_inode != ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOENT)
        try:
            key = parse_name(text)
        except PlaneNameError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        info = await self._info(key)
        node = self.tree.plane(ROOT_INODE, key)
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
        keys: Sequence[PlaneKey] = ()
        if inode == ROOT_INODE:
            listed = await self._blocking(lambda: self.source.keys())
            keys = listed if isinstance(listed, Sequence) else list(listed)
        named = sorted(self.tree.children(inode), key=lambda n: n.name)
        fh = self._next_fh
        self._next_fh += 1
        self._listings[fh] = _Listing(inode, named, keys)
        return fh

    def _plane_entry(self, key: PlaneKey) -> tuple[bytes, pyfuse3.EntryAttributes] | None:
        """Name and attributes of a listed plane; ``None`` leaves a non-plane out (any thread)."""
        node = self.tree.plane(ROOT_INODE, key)
        try:
            info = self.source.info(key)
        except NotAPlaneError:
            return None
        except PlaneReadError as exc:
            # Listed so that the user sees it; opening it gives EIO with the reason in the log.
            log.warning("%s", exc)
            return os.fsencode(node.name), self.policy.file(node.inode, 0)
        return os.fsencode(node.name), self.policy.file(node.inode, info.size, info.mtime_ns)

    def _fill_batch(self, listing: _Listing, start: int) -> None:
        stop = min(start + _READDIR_BATCH, len(listing))
        offset = len(listing.named)
        for index in range(max(start, offset), stop):
            if index not in listing.entries:
                listing.entries[index] = self._plane_entry(listing.keys[index - offset])

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._listings[fh]
        index = start_id
        while index < len(listing):
            entry: tuple[bytes, pyfuse3.EntryAttributes] | None
            if index < len(listing.named):
                node = listing.named[index]
                entry = (os.fsencode(node.name), await self._attributes(node))
            else:
                if index not in listing.entries:
                    if self.source.blocking_info:
                        await self._blocking(self._fill_batch, listing, index)
                    else:
                        self._fill_batch(listing, index)
                entry = listing.entries[index]
            if entry is not None and not pyfuse3.readdir_reply(token, *entry, index + 1):
                break  # the kernel's buffer is full; it asks again from this index
            listing.entries.pop(index, None)
            index += 1

    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    # -- files ------------------------------------------------------------------------------------

    def _load_pixels(self, info: PlaneInfo) -> Callable[[], memoryview]:
        assert info.layout is not None
        layout, key = info.layout, info.key

        def decode() -> memoryview:
            return pixel_buffer(layout, self.source.read_plane(key))

        if self._source_caches:
            return decode
        return lambda: self.pixel_cache.get_or_load((key, info.mtime_ns), decode)

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        node = self._node(inode)
        if node.kind is NodeKind.DIRECTORY:
            raise pyfuse3.FUSEError(errno.EISDIR)
        handle: PlaneFile | _BytesFile
        if node.kind is NodeKind.VIRTUAL_FILE:
            assert node.content is not None
            handle = _BytesFile(await self._blocking(node.content))
        else:
            assert node.key is not None
            if self.source.blocking_info:  # one trip to a worker thread for info and open(2)
                handle = await self._blocking(self._open_plane, node.key)
            else:
                handle = self._open_plane(node.key)
        return pyfuse3.FileInfo(fh=self._new_fh(handle), keep_cache=True)

    def _open_plane(self, key: PlaneKey) -> PlaneFile:
        info = self.source.info(key)
        if info.passthrough is not None:
            return PassthroughFile(info.passthrough, info.size)
        assert info.layout is not None
        return EncodedFile(info.layout, self._load_pixels(info))

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
        if handle is not None:
            handle.close()

    # -- extended attributes and statfs ----------------------------------------------------------

    async def _plane_xattrs(self, inode: int) -> dict[str, str]:
        node = self._node(inode)
        if node.kind is not NodeKind.PLANE or node.key is None:
            return {}
        key = node.key
        info = await self._info(key)
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
