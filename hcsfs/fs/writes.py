"""Write requests: allowed in ``.pipelines/``, ``EROFS`` everywhere else.

Creating, writing, truncating (``echo > spec``), renaming into place and unlinking are handed to the
:class:`~hcsfs.fs.control.ControlArea` (in a worker thread); every other change is refused by
:class:`~hcsfs.fs.readonly.ReadOnlyOperations`.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import TYPE_CHECKING, Any

import pyfuse3

from hcsfs.fs.control import SpecFile
from hcsfs.fs.errno_map import fuse_errors
from hcsfs.fs.readonly import ReadOnlyOperations
from hcsfs.fs.tree import Entry, NodeKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from hcsfs.fs.attributes import AttributePolicy
    from hcsfs.fs.control import ControlArea
    from hcsfs.fs.tree import InodeTable, Node

__all__ = ["WritableOperations"]

log = logging.getLogger("hcsfs.fs")

_EROFS = pyfuse3.FUSEError(errno.EROFS)


class WritableOperations(ReadOnlyOperations):
    """The write half of the handlers; the read half (:class:`PlateOperations`) provides the rest."""

    if TYPE_CHECKING:
        control: ControlArea | None
        tree: InodeTable
        policy: AttributePolicy
        _handles: dict[int, Any]

        def _node(self, inode: int) -> Node: ...
        def _new_fh(self, handle: Any) -> int: ...
        async def _blocking(self, fn: Callable[..., Any], *args: Any, cpu: bool = False) -> Any: ...
        async def _attributes(self, node: Node) -> pyfuse3.EntryAttributes: ...

    def _check_owner(self, ctx: pyfuse3.RequestContext) -> None:
        """Only the mount's owner (and root) changes ``.pipelines/``: the kernel already enforces the
        modes (``default_permissions``); this holds even if a mount is made without that option."""
        owner = self.policy.owner_uid
        if owner is not None and ctx.uid not in (owner, 0):
            raise pyfuse3.FUSEError(errno.EACCES)

    def _control_for(self, parent_inode: int) -> ControlArea:
        """The control area if ``parent_inode`` is the writable ``.pipelines/``; else EROFS."""
        if self.control is None or parent_inode != self.control.pipelines_inode:
            raise pyfuse3.FUSEError(errno.EROFS)
        return self.control

    def _spec_node(self, name: str) -> Node:
        assert self.control is not None
        node = self.tree.entry(self.control.pipelines_inode, name, Entry(
            NodeKind.SPEC, lambda: self.control.spec_content(name) if self.control else b"", True))
        node.writable = True
        return node

    async def _open_spec(self, node: Node, flags: int) -> pyfuse3.FileInfo:
        control = self._control_for(node.parent)
        write = bool(flags & (os.O_WRONLY | os.O_RDWR))
        truncate = bool(flags & os.O_TRUNC)
        handle = await self._blocking(
            lambda: control.open(node.name, write=write, truncate=truncate, create=False))
        return pyfuse3.FileInfo(fh=self._new_fh(handle), keep_cache=False, direct_io=True)

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        control = self._control_for(parent_inode)
        self._check_owner(ctx)
        text = os.fsdecode(name)
        handle = await self._blocking(
            lambda: control.open(text, write=True, truncate=True, create=True))
        node = self._spec_node(text)
        info = pyfuse3.FileInfo(fh=self._new_fh(handle), keep_cache=False, direct_io=True)
        return info, await self._attributes(node)

    async def flush(self, fh: int) -> None:
        if self.control is None:
            # Nothing to hand over on close(2): ENOSYS once and the kernel stops sending a flush on
            # every close (one round trip through Python less per open file).
            raise pyfuse3.FUSEError(errno.ENOSYS)
        handle = self._handles.get(fh)
        if isinstance(handle, SpecFile) and self.control is not None:
            control = self.control
            try:
                await self._blocking(control.flush, handle)
            except Exception:  # the run's status says what failed; close(2) itself succeeds
                log.exception("handing .pipelines/%s to the pipeline manager failed", handle.name)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handles.get(fh)
        if not isinstance(handle, SpecFile):
            raise pyfuse3.FUSEError(errno.EBADF)
        return handle.write(off, buf)

    @fuse_errors
    async def setattr(
        self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
        fh: int | None, ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        if node.kind is not NodeKind.SPEC:
            raise pyfuse3.FUSEError(errno.EROFS)
        control = self._control_for(node.parent)
        self._check_owner(ctx)
        if fields.update_size:
            await self._blocking(control.truncate, node.name, attr.st_size)
        # mode, owner and times of spec files are not kept; accepting them keeps editors and cp -p happy
        return await self._attributes(node)

    @fuse_errors
    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
        flags: int, ctx: pyfuse3.RequestContext,
    ) -> None:
        control = self._control_for(parent_inode_old)
        self._check_owner(ctx)
        if parent_inode_new != parent_inode_old:
            raise pyfuse3.FUSEError(errno.EXDEV)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old, new = os.fsdecode(name_old), os.fsdecode(name_new)
        if flags & pyfuse3.RENAME_NOREPLACE and new in control.pipelines_entries():
            raise pyfuse3.FUSEError(errno.EEXIST)
        await self._blocking(control.rename, old, new)
        self._spec_node(new)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        control = self._control_for(parent_inode)
        self._check_owner(ctx)
        await self._blocking(control.unlink, os.fsdecode(name))
