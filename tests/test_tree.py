from __future__ import annotations

import pytest

from hcsfs.fs.tree import ROOT_INODE, Entry, InodeTable, NodeKind
from hcsfs.naming import PlaneKey


def test_inodes_are_stable_and_unique() -> None:
    table = InodeTable()
    meta = table.add_directory(ROOT_INODE, ".hcsfs")
    plate_json = table.add_file(meta.inode, "plate.json", lambda: b"{}")
    first = table.plane(ROOT_INODE, PlaneKey("A01"))
    again = table.plane(ROOT_INODE, PlaneKey("A01"))
    other = table.plane(ROOT_INODE, PlaneKey("A02"))
    assert first.inode == again.inode != other.inode
    assert len({ROOT_INODE, meta.inode, plate_json.inode, first.inode, other.inode}) == 5
    assert table[first.inode].key == PlaneKey("A01") and first.kind is NodeKind.PLANE
    assert table.child(meta.inode, "plate.json") is plate_json
    assert table.child(ROOT_INODE, "missing") is None


def test_the_same_plane_in_two_folders_has_two_inodes() -> None:
    table = InodeTable()
    run = table.entry(ROOT_INODE, "nuclei", Entry(NodeKind.DIRECTORY))
    in_root = table.plane(ROOT_INODE, PlaneKey("A01"))
    in_run = table.plane(run.inode, PlaneKey("A01"))
    assert in_root.inode != in_run.inode
    assert table.planes_of(run.inode) == [in_run]


def test_provider_entries_keep_their_inode_and_take_new_content() -> None:
    table = InodeTable()
    status = table.entry(ROOT_INODE, "x.status", Entry(NodeKind.FILE, lambda: b"1", dynamic=True))
    again = table.entry(ROOT_INODE, "x.status", Entry(NodeKind.FILE, lambda: b"22", dynamic=True))
    assert status.inode == again.inode and again.content is not None and again.content() == b"22"
    assert table.known_entry(ROOT_INODE, "x.status") is again
    assert table.known_entry(ROOT_INODE, "y.status") is None
    folder = table.entry(ROOT_INODE, "run", Entry(NodeKind.DIRECTORY))
    assert folder.is_directory and folder.children == {}


def test_duplicate_names_and_files_as_parents_are_refused() -> None:
    table = InodeTable()
    table.add_directory(ROOT_INODE, "d")
    with pytest.raises(FileExistsError):
        table.add_directory(ROOT_INODE, "d")
    file = table.add_file(ROOT_INODE, "f", lambda: b"")
    with pytest.raises(NotADirectoryError):
        table.add_directory(file.inode, "x")
