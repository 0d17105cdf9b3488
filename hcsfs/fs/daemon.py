"""Start a mount in the background and return only once it answers (or say why it could not).

The parent starts ``python -m hcsfs mount --foreground --ready-fd N ...`` in a new session and waits on
a pipe: the child writes ``ready`` once its mountpoint answers a ``stat``, or ``error: <reason>`` if it
cannot mount. A child that dies without a word is reported with the tail of its log.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from hcsfs.errors import MountError

__all__ = ["start_daemon", "report_ready", "report_failure", "return_large_buffers_to_the_system"]


def start_daemon(child_args: list[str], log_file: Path, timeout: float = 120.0) -> int:
    """Run ``hcsfs <child_args> --ready-fd N`` detached; return its pid once the mount answers."""
    read_fd, write_fd = os.pipe()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hcsfs", *child_args, "--ready-fd", str(write_fd)],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, cwd="/",
        )
    os.close(write_fd)
    message = b""
    deadline = time.monotonic() + timeout
    try:
        while not message.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.terminate()
                raise MountError(f"the mount did not answer within {timeout:.0f} s; see {log_file}")
            readable, _, _ = select.select([read_fd], [], [], remaining)
            if readable:
                chunk = os.read(read_fd, 4096)
                if not chunk:
                    break
                message += chunk
    finally:
        os.close(read_fd)
    text = message.decode(errors="replace").strip()
    if text == "ready":
        return process.pid
    if text.startswith("error: "):
        process.wait(10)
        raise MountError(text.removeprefix("error: "))
    code = process.wait(10)
    raise MountError(f"the mount daemon exited with status {code}: {_tail(log_file)}")


def _tail(log_file: Path, lines: int = 5) -> str:
    try:
        text = log_file.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return f"see {log_file}"
    return " | ".join(text) + f" (log: {log_file})"


def report_ready(fd: int | None) -> None:
    if fd is not None:
        os.write(fd, b"ready\n")
        os.close(fd)


def report_failure(fd: int | None, reason: str) -> None:
    if fd is not None:
        os.write(fd, f"error: {reason}\n".encode())
        os.close(fd)


def return_large_buffers_to_the_system(threshold: int = 1 << 20) -> bool:
    """Make glibc give every buffer of ``threshold`` bytes or more its own mapping, returned to the
    system when freed.

    By default glibc raises that threshold each time such a buffer is freed (up to 32 MiB), after which
    decoded planes come from the heap and stay resident: a daemon copying a plate ten times its
    ``--cache-size`` then held about 60 MiB more (measured by the torture suite's memory test). Only
    the daemon calls this; a Python process that mounts with :func:`hcsfs.mounted` keeps its own.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_mmap_threshold = -3
        return bool(libc.mallopt(m_mmap_threshold, threshold))
    except (OSError, AttributeError):  # not glibc
        return False
