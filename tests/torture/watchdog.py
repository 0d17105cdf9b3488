"""A hang watchdog for mount operations.

``with dog.bound("read every plane", 30, mountpoint, pid=daemon_pid, log_file=log):`` runs the block
normally; if it takes longer than the bound, the watchdog (a timer thread)

1. dumps every thread stack of the daemon: ``faulthandler`` in this process for an in-process mount
   (``hcsfs.mounted``), or ``SIGUSR1`` to a CLI daemon, whose foreground mode registers
   ``faulthandler`` on that signal and writes the stacks into its log file;
2. unblocks the stuck client by aborting the FUSE connection (``/sys/fs/fuse/connections/N/abort``,
   mounting ``fusectl`` first if needed), or by killing a CLI daemon when that is impossible;
3. fails the test once the block returns, with the stacks in the failure message and on stderr.

pyfuse3's own ``fuse_stacktrace`` xattr is no use here: it is answered by the loop that is stuck.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcsfs.fs.mounttable import mount_entries

__all__ = ["Watchdog", "abort_connection"]

_CONNECTIONS = Path("/sys/fs/fuse/connections")


def _connection_id(mountpoint: Path) -> str | None:
    """The FUSE connection number of a mount: the minor device number in mountinfo."""
    target = str(Path(mountpoint).absolute())
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as file:
        for line in file:
            fields = line.split()
            if len(fields) > 4 and fields[4] == target:
                return fields[2].partition(":")[2]
    return None


def abort_connection(mountpoint: Path) -> bool:
    """Abort a FUSE connection: every waiting request fails with ``ENOTCONN``. Root only."""
    connection = _connection_id(mountpoint)
    if connection is None or os.geteuid() != 0:
        return False
    if not any(e.fstype == "fusectl" for e in mount_entries()):
        subprocess.run(["mount", "-t", "fusectl", "fusectl", str(_CONNECTIONS)], capture_output=True)
    abort = _CONNECTIONS / connection / "abort"
    try:
        abort.write_text("1")
    except OSError:
        return False
    return True


class Watchdog:
    def __init__(self, test: str) -> None:
        self.test = test
        self.fired: list[str] = []
        self.operations = 0

    @contextlib.contextmanager
    def bound(self, what: str, seconds: float, mountpoint: Path, *, pid: int | None = None,
              log_file: Path | None = None) -> Iterator[None]:
        self.operations += 1
        log_start = log_file.stat().st_size if log_file is not None and log_file.exists() else 0
        fired: list[str] = []
        timer = threading.Timer(seconds, self._fire, (what, seconds, mountpoint, pid, log_file,
                                                      log_start, fired))
        timer.daemon = True
        timer.start()
        try:
            yield
        except OSError as exc:
            timer.cancel()
            timer.join()  # a firing watchdog first finishes its report (the abort caused this error)
            if not fired:
                raise
            fired.append(f"(the blocked operation then failed: {exc!r})")
        finally:
            timer.cancel()
            timer.join()
        if fired:
            self.fired.extend(fired)
            pytest.fail("\n".join(fired), pytrace=False)

    def _fire(self, what: str, seconds: float, mountpoint: Path, pid: int | None, log_file: Path | None,
              log_start: int, fired: list[str]) -> None:
        stacks = self._stacks(pid, log_file, log_start)
        how = "aborted the FUSE connection" if abort_connection(mountpoint) else None
        if how is None and pid is not None and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            how = f"killed the daemon (pid {pid})"
        message = (f"HANG: {what} on {mountpoint} took longer than {seconds} s in {self.test}; "
                   f"{how or 'could not unblock it'}.\nDaemon thread stacks:\n{stacks}")
        print(message, file=sys.stderr, flush=True)
        fired.append(message)

    @staticmethod
    def _stacks(pid: int | None, log_file: Path | None, log_start: int) -> str:
        if pid is None or pid == os.getpid():
            with tempfile.TemporaryFile("w+") as out:
                faulthandler.dump_traceback(file=out, all_threads=True)
                out.seek(0)
                return out.read()
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return f"(daemon {pid} is gone)"
        time.sleep(1.0)
        if log_file is None:
            return "(no daemon log file to read the stacks from)"
        with open(log_file, "rb") as log:
            log.seek(log_start)
            return log.read().decode(errors="replace")[-20_000:]

    def close(self) -> None:
        """Nothing to release; kept for symmetry with the fixture."""
