"""The mount's inode table: stable inode numbers for directories, virtual files and planes.

Pure bookkeeping, no FUSE and no I/O, so it is unit-tested without a mount. Inode numbers are handed out
on first sight and kept for the mount's life, so a name always has the same inode while mounted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from hcsfs.naming import PlaneKey

__all__ = ["NodeKind", "Node", "InodeTable", "ROOT_INODE"]

ROOT_INODE = 1


class NodeKind(Enum):
    DIRECTORY = "directory"
    PLANE = "plane"
    VIRTUAL_FILE = "virtual file"


@dataclass(slots=True)
class Node:
    """One entry of the tree. Planes carry their key; virtual files a function giving their bytes."""

    inode: int
    parent: int
    name: str
    kind: NodeKind
    key: PlaneKey | None = None
    content: Callable[[], bytes] | None = None
    children: dict[str, int] | None = None
    """Named children of a directory (planes are looked up by key instead); None for files."""


class InodeTable:
    """Inode numbers ↔ nodes; thread-safe."""

    def __init__(self) -> None:
        root = Node(ROOT_INODE, ROOT_INODE, "", NodeKind.DIRECTORY, children={})
        self._nodes: dict[int, Node] = {ROOT_INODE: root}
        self._planes: dict[tuple[int, PlaneKey], int] = {}
        self._next = ROOT_INODE + 1
        self._lock = threading.Lock()

    def _allocate(self, node_factory: Callable[[int], Node]) -> Node:
        inode = self._next
        self._next += 1
        node = node_factory(inode)
        self._nodes[inode] = node
        return node

    def add_directory(self, parent: int, name: str) -> Node:
        return self._add_named(parent, name, NodeKind.DIRECTORY, None)

    def add_virtual_file(self, parent: int, name: str, content: Callable[[], bytes]) -> Node:
        return self._add_named(parent, name, NodeKind.VIRTUAL_FILE, content)

    def _add_named(
        self, parent: int, name: str, kind: NodeKind, content: Callable[[], bytes] | None
    ) -> Node:
        with self._lock:
            directory = self._nodes[parent]
            if directory.children is None:
                raise NotADirectoryError(f"inode {parent} is not a directory")
            if name in directory.children:
                raise FileExistsError(f"{name!r} already exists in inode {parent}")
            node = self._allocate(lambda ino: Node(
                ino, parent, name, kind, content=content,
                children={} if kind is NodeKind.DIRECTORY else None))
            directory.children[name] = node.inode
            return node

    def plane(self, parent: int, key: PlaneKey) -> Node:
        """The node of plane ``key`` in directory ``parent``, created on first sight."""
        with self._lock:
            inode = self._planes.get((parent, key))
            if inode is not None:
                return self._nodes[inode]
            node = self._allocate(lambda ino: Node(ino, parent, key.name, NodeKind.PLANE, key=key))
            self._planes[(parent, key)] = node.inode
            return node

    def child(self, parent: int, name: str) -> Node | None:
        """A named (non-plane) child of ``parent``, or ``None``."""
        children = self._nodes[parent].children
        inode = None if children is None else children.get(name)
        return None if inode is None else self._nodes[inode]

    def children(self, parent: int) -> list[Node]:
        children = self._nodes[parent].children or {}
        return [self._nodes[i] for i in children.values()]

    def __getitem__(self, inode: int) -> Node:
        return self._nodes[inode]

    def get(self, inode: int) -> Node | None:
        return self._nodes.get(inode)

    def __len__(self) -> int:
        return len(self._nodes)
