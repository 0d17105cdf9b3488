"""The writable ``.pipelines/`` directory and the ``/<run>/`` output folders, over a PipelineManager.

Files written into ``.pipelines/`` are kept here as drafts while they are written; a file whose name
ends in ``.yaml``, ``.yml`` or ``.json`` is handed to the manager when its writer closes it (or when it
is renamed into place, as editors and rsync do), which validates it and starts the run. Other names
(editor swap files, rsync's temporary names) stay drafts. Runs' status and log files, their output
planes and tables are listed from the manager. This module does no FUSE I/O of its own: the
operations call it from worker threads, and it queues kernel-cache invalidations for runs that change.
"""

from __future__ import annotations

import errno
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from hcsfs.fs.tree import Entry, InodeTable, NodeKind

if TYPE_CHECKING:
    from hcsfs.fs.invalidate import Invalidator
    from hcsfs.pipelines import PipelineManager, RunOutput
    from hcsfs.sources.base import PlateSource

__all__ = ["ControlArea", "SpecFile", "SPEC_SUFFIXES", "is_spec_name"]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 1 << 20
MAX_DRAFTS = 64
_READ_ONLY_SUFFIXES = (".status", ".log")


def _error(code: int, message: str) -> OSError:
    return OSError(code, message)


def _same(value: PlateSource) -> PlateSource:
    return value


def _files(output: RunOutput, folder: str) -> dict[str, Entry]:
    return {name: Entry(NodeKind.FILE, dynamic=True, path=path)
            for name, path in output.folder_files(folder).items()}


def is_spec_name(name: str) -> bool:
    """Whether closing a file of this name starts a run (hidden names are editors' temporaries)."""
    return name.endswith(SPEC_SUFFIXES) and not name.startswith(".")


class SpecFile:
    """An open handle on a ``.pipelines/`` file: reads and writes go to its buffer."""

    def __init__(self, area: ControlArea, name: str, data: bytearray, writable: bool) -> None:
        self.area = area
        self.name = name
        self.data = data
        self.writable = writable
        self.dirty = False

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset : offset + size])

    def read_ready(self, offset: int, size: int) -> bytes:
        return self.read(offset, size)

    def write(self, offset: int, buffer: bytes) -> int:
        if not self.writable:
            raise _error(errno.EBADF, f"{self.name} is open read-only")
        end = offset + len(buffer)
        if end > MAX_FILE_BYTES:
            raise _error(errno.EFBIG, f"{self.name}: pipeline files are limited to {MAX_FILE_BYTES} bytes")
        if end > len(self.data):
            self.data.extend(b"\0" * (end - len(self.data)))
        self.data[offset:end] = buffer
        self.dirty = True
        return len(buffer)

    def close(self) -> None:
        """Released: :meth:`ControlArea.release` decides what happens to the content."""


class ControlArea:
    """Names, contents and changes of ``.pipelines/`` and the run output folders."""

    def __init__(self, manager: PipelineManager, tree: InodeTable, root_inode: int,
                 pipelines_inode: int, invalidator: Invalidator | None = None) -> None:
        self.manager = manager
        self.tree = tree
        self.root_inode = root_inode
        self.pipelines_inode = pipelines_inode
        self.invalidator = invalidator
        self._drafts: dict[str, bytearray] = {}
        self._writers: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- listings ---------------------------------------------------------------------------

    def pipelines_entries(self) -> dict[str, Entry]:
        entries = {"README": Entry(NodeKind.FILE, self.manager.readme)}
        for run in self.manager.run_names():
            entries[f"{run}.status"] = Entry(NodeKind.FILE, self._bound(self.manager.status, run), True)
            entries[f"{run}.log"] = Entry(NodeKind.FILE, self._bound(self.manager.log, run), True)
        with self._lock:
            names = set(self.manager.spec_files()) | set(self._drafts)
        for name in names:
            entries[name] = Entry(NodeKind.SPEC, self._bound(self.spec_content, name), True)
        return entries

    @staticmethod
    def _bound(fn: Callable[[str], bytes], name: str) -> Callable[[], bytes]:
        return lambda: fn(name)

    def root_entries(self) -> dict[str, Entry]:
        """One folder per run that has (or had) outputs."""
        return {run: Entry(NodeKind.DIRECTORY, dynamic=True,
                           planes=self._bound_source(run), entries=self._bound_entries(run))
                for run in self.manager.run_names() if self.manager.output(run) is not None}

    def _bound_source(self, run: str) -> Callable[[], PlateSource | None]:
        return lambda: self.run_source(run)

    def _bound_entries(self, run: str) -> Callable[[], dict[str, Entry]]:
        return lambda: self.run_entries(run)

    def run_entries(self, run: str) -> dict[str, Entry]:
        """A run folder: its tables, one folder per saved result (analysis runs), ``rois/``, ``heatmaps/``."""
        output = self.manager.output(run)
        if output is None:
            return {}
        entries = {name: Entry(NodeKind.FILE, dynamic=True, path=path)
                   for name, path in output.tables().items()}
        for result, plate in output.results().items():
            entries[result] = Entry(NodeKind.DIRECTORY, dynamic=True, planes=functools.partial(_same, plate))
        for folder in output.folders():
            entries[folder] = Entry(NodeKind.DIRECTORY, dynamic=True,
                                    entries=functools.partial(_files, output, folder))
        return entries

    def run_source(self, run: str) -> PlateSource | None:
        output = self.manager.output(run)
        return None if output is None else output.source

    def spec_content(self, name: str) -> bytes:
        with self._lock:
            draft = self._drafts.get(name)
            if draft is not None:
                return bytes(draft)
        content = self.manager.spec_files().get(name)
        if content is None:
            raise FileNotFoundError(errno.ENOENT, f".pipelines/{name}: no such file")
        return content

    # -- writes (called from worker threads) -------------------------------------------------

    def _check_writable_name(self, name: str) -> None:
        if name == "README" or name.endswith(_READ_ONLY_SUFFIXES):
            raise _error(errno.EPERM, f".pipelines/{name} is written by hcsfs, not by users")
        if len(name.encode()) > 255:
            raise _error(errno.ENAMETOOLONG, name)

    def open(self, name: str, *, write: bool, truncate: bool, create: bool) -> SpecFile:
        """A handle on ``name``; writers share one buffer, which readers see as the file."""
        if write or create:
            self._check_writable_name(name)
        with self._lock:
            data = self._drafts.get(name)
            if data is None:
                existing = self.manager.spec_files().get(name)
                if existing is None and not create:
                    raise FileNotFoundError(errno.ENOENT, f".pipelines/{name}: no such file")
                if write and len(self._drafts) >= MAX_DRAFTS:
                    raise _error(errno.ENOSPC, f".pipelines holds at most {MAX_DRAFTS} files being written")
                data = bytearray(existing or b"")
                if write:
                    self._drafts[name] = data
            elif not write:
                data = bytearray(data)  # a reader gets a snapshot
            if write and truncate:
                data.clear()
            handle = SpecFile(self, name, data, write)
            if write:
                self._writers[name] = self._writers.get(name, 0) + 1
            handle.dirty = write and (truncate or create)
        return handle

    def flush(self, handle: SpecFile) -> None:
        """``close(2)`` of a writer: if it is the file's only writer, hand a spec over now.

        FUSE sends ``flush`` before ``close`` returns but ``release`` only afterwards, so acting here
        makes ``cat > x.yaml && cat x.status`` see the new run. ``release`` still submits anything
        written after this point (a writer that kept a duplicated descriptor).
        """
        if not handle.writable or not handle.dirty or not is_spec_name(handle.name):
            return
        with self._lock:
            only_writer = self._writers.get(handle.name) == 1
        if only_writer:
            handle.dirty = False
            self._submit(handle.name, bytes(handle.data))

    def release(self, handle: SpecFile) -> None:
        """A writer's last reference is gone: submit what a flush did not, keep other names as drafts."""
        if not handle.writable:
            return
        with self._lock:
            self._writers[handle.name] -= 1
            last = self._writers[handle.name] == 0
            if last:
                del self._writers[handle.name]
        if last and handle.dirty and is_spec_name(handle.name):
            self._submit(handle.name, bytes(handle.data))

    def truncate(self, name: str, size: int) -> int:
        self._check_writable_name(name)
        if size > MAX_FILE_BYTES:
            raise _error(errno.EFBIG, f"pipeline files are limited to {MAX_FILE_BYTES} bytes")
        data = bytearray(self.spec_content(name))
        del data[size:]
        data.extend(b"\0" * (size - len(data)))
        with self._lock:
            draft = self._drafts.get(name)
            if draft is not None:
                draft[:] = data  # open handles share the buffer
            else:
                self._drafts[name] = data
        return len(data)

    def rename(self, old: str, new: str) -> None:
        """Editors and rsync write a temporary name, then rename it into place: that starts a run."""
        self._check_writable_name(new)
        content = self.spec_content(old)
        if is_spec_name(new):
            self._submit(new, content)  # first: a refused spec leaves the old file where it was
        else:
            with self._lock:
                self._drafts[new] = bytearray(content)
        if old != new:
            self.unlink(old)

    def unlink(self, name: str) -> None:
        self._check_writable_name(name)
        with self._lock:
            draft = self._drafts.pop(name, None)
        if name in self.manager.spec_files():
            self.manager.remove(name)
            self.outputs_replaced()
        elif draft is None:
            raise FileNotFoundError(errno.ENOENT, f".pipelines/{name}: no such file")

    def _submit(self, name: str, content: bytes) -> None:
        with self._lock:
            self._drafts.pop(name, None)
        self.manager.submit(name, content)
        self.outputs_replaced()

    # -- kernel caches ------------------------------------------------------------------------

    def run_changed(self, run: str) -> None:
        """The manager's callback: forget cached status, log, tables and folder attributes."""
        if self.invalidator is None:
            return
        for name in (f"{run}.status", f"{run}.log"):
            node = self.tree.known_entry(self.pipelines_inode, name)
            if node is not None:
                self.invalidator.inode(node.inode)
        folder = self.tree.known_entry(self.root_inode, run)
        if folder is not None:
            self._invalidate_folder(folder.inode, self.run_entries(run))

    def _invalidate_folder(self, inode: int, entries: dict[str, Entry]) -> None:
        """A run folder (or one of its subfolders) and the entries of it the kernel has seen."""
        assert self.invalidator is not None
        self.invalidator.inode(inode)
        for name, entry in entries.items():
            node = self.tree.known_entry(inode, name)
            if node is None:
                continue
            if entry.entries is not None:
                self._invalidate_folder(node.inode, entry.entries())
            else:
                self.invalidator.inode(node.inode)

    def outputs_replaced(self) -> None:
        """A run was restarted or cancelled: planes served under run folders may change."""
        if self.invalidator is None:
            return
        for run in self.manager.run_names():
            folder = self.tree.known_entry(self.root_inode, run)
            if folder is None:
                continue
            folders = [folder] + [n for n in (self.tree.known_entry(folder.inode, r)
                                              for r in self.run_entries(run)) if n is not None]
            for directory in folders:
                for node in self.tree.planes_of(directory.inode):
                    self.invalidator.entry(directory.inode, node.name)
                    self.invalidator.inode(node.inode)
            self.run_changed(run)
