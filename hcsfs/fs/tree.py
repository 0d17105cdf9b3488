"""The mount's inode table: stable inode numbers for directories, files and planes.

Pure bookkeeping, no FUSE and no I/O, so it is unit-tested without a mount. Inode numbers are handed out
on first sight and kept for the mount's life, so a name always has the same inode while mounted.

Plane inodes cost no memory: a plane's inode number *is* its key, packed into the bits below the
folder's number (:class:`_PlanePacking`), and its node is rebuilt from the number when asked. Only keys
that do not fit the packing (reduction names, indexes past the field widths) get a table entry.

A directory's entries come from three places: fixed children (``.hcsfs``), entries a provider lists on
demand (``.pipelines/`` files, run output folders), and planes of a source (looked up by key).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hcsfs.naming import PlaneKey, format_well, parse_well

if TYPE_CHECKING:
    from hcsfs.sources.base import PlateSource

__all__ = ["NodeKind", "Node", "Entry", "FileHandle", "InodeTable", "ROOT_INODE"]

ROOT_INODE = 1

_FOLDER_SHIFT = 58
_MAX_PACKED_FOLDERS = (1 << (64 - _FOLDER_SHIFT)) - 1
# bits per field of a packed plane key: row, column, site, channel, z, t (58 bits in all)
_FIELDS = (("row", 10), ("column", 10), ("site", 10), ("channel", 8), ("z", 10), ("t", 10))


def _pack(key: PlaneKey) -> int | None:
    """The key as a 58-bit number, or None when a field does not fit (or is a reduction name).
    Unrolled for the field widths of ``_FIELDS``: listings pack every plane they show."""
    row, column = parse_well(key.well)
    site, channel, z, t = key.site, key.channel, key.z, key.t
    if (type(site) is not int or type(channel) is not int or type(z) is not int or type(t) is not int
            or row >= 1 << 10 or column >= 1 << 10 or site >= 1 << 10 or channel >= 1 << 8
            or z >= 1 << 10 or t >= 1 << 10):
        return None
    return (((((row << 10 | column) << 10 | site) << 8 | channel) << 10 | z) << 10) | t


def _unpack(packed: int) -> PlaneKey:
    values = []
    for _, bits in reversed(_FIELDS):
        values.append(packed & ((1 << bits) - 1))
        packed >>= bits
    t, z, channel, site, column, row = values
    return PlaneKey(format_well(row, column), site, channel, z, t)


class FileHandle(Protocol):
    """An open file that serves byte ranges: ``read_ready`` answers without blocking or gives None
    (then ``read`` runs in a worker thread)."""

    size: int

    def read(self, offset: int, size: int) -> bytes: ...

    def read_ready(self, offset: int, size: int) -> bytes | None: ...

    def close(self) -> None: ...


class NodeKind(Enum):
    DIRECTORY = "directory"
    PLANE = "plane"
    FILE = "file"
    """A file whose bytes a function gives (plate.json, status, log, tables, README)."""
    SPEC = "spec"
    """A writable file of ``.pipelines/``."""


@dataclass(frozen=True, slots=True)
class Entry:
    """What a directory provider says about one of its names."""

    kind: NodeKind
    content: Callable[[], bytes] | None = None
    dynamic: bool = False
    """Changes while mounted: short cache timeouts, read without the page cache."""
    size: Callable[[], int] | None = None
    """The content's size without producing it (else ``len(content())``)."""
    planes: Callable[[], PlateSource | None] | None = None
    """For a directory: the source whose planes it shows."""
    entries: Callable[[], dict[str, Entry]] | None = None
    """For a directory: its own provider of named entries."""
    path: Path | None = None
    """For a file: served from this complete file on disk (tables, ROI sets), never held in memory."""
    opener: Callable[[], FileHandle] | None = None
    """For a file: opens a handle that serves byte ranges itself (streamed tables), instead of
    ``content()`` read whole at open."""


@dataclass(slots=True)
class Node:
    """One entry of the tree."""

    inode: int
    parent: int
    name: str
    kind: NodeKind
    key: PlaneKey | None = None
    content: Callable[[], bytes] | None = None
    dynamic: bool = False
    size: Callable[[], int] | None = None
    children: dict[str, int] | None = None
    """Fixed children of a directory; None for files."""
    entries: Callable[[], dict[str, Entry]] | None = None
    """Lists a directory's changing entries (called on lookup and opendir)."""
    planes: Callable[[], PlateSource | None] | None = None
    """The source whose planes this directory shows, if any."""
    path: Path | None = None
    """A file served from disk (see :attr:`Entry.path`)."""
    opener: Callable[[], FileHandle] | None = None
    """A file that serves byte ranges itself (see :attr:`Entry.opener`)."""
    writable: bool = False
    listed: bool = True
    """False: reachable by its path but left out of its parent's listing (so cp -r, rsync and find
    do not walk a second copy of the plate)."""

    @property
    def is_directory(self) -> bool:
        return self.kind is NodeKind.DIRECTORY


class InodeTable:
    """Inode numbers ↔ nodes; thread-safe."""

    def __init__(self) -> None:
        root = Node(ROOT_INODE, ROOT_INODE, "", NodeKind.DIRECTORY, children={})
        self._nodes: dict[int, Node] = {ROOT_INODE: root}
        self._named: dict[tuple[int, str], int] = {}
        self._planes: dict[int, dict[PlaneKey, int]] = {}
        """Plane inodes handed out per folder, except the root's (whose planes never change)."""
        self._unpacked: dict[tuple[int, PlaneKey], int] = {}
        self._folder_ids: dict[int, int] = {}  # folder inode -> its number in packed plane inodes
        self._folders: list[int] = [0]
        self._next = ROOT_INODE + 1
        self._lock = threading.Lock()

    def _new(self, parent: int, name: str, kind: NodeKind, **fields: object) -> Node:
        node = Node(self._next, parent, name, kind, **fields)  # type: ignore[arg-type]
        self._next += 1
        self._nodes[node.inode] = node
        return node

    def add_directory(self, parent: int, name: str, **fields: object) -> Node:
        """A fixed subdirectory (``.hcsfs``, ``.pipelines``)."""
        return self._add_fixed(parent, name, NodeKind.DIRECTORY, children={}, **fields)

    def add_file(self, parent: int, name: str, content: Callable[[], bytes]) -> Node:
        """A fixed file whose bytes ``content()`` gives."""
        return self._add_fixed(parent, name, NodeKind.FILE, content=content)

    def _add_fixed(self, parent: int, name: str, kind: NodeKind, **fields: object) -> Node:
        with self._lock:
            directory = self._nodes[parent]
            if directory.children is None:
                raise NotADirectoryError(f"inode {parent} is not a directory")
            if name in directory.children:
                raise FileExistsError(f"{name!r} already exists in inode {parent}")
            node = self._new(parent, name, kind, **fields)
            directory.children[name] = node.inode
            return node

    def entry(self, parent: int, name: str, entry: Entry, **fields: object) -> Node:
        """The node of a provider-listed ``name`` in ``parent``: created on first sight, then kept
        (same inode) and updated to what the provider says now."""
        with self._lock:
            inode = self._named.get((parent, name))
            if inode is None:
                children: dict[str, int] | None = {} if entry.kind is NodeKind.DIRECTORY else None
                node = self._new(parent, name, entry.kind, content=entry.content,
                                 dynamic=entry.dynamic, size=entry.size, children=children,
                                 planes=entry.planes, entries=entry.entries, path=entry.path,
                                 opener=entry.opener, **fields)
                self._named[(parent, name)] = node.inode
                return node
            node = self._nodes[inode]
            node.kind, node.content, node.dynamic = entry.kind, entry.content, entry.dynamic
            node.size, node.planes, node.entries = entry.size, entry.planes, entry.entries
            node.path, node.opener = entry.path, entry.opener
            return node

    def known_entry(self, parent: int, name: str) -> Node | None:
        """A provider-listed node already handed out, or None (never creates)."""
        inode = self._named.get((parent, name))
        return None if inode is None else self._nodes[inode]

    def plane_inode(self, parent: int, key: PlaneKey) -> int:
        """Just the inode number of :meth:`plane` (the listing's hot path: no node is built)."""
        folder = self._folder_ids.get(parent)
        packed = None if folder is None or parent != ROOT_INODE else _pack(key)
        if packed is not None:
            return ((folder or 0) << _FOLDER_SHIFT) | packed
        return self.plane(parent, key).inode

    def plane(self, parent: int, key: PlaneKey) -> Node:
        """The node of plane ``key`` in directory ``parent`` (same inode every time)."""
        with self._lock:
            folder = self._folder_ids.get(parent)
            if folder is None and len(self._folders) <= _MAX_PACKED_FOLDERS:
                folder = self._folder_ids[parent] = len(self._folders)
                self._folders.append(parent)
            packed = None if folder is None else _pack(key)
            if packed is not None:
                assert folder is not None
                inode = (folder << _FOLDER_SHIFT) | packed
            else:
                inode = self._unpacked.get((parent, key)) or self._next
                if inode == self._next:
                    self._next += 1
                    self._unpacked[(parent, key)] = inode
                    self._nodes[inode] = Node(inode, parent, key.name, NodeKind.PLANE, key=key)
            if parent != ROOT_INODE:
                self._planes.setdefault(parent, {})[key] = inode
        return self._nodes.get(inode) or Node(inode, parent, key.name, NodeKind.PLANE, key=key)

    def planes_of(self, parent: int) -> list[Node]:
        """Plane nodes handed out under ``parent`` (not the root: its planes never change)."""
        with self._lock:
            keys = list(self._planes.get(parent, {}).items())
        return [self.plane(parent, key) for key, _ in keys]

    def child(self, parent: int, name: str) -> Node | None:
        """A fixed child of ``parent``, or None."""
        children = self._nodes[parent].children
        inode = None if children is None else children.get(name)
        return None if inode is None else self._nodes[inode]

    def children(self, parent: int) -> list[Node]:
        """The fixed children of ``parent``."""
        children = self._nodes[parent].children or {}
        return [self._nodes[i] for i in children.values()]

    def __getitem__(self, inode: int) -> Node:
        node = self.get(inode)
        if node is None:
            raise KeyError(inode)
        return node

    def get(self, inode: int) -> Node | None:
        node = self._nodes.get(inode)
        if node is not None or inode >> _FOLDER_SHIFT == 0:
            return node
        folder = inode >> _FOLDER_SHIFT
        if folder >= len(self._folders):
            return None
        key = _unpack(inode & ((1 << _FOLDER_SHIFT) - 1))
        return Node(inode, self._folders[folder], key.name, NodeKind.PLANE, key=key)

    def __len__(self) -> int:
        """Nodes held in the table (packed planes are not held)."""
        return len(self._nodes)
