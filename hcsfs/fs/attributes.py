"""``EntryAttributes`` for the mount's nodes: modes, sizes, times and cache timeouts."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

import pyfuse3

__all__ = ["AttributePolicy"]

BLOCK_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class AttributePolicy:
    """Who owns the mount's entries, their modes, and how long the kernel may cache them.

    ``uid``/``gid``/``umask`` (the mount's ``--uid/--gid/--umask``) apply to the plate: its planes,
    folders and metadata files. The writable ``.pipelines/`` and its spec files always belong to the
    mount's owner (``owner_uid``/``owner_gid``, the user who mounted) and are writable by nobody else:
    with ``default_permissions`` the kernel enforces it, also under ``--allow-other``.
    """

    uid: int
    gid: int
    mount_time_ns: int
    immutable_timeout: float = 3600.0
    """Planes and static files never change while mounted: let the kernel keep them."""
    dynamic_timeout: float = 1.0
    umask: int = 0o022
    owner_uid: int | None = None
    owner_gid: int | None = None

    @classmethod
    def for_current_user(cls, mount_time_ns: int, *, uid: int | None = None, gid: int | None = None,
                         umask: int | None = None) -> AttributePolicy:
        owner_uid, owner_gid = os.getuid(), os.getgid()
        return cls(owner_uid if uid is None else uid, owner_gid if gid is None else gid, mount_time_ns,
                   umask=0o022 if umask is None else umask & 0o777, owner_uid=owner_uid,
                   owner_gid=owner_gid)

    def _base(self, inode: int, mode: int, timeout: float, writable: bool = False) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        if writable:  # the owner's: writable by the owner only, readable as the umask allows
            attrs.st_mode = (mode & ~0o7777) | 0o600 | (mode & 0o7777 & 0o155 & ~self.umask)
            attrs.st_uid = self.uid if self.owner_uid is None else self.owner_uid
            attrs.st_gid = self.gid if self.owner_gid is None else self.owner_gid
        else:
            attrs.st_mode = mode & ~(self.umask & 0o777)
            attrs.st_uid = self.uid
            attrs.st_gid = self.gid
        attrs.st_blksize = BLOCK_SIZE
        attrs.entry_timeout = timeout
        attrs.attr_timeout = timeout
        return attrs

    def directory(
        self, inode: int, subdirectories: int = 0, *, writable: bool = False
    ) -> pyfuse3.EntryAttributes:
        mode = 0o755 if writable else 0o555  # writable by the mount's owner only
        attrs = self._base(inode, stat.S_IFDIR | mode, self.dynamic_timeout, writable)
        attrs.st_nlink = 2 + subdirectories
        attrs.st_size = 0
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = self.mount_time_ns
        return attrs

    def file(
        self, inode: int, size: int, mtime_ns: int | None = None, *, immutable: bool = True,
        writable: bool = False,
    ) -> pyfuse3.EntryAttributes:
        timeout = self.immutable_timeout if immutable else self.dynamic_timeout
        attrs = self._base(inode, stat.S_IFREG | (0o644 if writable else 0o444), timeout, writable)
        attrs.st_nlink = 1
        attrs.st_size = size
        attrs.st_blocks = -(-size // 512)
        mtime = (self.mount_time_ns if immutable else time.time_ns()) if mtime_ns is None else mtime_ns
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = mtime
        return attrs
