"""The attributes of the mount's nodes: modes, owners, sizes, times and cache timeouts.

Plain values (no FUSE): the virtual tree answers with :class:`Attributes`, and the pyfuse3 adapter
copies them into the kernel's ``EntryAttributes`` together with the node's inode number.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Attributes", "AttributePolicy", "BLOCK_SIZE"]

BLOCK_SIZE = 1 << 20


class Attributes(NamedTuple):
    """What ``stat`` shows of a node, and how long the kernel may keep it (seconds); no inode, so one
    value serves every plane of the same size and time."""

    mode: int
    nlink: int
    size: int
    time_ns: int
    """atime, mtime and ctime."""
    uid: int
    gid: int
    timeout: float
    """Entry and attribute timeout."""

    @property
    def is_directory(self) -> bool:
        return stat.S_ISDIR(self.mode)


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

    def _attributes(self, mode: int, nlink: int, size: int, time_ns: int, timeout: float,
                    writable: bool) -> Attributes:
        if writable:  # the owner's: writable by the owner only, readable as the umask allows
            mode = (mode & ~0o7777) | 0o600 | (mode & 0o7777 & 0o155 & ~self.umask)
            uid = self.uid if self.owner_uid is None else self.owner_uid
            gid = self.gid if self.owner_gid is None else self.owner_gid
            return Attributes(mode, nlink, size, time_ns, uid, gid, timeout)
        return Attributes(mode & ~(self.umask & 0o777), nlink, size, time_ns, self.uid, self.gid, timeout)

    def directory(self, subdirectories: int = 0, *, writable: bool = False) -> Attributes:
        mode = 0o755 if writable else 0o555  # writable by the mount's owner only
        return self._attributes(stat.S_IFDIR | mode, 2 + subdirectories, 0, self.mount_time_ns,
                                self.dynamic_timeout, writable)

    def file(self, size: int, mtime_ns: int | None = None, *, immutable: bool = True,
             writable: bool = False) -> Attributes:
        timeout = self.immutable_timeout if immutable else self.dynamic_timeout
        mtime = (self.mount_time_ns if immutable else time.time_ns()) if mtime_ns is None else mtime_ns
        return self._attributes(stat.S_IFREG | (0o644 if writable else 0o444), 1, size, mtime, timeout,
                                writable)
