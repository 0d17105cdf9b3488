"""The virtual tree without FUSE: lookups, listings, opens and writes answered by the tree itself.

No ``/dev/fuse`` and no mount: every request is a call of :class:`~hcsfs.fs.vtree.VirtualTree`, and
:func:`~hcsfs.fs.answers.now` does the blocking work a FUSE adapter would hand to a worker thread.
Expectations come from elsewhere: tifffile reads the served bytes, ``os.stat`` and checksums of the
source files, the plate's own arrays, scikit-image for a run's output.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.filters import threshold_otsu

from hcsfs.fs.answers import Blocking, Refusal, now
from hcsfs.fs.attributes import Attributes
from hcsfs.fs.errno_map import errno_for
from hcsfs.fs.listing import END, Listing
from hcsfs.fs.tree import ROOT_INODE
from hcsfs.fs.vtree import VirtualTree
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.sources.memory import MemoryPlate
from hcsfs.sources.tiffdir import TiffFolderSource
from hcsfs.sources.views import SelectedSource, parse_selection
from tests.plates import memory_plate, tree_checksums, write_tiff_folder

UID = os.getuid()


def _tree(source: object, **options: object) -> VirtualTree:
    return VirtualTree(source, cache_bytes=64 << 20, **options)  # type: ignore[arg-type]


def _read(tree: VirtualTree, inode: int) -> bytes:
    opened = now(tree.open(inode, os.O_RDONLY, UID))
    try:
        return bytes(opened.handle.read(0, opened.handle.size + 1))
    finally:
        now(tree.release(opened.handle))


def _listed(tree: VirtualTree, inode: int, start: int = 0) -> list[tuple[str, int, Attributes]]:
    listing: Listing = now(tree.opendir(inode))
    entries, index = [], start
    while batch := now(listing.batch(index)):
        entries += [(os.fsdecode(name), ino, attributes) for name, ino, attributes in batch]
        index += len(batch)
    return entries


def _path(tree: VirtualTree, *names: str) -> int:
    inode = ROOT_INODE
    for name in names:
        inode = now(tree.lookup(inode, name))[0]
    return inode


def test_memory_planes_are_answered_without_blocking_and_read_back_with_tifffile() -> None:
    plate = memory_plate()
    tree = _tree(plate)
    for key in plate.keys():
        found = tree.lookup(ROOT_INODE, key.name)
        assert not isinstance(found, Blocking)  # in memory: no worker-thread trip
        inode, attributes = found
        assert stat.S_ISREG(attributes.mode) and attributes.mode & 0o777 == 0o444
        opened = tree.open(inode, os.O_RDONLY, UID)
        assert not isinstance(opened, Blocking)
        data = _read(tree, inode)
        assert len(data) == attributes.size
        np.testing.assert_array_equal(tifffile.imread(io.BytesIO(data)), plate.read_plane(key))
    tree.close()


def test_tiff_folder_passthrough_bytes_sizes_and_the_declared_fast_path(tmp_path: Path) -> None:
    folder = write_tiff_folder(tmp_path / "plate", memory_plate())
    before = tree_checksums(folder)
    source = TiffFolderSource(folder)
    tree = _tree(source)
    key = next(iter(source.keys()))
    first = tree.lookup(ROOT_INODE, key.name)
    assert isinstance(first, Blocking)  # not checked yet: a stat of the source file
    inode, attributes = now(first)
    assert attributes.size == (folder / key.name).stat().st_size
    assert not isinstance(tree.open(inode, os.O_RDONLY, UID), Blocking)  # checked: open(2) at once
    assert hashlib.sha256(_read(tree, inode)).hexdigest() == hashlib.sha256(
        (folder / key.name).read_bytes()).hexdigest()
    # /.by-well/<well>/ forwards the source's capabilities: the same known plane needs no trip either
    well = _path(tree, ".by-well", key.well)
    again = tree.lookup(well, key.name)
    assert not isinstance(again, Blocking) and again[1] == attributes
    assert not isinstance(tree.open(again[0], os.O_RDONLY, UID), Blocking)
    assert tree_checksums(folder) == before  # the plate is read-only to hcsfs
    tree.close()


def test_selected_source_keeps_the_fast_path_and_hides_the_rest(tmp_path: Path) -> None:
    plate = memory_plate()
    keys = sorted(plate.keys(), key=sort_key)
    wanted = keys[0].well
    tree = _tree(SelectedSource(plate, parse_selection([f"well={wanted}"])))
    names = [name for name, _, _ in _listed(tree, ROOT_INODE) if name.endswith(".tif")]
    assert names == [k.name for k in keys if k.well == wanted]
    assert not isinstance(tree.lookup(ROOT_INODE, names[0]), Blocking)
    hidden = next(k for k in keys if k.well != wanted)
    with pytest.raises(Exception) as refused:
        now(tree.lookup(ROOT_INODE, hidden.name))
    assert getattr(refused.value, "errno", None) == errno.ENOENT or "select" in str(refused.value)


def test_listing_is_the_plate_in_natural_order_and_resumes_at_any_offset() -> None:
    plate = MemoryPlate()
    for channel in (1, 2, 10):
        for site in (1, 2):
            plate.add(PlaneKey("B02", site, channel), np.full((4, 5), channel, "u2"))
            plate.add(PlaneKey("A10", site, channel), np.zeros((4, 5), "u2"))
    tree = _tree(plate)
    entries = _listed(tree, ROOT_INODE)
    names = [name for name, _, _ in entries]
    assert names[0] == ".hcsfs" and ".by-well" not in names  # reachable, not listed
    planes = names[1:]
    assert planes == [k.name for k in sorted(plate.keys(), key=sort_key)]
    assert planes.index("A10_s001_w2_z001_t001.tif") < planes.index("A10_s001_w10_z001_t001.tif")
    # every inode is the one a lookup gives, and attributes agree with the lookup's
    for name, inode, attributes in entries[1:]:
        assert now(tree.lookup(ROOT_INODE, name)) == (inode, attributes)
    assert _listed(tree, ROOT_INODE, start=5) == entries[5:]
    listing: Listing = now(tree.opendir(ROOT_INODE))
    last = now(listing.at(len(entries) - 1))
    assert now(listing.at(2)) == (os.fsencode(entries[2][0]), *entries[2][1:])  # seeking back rewinds
    assert last is not END and now(listing.at(len(entries))) is END


def test_refusals_carry_their_errno() -> None:
    tree = _tree(memory_plate())
    key = next(iter(tree.source.keys()))
    inode = now(tree.lookup(ROOT_INODE, key.name))[0]
    meta = _path(tree, ".hcsfs")
    cases = [
        (lambda: tree.lookup(ROOT_INODE, "Z99_s001_w1_z001_t001.tif"), errno.ENOENT),
        (lambda: tree.lookup(ROOT_INODE, "not a plane"), errno.ENOENT),
        (lambda: tree.open(inode, os.O_WRONLY, UID), errno.EROFS),
        (lambda: tree.open(meta, os.O_RDONLY, UID), errno.EISDIR),
        (lambda: tree.opendir(inode), errno.ENOTDIR),
        (lambda: tree.create(ROOT_INODE, "x.yaml", UID), errno.EROFS),  # no pipelines: read-only
        (lambda: tree.unlink(ROOT_INODE, key.name, UID), errno.EROFS),
        (lambda: tree.truncate(inode, 0, UID), errno.EROFS),
        (lambda: tree.getattr(1 << 40), errno.ENOENT),
    ]
    for request, code in cases:
        with pytest.raises(Exception) as refused:
            now(request())
        assert errno_for(refused.value) == code, request
    assert not tree.flushes  # without pipelines, close(2) means nothing


def test_plate_json_and_index_files_describe_the_plate() -> None:
    plate = memory_plate()
    tree = _tree(plate)
    summary = json.loads(_read(tree, _path(tree, ".hcsfs", "plate.json")))
    assert summary["planes"] == len(list(plate.keys()))
    listed = {name for name, _, _ in _listed(tree, _path(tree, ".hcsfs"))}
    assert {"plate.json", "planes.csv", "overview"} <= listed
    rows = _read(tree, _path(tree, ".hcsfs", "planes.csv")).decode().splitlines()
    assert len(rows) == 1 + summary["planes"]


def test_xattrs_name_the_plane() -> None:
    tree = _tree(memory_plate(), xattrs=True)
    key = PlaneKey("A01", 1, 2)
    values = now(tree.xattrs_of(now(tree.lookup(ROOT_INODE, key.name))[0]))
    assert values["user.hcs.well"] == "A01" and values["user.hcs.channel"] == "2"
    assert now(tree.xattrs_of(ROOT_INODE)) == {}


def test_pipelines_write_a_spec_and_serve_the_run_outputs(tmp_path: Path) -> None:
    """Create, write, close: the run starts; its status, log and output planes are served, and an
    output equals scikit-image's Otsu threshold of the same plane."""
    from hcsfs.pipelines import PipelineManager

    plate = memory_plate(shape=(32, 40))
    manager = PipelineManager(plate, outputs_dir=tmp_path / "outputs")
    tree = _tree(plate, manager=manager)
    try:
        pipelines = _path(tree, ".pipelines")
        assert tree.flushes
        with pytest.raises(OSError) as refused:
            now(tree.create(pipelines, "x.yaml", UID + 1 if UID else 12345))
        assert refused.value.errno == errno.EACCES  # only the mount's owner
        spec = b"select: {channel: [1]}\nsteps:\n  - {func: threshold_otsu}\n"
        opened, (spec_inode, _) = now(tree.create(pipelines, "masks.yaml", UID))
        assert tree.write(opened.handle, 0, spec) == len(spec)
        now(tree.flush(opened.handle))
        now(tree.release(opened.handle))
        assert _read(tree, spec_inode) == spec
        status_inode = _path(tree, ".pipelines", "masks.status")
        deadline = time.monotonic() + 60
        while (state := json.loads(_read(tree, status_inode))["state"]) not in ("done", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        assert state == "done"
        run = _path(tree, "masks")
        names = [name for name, _, _ in _listed(tree, run) if name.endswith(".tif")]
        expected = [k.name for k in sorted(plate.keys(), key=sort_key) if k.channel == 1]
        assert names == expected
        key = next(k for k in plate.keys() if k.channel == 1)
        served = tifffile.imread(io.BytesIO(_read(tree, _path(tree, "masks", key.name))))
        original = plate.read_plane(key).astype(np.float32)  # the engine thresholds float32 stacks
        np.testing.assert_array_equal(served != 0, original > threshold_otsu(original, nbins=256))
        now(tree.unlink(pipelines, "masks.yaml", UID))
        with pytest.raises(Refusal):
            now(tree.lookup(pipelines, "masks.yaml"))
    finally:
        manager.close()
        tree.close()


def test_a_listing_of_several_batches_resumes_wherever_the_kernel_stops() -> None:
    """The kernel takes what fits in its buffer and asks again from the first entry it did not take:
    inside a batch, at its end, past it, or back at the start; every offset gives the same entry."""
    from hcsfs.fs.listing import BATCH

    plate = MemoryPlate()
    tiny = np.zeros((2, 2), "u2")
    for site in range(1, 2 * BATCH + 300):
        plate.add(PlaneKey("C07", site, 1), tiny)
    tree = _tree(plate)
    full = _listed(tree, ROOT_INODE)
    assert [name for name, _, _ in full[1:]] == [k.name for k in sorted(plate.keys(), key=sort_key)]
    listing: Listing = now(tree.opendir(ROOT_INODE))
    for offset in (0, 1, 700, BATCH, BATCH + 1, 2 * BATCH + 5, 3, len(full) - 1):
        name, inode, attributes = now(listing.batch(offset))[0]
        assert (os.fsdecode(name), inode, attributes) == full[offset], offset
    assert not now(listing.batch(len(full)))  # the end
