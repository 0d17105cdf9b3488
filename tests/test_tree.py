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


def test_plane_inodes_are_packed_keys_and_cost_no_entry() -> None:
    table = InodeTable()
    held = len(table)
    keys = [PlaneKey("AF48", 100, 12, 1000, 1000), PlaneKey("A01"), PlaneKey("ZZ01", 1023, 255, 1023, 1023)]
    nodes = [table.plane(ROOT_INODE, k) for k in keys]
    assert len(table) == held  # nothing stored per plane
    for key, node in zip(keys, nodes, strict=True):
        again = table.get(node.inode)
        assert again is not None and again.key == key and again.parent == ROOT_INODE
        assert again.name == key.name and again.kind is NodeKind.PLANE
    assert len({n.inode for n in nodes}) == 3


def test_keys_that_do_not_pack_get_table_entries() -> None:
    table = InodeTable()
    reduced = table.plane(ROOT_INODE, PlaneKey("A01", z="max"))
    huge = table.plane(ROOT_INODE, PlaneKey("A01", t=5000))
    assert table.get(reduced.inode).key == PlaneKey("A01", z="max")  # type: ignore[union-attr]
    assert table.plane(ROOT_INODE, PlaneKey("A01", t=5000)).inode == huge.inode
    assert reduced.inode < 1 << 58 and huge.inode < 1 << 58


def test_unknown_inodes_are_none() -> None:
    table = InodeTable()
    assert table.get(12345) is None
    assert table.get((7 << 58) | 1) is None
    with pytest.raises(KeyError):
        table[12345]


def test_prefetch_successors_follow_name_order() -> None:
    from hcsfs.fs.prefetch import successors

    key = PlaneKey("B02", 2, 3, 4, 5)
    assert [k.name for k in successors(key)] == [
        "B02_s002_w3_z004_t006.tif", "B02_s002_w3_z005_t001.tif",
        "B02_s002_w4_z001_t001.tif", "B02_s003_w1_z001_t001.tif"]
    assert [k.name for k in successors(PlaneKey("A01", z="max"))] == [
        "A01_s001_w1_zmax_t002.tif", "A01_s001_w2_z001_t001.tif", "A01_s002_w1_z001_t001.tif"]


def test_prefetcher_runs_the_latest_request_and_survives_errors() -> None:
    import threading

    from hcsfs.fs.prefetch import Prefetcher

    done: list[int] = []
    gate, started = threading.Event(), threading.Event()
    prefetcher = Prefetcher()
    prefetcher.submit(lambda: (started.set(), gate.wait(5), done.append(1)))
    assert started.wait(5)
    prefetcher.submit(lambda: done.append(2))  # replaced by the next one before it starts
    prefetcher.submit(lambda: 1 / 0)
    prefetcher.submit(lambda: done.append(3))
    gate.set()
    for _ in range(500):
        if len(done) == 2:
            break
        threading.Event().wait(0.01)
    prefetcher.close()
    assert done == [1, 3]
    dropped = Prefetcher()
    dropped.close()  # closing drops what has not started; nothing runs after close
    assert done == [1, 3]
