"""Which files a piece of code opens, as the kernel sees it (inotify), whatever library does the I/O.

A spy on ``builtins.open`` misses ``io.open``, ``os.open``, C and Rust readers (zarrs, tensorstore,
libtiff); inotify reports every open and read of a file in a watched folder, from any thread or
language. Linux only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["opened_files"]

IN_ACCESS = 0x00000001
IN_OPEN = 0x00000020
IN_ISDIR = 0x40000000
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@contextmanager
def opened_files(root: Path) -> Iterator[set[Path]]:
    """Yields a set that, after the block, holds every file and folder under ``root`` that was opened
    or read inside the block (folders: listed). Fails if the kernel dropped events."""
    libc = _libc()
    fd = libc.inotify_init1(IN_NONBLOCK)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    watches: dict[int, Path] = {}
    try:
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            wd = libc.inotify_add_watch(fd, os.fsencode(folder), IN_OPEN | IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
            watches[wd] = folder
        seen: set[Path] = set()
        yield seen
        while True:
            try:
                data = os.read(fd, 1 << 20)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                raise
            offset = 0
            while offset < len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    raise AssertionError("inotify queue overflowed: events were lost")
                folder = watches.get(wd)
                if folder is not None:
                    seen.add(folder / os.fsdecode(name) if name else folder)
    finally:
        os.close(fd)
