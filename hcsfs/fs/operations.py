"""The pyfuse3 adapter: each request handler translates one call of the virtual tree.

:class:`~hcsfs.fs.vtree.VirtualTree` decides what exists, what each node serves and what may block;
this module only turns bytes into names and back, runs the tree's :class:`~hcsfs.fs.answers.Blocking`
work in worker threads behind capacity limiters (so the trio loop never waits on a disk or a decoder),
hands out file-handle numbers, and copies :class:`~hcsfs.fs.attributes.Attributes` into the kernel's
``EntryAttributes``. Errors become errno values in :mod:`hcsfs.fs.errno_map`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import pyfuse3
import trio

from hcsfs.fs.answers import Answer, Blocking
from hcsfs.fs.attributes import BLOCK_SIZE, Attributes
from hcsfs.fs.errno_map import fuse_errors
from hcsfs.fs.listing import Listing
from hcsfs.fs.readonly import ReadOnlyOperations
from hcsfs.fs.vtree import Opened, VirtualTree
from hcsfs.planefile import EncodedFile

__all__ = ["PlateOperations"]

T = TypeVar("T")



class PlateOperations(ReadOnlyOperations):
    """pyfuse3 handlers over one :class:`VirtualTree`; every request not handled here is EROFS."""

    def __init__(self, tree: VirtualTree, *, io_threads: int = 16) -> None:
        super().__init__()
        self.tree = tree
        self.cpu_limiter = trio.CapacityLimiter(os.cpu_count() or 1)
        self.io_limiter = trio.CapacityLimiter(io_threads)
        self._files: dict[int, Any] = {}
        self._listings: dict[int, Listing] = {}
        self._next_fh = 1
        self._last_entry = pyfuse3.EntryAttributes()
        self._last_attributes: Attributes | None = None

    async def _answer(self, answer: Answer[T]) -> T:
        if isinstance(answer, Blocking):
            limiter = self.cpu_limiter if answer.cpu else self.io_limiter
            return await trio.to_thread.run_sync(answer.work, limiter=limiter)
        return answer

    def _entry(self, inode: int, attributes: Attributes) -> pyfuse3.EntryAttributes:
        """The kernel's attributes for ``inode``. One object is reused and only the fields that differ
        from the last answer are set (a listing sets ``st_ino``, at most size and times, per plane):
        pyfuse3 copies it into its reply before the next request runs."""
        entry, last = self._last_entry, self._last_attributes
        if attributes is not last:
            if (last is None or attributes.mode != last.mode
                    or attributes.nlink != last.nlink or attributes.uid != last.uid
                    or attributes.gid != last.gid or attributes.timeout != last.timeout):
                entry = self._last_entry = pyfuse3.EntryAttributes()
                entry.st_mode, entry.st_nlink = attributes.mode, attributes.nlink
                entry.st_uid, entry.st_gid = attributes.uid, attributes.gid
                entry.st_blksize = BLOCK_SIZE
                entry.entry_timeout = entry.attr_timeout = attributes.timeout
                last = None
            if last is None or attributes.size != last.size:
                entry.st_size, entry.st_blocks = attributes.size, -(-attributes.size // 512)
            if last is None or attributes.time_ns != last.time_ns:
                entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = attributes.time_ns
            self._last_attributes = attributes
        entry.st_ino = inode
        return entry

    def _new_fh(self, table: dict[int, Any], value: Any) -> int:
        fh = self._next_fh
        self._next_fh += 1
        table[fh] = value
        return fh

    def _file_info(self, opened: Opened) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=self._new_fh(self._files, opened.handle), keep_cache=opened.keep_cache,
                                direct_io=opened.direct_io)

    # -- lookups, attributes, listings --------------------------------------------------------------

    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        inode, attributes = await self._answer(self.tree.lookup(parent_inode, os.fsdecode(name)))
        return self._entry(inode, attributes)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._entry(inode, await self._answer(self.tree.getattr(inode)))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """Inode numbers stay assigned for the mount's life, so there is nothing to release."""

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return self._new_fh(self._listings, await self._answer(self.tree.opendir(inode)))

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._listings[fh]
        index = start_id
        reply = pyfuse3.readdir_reply
        while True:
            entries = await self._answer(listing.batch(index))
            if not entries:
                return
            for name, inode, attributes in entries:
                index += 1
                if attributes is self._last_attributes:  # the common case: only the inode differs
                    entry = self._last_entry
                    entry.st_ino = inode
                else:
                    entry = self._entry(inode, attributes)
                if not reply(token, name, entry, index):
                    return  # the kernel's buffer is full; it asks again from this entry

    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    # -- files ----------------------------------------------------------------------------------------

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        return self._file_info(await self._answer(self.tree.open(inode, flags, ctx.uid)))

    @fuse_errors
    async def read(  # type: ignore[override]  # pyfuse3 takes any contiguous buffer
        self, fh: int, off: int, size: int
    ) -> bytes | memoryview:
        handle = self._files[fh]
        data = handle.read_ready(off, size)
        if data is None:
            limiter = self.cpu_limiter if isinstance(handle, EncodedFile) else self.io_limiter
            data = await trio.to_thread.run_sync(handle.read, off, size, limiter=limiter)
        return data  # type: ignore[no-any-return]

    async def flush(self, fh: int) -> None:
        if not self.tree.flushes:
            raise pyfuse3.FUSEError(errno.ENOSYS)  # the kernel stops sending a flush on every close
        handle = self._files.get(fh)
        if handle is not None:
            await self._answer(self.tree.flush(handle))

    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is not None:
            await self._answer(self.tree.release(handle))

    # -- writes (``.pipelines/``) ---------------------------------------------------------------------

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        opened, (inode, attributes) = await self._answer(
            self.tree.create(parent_inode, os.fsdecode(name), ctx.uid))
        return self._file_info(opened), self._entry(inode, attributes)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._files.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return self.tree.write(handle, off, buf)

    @fuse_errors
    async def setattr(
        self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
        fh: int | None, ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        size = attr.st_size if fields.update_size else None
        return self._entry(inode, await self._answer(self.tree.truncate(inode, size, ctx.uid)))

    @fuse_errors
    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
        flags: int, ctx: pyfuse3.RequestContext,
    ) -> None:
        await self._answer(self.tree.rename(
            parent_inode_old, os.fsdecode(name_old), parent_inode_new, os.fsdecode(name_new),
            uid=ctx.uid, noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
            exchange=bool(flags & pyfuse3.RENAME_EXCHANGE)))

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self._answer(self.tree.unlink(parent_inode, os.fsdecode(name), ctx.uid))

    # -- extended attributes and statfs ---------------------------------------------------------------

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        if not self.tree.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)  # the kernel then stops asking: faster ls -l
        return [name.encode() for name in await self._answer(self.tree.xattrs_of(inode))]

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not self.tree.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        value = (await self._answer(self.tree.xattrs_of(inode))).get(os.fsdecode(name))
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value.encode()

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = pyfuse3.StatvfsData()
        stats.f_bsize = BLOCK_SIZE
        stats.f_frsize = 512
        stats.f_blocks = stats.f_bfree = stats.f_bavail = 0
        stats.f_files = self.tree.node_count
        stats.f_ffree = stats.f_favail = 0
        stats.f_namemax = 255
        return stats
