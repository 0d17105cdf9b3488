"""Every request that would change the mount gets ``EROFS`` (the source plate is read-only)."""

from __future__ import annotations

import errno
from typing import Any

import pyfuse3

__all__ = ["ReadOnlyOperations"]


def _read_only() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.EROFS)


class ReadOnlyOperations(pyfuse3.Operations):
    """Rejects writes, creations, removals, renames and attribute or xattr changes."""

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: Any, ctx: Any) -> Any:
        raise _read_only()

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any) -> Any:
        raise _read_only()

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> Any:
        raise _read_only()

    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        raise _read_only()

    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        raise _read_only()

    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any) -> Any:
        raise _read_only()

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> Any:
        raise _read_only()

    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
        flags: int, ctx: Any,
    ) -> None:
        raise _read_only()

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any) -> Any:
        raise _read_only()

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        raise _read_only()

    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        raise _read_only()

    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        raise _read_only()
