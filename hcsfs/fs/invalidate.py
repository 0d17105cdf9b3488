"""Tell the kernel to forget cached entries and attributes, from a thread of its own.

``pyfuse3.invalidate_entry``/``invalidate_inode`` block until related requests finish, so calling them
from a request handler or under a lock deadlocks the mount. Producers (pipeline runs, write handlers)
only enqueue; this thread does the calls, and stops before the session is closed.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

import pyfuse3

__all__ = ["Invalidator"]

log = logging.getLogger("hcsfs.fs")


@dataclass(frozen=True, slots=True)
class _Entry:
    parent: int
    name: str


@dataclass(frozen=True, slots=True)
class _Inode:
    inode: int


class Invalidator:
    """A queue of invalidations and the one thread that sends them to the kernel."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Entry | _Inode | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hcsfs-invalidator", daemon=True)
        self._started = False
        self._stopping = threading.Event()

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self) -> None:
        """Drop what is queued and end; call once the loop stopped serving, before ``pyfuse3.close``.

        Nothing is sent after serving stopped: an entry invalidation would wait for requests that can
        no longer complete.
        """
        self._stopping.set()
        if self._started:
            self._queue.put(None)
            self._thread.join(10)

    def entry(self, parent: int, name: str) -> None:
        """Forget the kernel's dentry ``name`` in directory ``parent``."""
        self._queue.put(_Entry(parent, name))

    def inode(self, inode: int) -> None:
        """Forget an inode's cached attributes and data."""
        self._queue.put(_Inode(inode))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._stopping.is_set():
                break
            try:
                if isinstance(item, _Entry):
                    pyfuse3.invalidate_entry(item.parent, item.name.encode())
                else:
                    pyfuse3.invalidate_inode(item.inode)
            except FileNotFoundError:
                pass  # the kernel has nothing cached for it
            except OSError as exc:
                log.debug("invalidation of %s failed: %s", item, exc)
