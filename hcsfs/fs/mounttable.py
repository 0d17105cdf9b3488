"""The kernel's mount table, stale-mount detection and unmounting with escalation.

Never ``os.path.ismount`` a FUSE mountpoint: on a dead mount it can raise or hang. The mount table in
``/proc/self/mountinfo`` answers without touching the filesystem; a ``stat`` with a time limit tells a
live mount from a dead one.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from hcsfs.errors import MountError

__all__ = ["MountEntry", "find_mount", "probe_mountpoint", "unmount", "MountState"]


@dataclass(frozen=True, slots=True)
class MountEntry:
    mountpoint: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_entries(mountinfo: str = "/proc/self/mountinfo") -> list[MountEntry]:
    entries = []
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as file:
        for line in file:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 2:
                entries.append(MountEntry(_unescape(fields[4]), tail[0], _unescape(tail[1])))
    return entries


def find_mount(path: str | os.PathLike[str]) -> MountEntry | None:
    """The mount whose mountpoint is exactly ``path`` (the last one, if stacked)."""
    target = os.path.abspath(path)
    found = None
    for entry in mount_entries():
        if entry.mountpoint == target:
            found = entry
    return found


class MountState:
    ABSENT = "absent"
    LIVE = "live"
    STALE = "stale"  # the daemon died: "Transport endpoint is not connected"
    HUNG = "hung"  # the daemon does not answer


def probe_mountpoint(path: str | os.PathLike[str], timeout: float = 5.0) -> str:
    """Whether ``path`` is not a mountpoint, a live mount, a stale one or a hung one."""
    if find_mount(path) is None:
        return MountState.ABSENT
    result: dict[str, BaseException | None] = {}

    def stat() -> None:
        try:
            os.stat(path)
            result["error"] = None
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=stat, daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" not in result:
        return MountState.HUNG
    error = result["error"]
    if isinstance(error, OSError) and error.errno in (errno.ENOTCONN, errno.ECONNABORTED):
        return MountState.STALE
    return MountState.LIVE


def _fusermount() -> str:
    for name in ("fusermount3", "fusermount"):
        found = shutil.which(name)
        if found:
            return found
    raise MountError("fusermount3 not found: install the fuse3 package")


def unmount(path: str | os.PathLike[str], timeout: float = 10.0) -> str:
    """Unmount ``path``: ``fusermount3 -u``, then lazily (``-uz``) if busy or dead. Says what it did."""
    mountpoint = str(Path(path).absolute())
    if find_mount(mountpoint) is None:
        raise MountError(f"{mountpoint} is not mounted")
    tool = _fusermount()
    errors = []
    for flags, outcome in (("-u", "unmounted"), ("-uz", "unmounted lazily (it was busy or dead)")):
        try:
            done = subprocess.run(
                [tool, flags, mountpoint], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            errors.append(f"{tool} {flags} timed out")
            continue
        if done.returncode == 0 and find_mount(mountpoint) is None:
            return outcome
        errors.append(done.stderr.strip() or f"{tool} {flags} exited {done.returncode}")
    if os.geteuid() == 0:
        done = subprocess.run(["umount", "-l", mountpoint], capture_output=True, text=True)
        if done.returncode == 0:
            return "unmounted lazily with umount -l"
        errors.append(done.stderr.strip())
    raise MountError(f"cannot unmount {mountpoint}: " + "; ".join(e for e in errors if e))
