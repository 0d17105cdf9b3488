from __future__ import annotations

import pytest

from hcsfs.fs.tree import ROOT_INODE, InodeTable, NodeKind
from hcsfs.naming import PlaneKey


def test_inodes_are_stable_and_unique() -> None:
    table = InodeTable()
    meta = table.add_directory(ROOT_INODE, ".hcsfs")
    plate_json = table.add_virtual_file(meta.inode, "plate.json", lambda: b"{}")
    first = table.plane(ROOT_INODE, PlaneKey("A01"))
    again = table.plane(ROOT_INODE, PlaneKey("A01"))
    other = table.plane(ROOT_INODE, PlaneKey("A02"))
    assert first.inode == again.inode != other.inode
    assert len({ROOT_INODE, meta.inode, plate_json.inode, first.inode, other.inode}) == 5
    assert table[first.inode].key == PlaneKey("A01") and first.kind is NodeKind.PLANE
    assert table.child(meta.inode, "plate.json") is plate_json
    assert table.child(ROOT_INODE, "missing") is None


def test_duplicate_names_and_files_as_parents_are_refused() -> None:
    table = InodeTable()
    table.add_directory(ROOT_INODE, "d")
    with pytest.raises(FileExistsError):
        table.add_directory(ROOT_INODE, "d")
    file = table.add_virtual_file(ROOT_INODE, "f", lambda: b"")
    with pytest.raises(NotADirectoryError):
        table.add_directory(file.inode, "x")
