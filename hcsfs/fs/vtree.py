"""The mount as a virtual tree, without FUSE: which nodes exist, what each serves, and how a lookup,
listing, open or write resolves.

Every request returns its answer or, when that needs I/O or decoding, a
:class:`~hcsfs.fs.answers.Blocking` holding the work (see :mod:`hcsfs.fs.answers`); refusals are
:class:`~hcsfs.fs.answers.Refusal` errors with their errno. :mod:`hcsfs.fs.operations` only translates
these into pyfuse3 calls, and tests drive the tree directly, with no ``/dev/fuse``.

The tree: the root shows the plate's planes (and, with pipelines, one folder per run); ``.hcsfs/`` holds
``plate.json``, the index files and ``overview/``; ``.by-well/<well>/`` (reachable, not listed) shows
one well's planes; ``.pipelines/`` is the writable control folder (:mod:`hcsfs.fs.control`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from errno import EACCES, EBADF, EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, EROFS, EXDEV
from typing import TYPE_CHECKING, Any

from hcsfs.errors import PlaneNameError
from hcsfs.fs.answers import Answer, Blocking, Refusal, now, then
from hcsfs.fs.attributes import AttributePolicy, Attributes
from hcsfs.fs.control import ControlArea, SpecFile
from hcsfs.fs.index_files import IndexFiles
from hcsfs.fs.invalidate import Invalidator
from hcsfs.fs.listing import Listed, Listing
from hcsfs.fs.overview_files import OverviewFiles
from hcsfs.fs.planes import PlaneServer
from hcsfs.fs.tree import ROOT_INODE, Entry, InodeTable, Node, NodeKind
from hcsfs.naming import parse_name
from hcsfs.planefile import PassthroughFile
from hcsfs.sources.base import plate_summary
from hcsfs.sources.views import WellIndex, WellSource

if TYPE_CHECKING:
    from pathlib import Path

    from hcsfs.pipelines import PipelineManager
    from hcsfs.sources.base import PlaneInfo, PlateSource

__all__ = ["VirtualTree", "Opened", "Found", "XATTR_PREFIX"]

log = logging.getLogger("hcsfs.fs")

XATTR_PREFIX = "user.hcs."
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND

Found = tuple[int, Attributes]
"""A node's inode number and attributes."""

class BytesFile:
    """A generated file's content, fixed at open."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    def read_ready(self, offset: int, size: int) -> bytes | None:
        return self.read(offset, size)

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Opened:
    """An open file: the handle serving its bytes and how the kernel may cache them."""

    handle: Any
    keep_cache: bool = True
    """Immutable content: the page cache may keep it across opens."""
    direct_io: bool = False
    """Changing content (status, log, drafts): every read comes to the handle."""


def _same(value: Any) -> Any:
    return value


class VirtualTree:
    """A mount of one :class:`~hcsfs.sources.base.PlateSource`, with an optional pipeline manager."""

    def __init__(
        self, source: PlateSource, *, cache_bytes: int, xattrs: bool = False,
        manager: PipelineManager | None = None, uid: int | None = None, gid: int | None = None,
        umask: int | None = None, mountpoint: Path | None = None,
    ) -> None:
        self.source = source
        self.xattrs = xattrs
        """Serve ``user.hcs.*`` attributes; off, the adapter answers ENOSYS once and the kernel stops
        asking (``ls -l`` asks for ACLs and security labels on every file)."""
        self.table = InodeTable()
        self.policy = AttributePolicy.for_current_user(time.time_ns(), uid=uid, gid=gid, umask=umask)
        self.planes = PlaneServer(cache_bytes, time.time_ns())
        self._plate_json: bytes | None = None
        root = self.table[ROOT_INODE]
        root.planes = functools.partial(_same, source)
        meta = self.table.add_directory(ROOT_INODE, ".hcsfs")
        self.table.add_file(meta.inode, "plate.json", self._render_plate_json)
        meta.entries = IndexFiles(source, mountpoint).entries
        overview = self.table.add_directory(meta.inode, "overview")
        overview.entries = OverviewFiles(source).entries
        by_well = self.table.add_directory(ROOT_INODE, ".by-well", listed=False)
        by_well.entries = self._well_folders
        self._wells = WellIndex(source)
        self._well_sources: dict[str, WellSource] = {}
        self.invalidator: Invalidator | None = None
        self.control: ControlArea | None = None
        if manager is not None:
            self.invalidator = Invalidator()
            pipelines = self.table.add_directory(ROOT_INODE, ".pipelines", writable=True)
            self.control = ControlArea(manager, self.table, ROOT_INODE, pipelines.inode, self.invalidator)
            pipelines.entries = self.control.pipelines_entries
            root.entries = self.control.root_entries

    def close(self) -> None:
        self.planes.close()

    @property
    def node_count(self) -> int:
        """Nodes the tree holds (planes cost none: their inode numbers encode their keys)."""
        return len(self.table)

    # -- nodes -----------------------------------------------------------------------------------

    def _well_folders(self) -> dict[str, Entry]:
        """``/.by-well/<well>/``: the same flat names, one folder per well (may do I/O)."""
        folders = {}
        for well in self._wells.wells():
            source = self._well_sources.get(well)
            if source is None:
                source = self._well_sources[well] = WellSource(self.source, self._wells, well)
            folders[well] = Entry(NodeKind.DIRECTORY, planes=functools.partial(_same, source))
        return folders

    def _render_plate_json(self) -> bytes:
        if self._plate_json is None:
            summary = plate_summary(self.source)
            self._plate_json = (json.dumps(summary, indent=2) + "\n").encode()
        return self._plate_json

    def node(self, inode: int) -> Node:
        node = self.table.get(inode)
        if node is None:
            raise Refusal(ENOENT)
        return node

    def _source_of(self, directory: Node) -> PlateSource:
        source = directory.planes() if directory.planes is not None else None
        if source is None:
            raise Refusal(ENOENT, f"{directory.name}: no planes here")
        return source

    def _ensure(self, directory: Node, name: str, entry: Entry) -> Node:
        node = self.table.entry(directory.inode, name, entry)
        if directory.writable and entry.kind is NodeKind.SPEC:
            node.writable = True
        return node

    def attributes(self, node: Node) -> Answer[Attributes]:
        """What ``stat`` shows of a node."""
        if node.kind is NodeKind.DIRECTORY:
            subdirs = sum(c.is_directory for c in self.table.children(node.inode))
            return self.policy.directory(subdirs, writable=node.writable)
        if node.kind is NodeKind.PLANE:
            assert node.key is not None
            info = self.planes.info(self._source_of(self.node(node.parent)), node.key)
            return then(info, self._plane_attributes)
        immutable = not node.dynamic
        if node.path is not None:
            path = node.path
            return Blocking(lambda: self.policy.file(path.stat().st_size, None, immutable=immutable))
        content, size = node.content, node.size
        assert content is not None
        measure = size or (lambda: len(content()))
        writable = node.writable
        return Blocking(lambda: self.policy.file(measure(), None, immutable=immutable, writable=writable))

    def _plane_attributes(self, info: PlaneInfo) -> Attributes:
        return self.policy.file(info.size, info.mtime_ns)

    def _found(self, node: Node) -> Answer[Found]:
        inode = node.inode
        return then(self.attributes(node), lambda attributes: (inode, attributes))

    # -- lookups, attributes, listings --------------------------------------------------------------

    def lookup(self, parent_inode: int, name: str) -> Answer[Found]:
        parent = self.node(parent_inode)
        if name == ".":
            return self._found(parent)
        if name == "..":
            return self._found(self.node(parent.parent))
        child = self.table.child(parent_inode, name)
        if child is not None:
            return self._found(child)
        if parent.planes is not None:
            try:
                # Run and result folders never have a plane's name (specs refuse such names), so a
                # plane name needs no provider listing: no worker-thread trip when its info is known.
                return self._plane(parent, parse_name(name))
            except PlaneNameError:
                pass
        if parent.entries is None:
            raise Refusal(ENOENT)
        entries = parent.entries
        return Blocking(lambda: self._provided(parent, name, entries()))

    def _provided(self, parent: Node, name: str, entries: dict[str, Entry]) -> Found:
        entry = entries.get(name)
        if entry is None:
            raise Refusal(ENOENT)
        return now(self._found(self._ensure(parent, name, entry)))

    def _plane(self, parent: Node, key: Any) -> Answer[Found]:
        info = self.planes.info(self._source_of(parent), key)
        table, parent_inode = self.table, parent.inode
        return then(info, lambda i: (table.plane(parent_inode, key).inode, self._plane_attributes(i)))

    def getattr(self, inode: int) -> Answer[Attributes]:
        return self.attributes(self.node(inode))

    def opendir(self, inode: int) -> Answer[Listing]:
        node = self.node(inode)
        if node.kind is not NodeKind.DIRECTORY:
            raise Refusal(ENOTDIR)
        return Blocking(lambda: self._listing(node))

    def _listing(self, directory: Node) -> Listing:
        """A listing of ``directory``: named entries with their attributes now, planes as read."""
        nodes = [child for child in self.table.children(directory.inode) if child.listed]
        if directory.entries is not None:
            nodes += [self._ensure(directory, name, entry) for name, entry in directory.entries().items()]
        named: list[Listed] = []
        for node in sorted(nodes, key=lambda n: n.name):
            try:
                named.append((os.fsencode(node.name), node.inode, now(self.attributes(node))))
            except (OSError, KeyError):
                continue  # removed meanwhile
        source = directory.planes() if directory.planes is not None else None
        listing = Listing(named, source, functools.partial(self.table.plane_inode, directory.inode),
                          self.policy)
        listing.restart()
        return listing

    def xattrs_of(self, inode: int) -> Answer[dict[str, str]]:
        """A plane's ``user.hcs.*`` attributes (other nodes have none)."""
        node = self.node(inode)
        if node.kind is not NodeKind.PLANE or node.key is None:
            return {}
        key = node.key

        def values(info: PlaneInfo) -> dict[str, str]:
            found: dict[str, object] = {"well": key.well, "site": key.site, "channel": key.channel,
                                        "z": key.z, "t": key.t}
            if info.channel_name:
                found["channel_name"] = info.channel_name
            if info.pixel_size_um is not None:
                found["pixel_size_um"] = repr(info.pixel_size_um)
            if info.passthrough is not None:
                found["source_path"] = str(info.passthrough)
            return {XATTR_PREFIX + k: str(v) for k, v in found.items()}

        return then(self.planes.info(self._source_of(self.node(node.parent)), key), values)

    # -- files ----------------------------------------------------------------------------------

    def open(self, inode: int, flags: int, uid: int) -> Answer[Opened]:
        node = self.node(inode)
        if node.kind is NodeKind.DIRECTORY:
            raise Refusal(EISDIR)
        if node.kind is NodeKind.SPEC:
            if flags & _WRITE_FLAGS:
                self._check_owner(uid)
            return self._open_spec(node, flags)
        if flags & _WRITE_FLAGS:
            raise Refusal(EROFS)
        if node.kind is NodeKind.PLANE:
            assert node.key is not None
            opened = self.planes.open(self._source_of(self.node(node.parent)), node.key)
            return then(opened, Opened)
        cached, direct = not node.dynamic, node.dynamic  # changing files bypass the page cache
        if node.path is not None:  # a complete file of a run, on disk
            path = node.path
            return Blocking(lambda: Opened(PassthroughFile(path, path.stat().st_size), cached, direct))
        if node.opener is not None:  # serves byte ranges itself
            opener = node.opener
            return Blocking(lambda: Opened(opener(), cached, direct))
        content = node.content
        assert content is not None
        return Blocking(lambda: Opened(BytesFile(content()), cached, direct))

    def release(self, handle: Any) -> Answer[None]:
        handle.close()
        if isinstance(handle, SpecFile) and self.control is not None:
            control = self.control
            return Blocking(lambda: self._handing_over(control.release, handle))
        return None

    @property
    def flushes(self) -> bool:
        """Whether ``close(2)`` means anything (a spec written into ``.pipelines/``); without pipelines
        the adapter says ENOSYS once and the kernel stops sending a flush on every close."""
        return self.control is not None

    def flush(self, handle: Any) -> Answer[None]:
        if isinstance(handle, SpecFile) and self.control is not None:
            control = self.control
            return Blocking(lambda: self._handing_over(control.flush, handle))
        return None

    @staticmethod
    def _handing_over(step: Callable[[SpecFile], None], handle: SpecFile) -> None:
        try:
            step(handle)
        except Exception:  # close(2) itself succeeds; the run's status says what failed
            log.exception("handing .pipelines/%s to the pipeline manager failed", handle.name)

    # -- writes: .pipelines/ only, EROFS elsewhere ------------------------------------------------

    def _check_owner(self, uid: int) -> None:
        """Only the mount's owner (and root) changes ``.pipelines/``: the kernel already enforces the
        modes (``default_permissions``); this holds even if a mount is made without that option."""
        owner = self.policy.owner_uid
        if owner is not None and uid not in (owner, 0):
            raise Refusal(EACCES)

    def _control_for(self, parent_inode: int) -> ControlArea:
        """The control area if ``parent_inode`` is the writable ``.pipelines/``; else EROFS."""
        if self.control is None or parent_inode != self.control.pipelines_inode:
            raise Refusal(EROFS)
        return self.control

    def _spec_node(self, name: str) -> Node:
        control = self.control
        assert control is not None  # only writes into .pipelines/ get here
        node = self.table.entry(control.pipelines_inode, name, Entry(
            NodeKind.SPEC, functools.partial(control.spec_content, name), True))
        node.writable = True
        return node

    def _open_spec(self, node: Node, flags: int) -> Answer[Opened]:
        control = self._control_for(node.parent)
        write = bool(flags & (os.O_WRONLY | os.O_RDWR))
        truncate = bool(flags & os.O_TRUNC)
        return Blocking(lambda: Opened(control.open(node.name, write=write, truncate=truncate,
                                                    create=False), keep_cache=False, direct_io=True))

    def create(self, parent_inode: int, name: str, uid: int) -> Answer[tuple[Opened, Found]]:
        control = self._control_for(parent_inode)
        self._check_owner(uid)

        def create() -> tuple[Opened, Found]:
            handle = control.open(name, write=True, truncate=True, create=True)
            return Opened(handle, keep_cache=False, direct_io=True), now(self._found(self._spec_node(name)))

        return Blocking(create)

    def write(self, handle: Any, offset: int, data: bytes) -> int:
        if not isinstance(handle, SpecFile):
            raise Refusal(EBADF)
        return handle.write(offset, data)

    def truncate(self, inode: int, size: int | None, uid: int) -> Answer[Attributes]:
        """``setattr``: a spec file's size (``echo > spec``); its mode, owner and times are not kept,
        but accepting them keeps editors and ``cp -p`` happy. Anything else is read-only."""
        node = self.node(inode)
        if node.kind is not NodeKind.SPEC:
            raise Refusal(EROFS)
        control = self._control_for(node.parent)
        self._check_owner(uid)
        if size is None:
            return self.attributes(node)

        def truncate() -> Attributes:
            control.truncate(node.name, size)
            return now(self.attributes(node))

        return Blocking(truncate)

    def rename(self, parent_old: int, old: str, parent_new: int, new: str, *, uid: int,
               noreplace: bool = False, exchange: bool = False) -> Answer[None]:
        control = self._control_for(parent_old)
        self._check_owner(uid)
        if parent_new != parent_old:
            raise Refusal(EXDEV)
        if exchange:
            raise Refusal(EINVAL)

        def rename() -> None:
            if noreplace and new in control.pipelines_entries():
                raise Refusal(EEXIST)
            control.rename(old, new)
            self._spec_node(new)

        return Blocking(rename)

    def unlink(self, parent_inode: int, name: str, uid: int) -> Answer[None]:
        control = self._control_for(parent_inode)
        self._check_owner(uid)
        return Blocking(lambda: control.unlink(name))

