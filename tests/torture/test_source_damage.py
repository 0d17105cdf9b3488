"""Source damage while mounted: the damaged planes fail alone, loudly, and the mount stays up.

Each case damages one part of a mounted source (a corrupt zarr chunk, a truncated TIFF, a deleted file,
a file replaced by a different one, a removed well folder), then checks that the affected planes give
``EIO``/``ENOENT`` and are logged with the source path, that every other plane still reads correctly
and that the daemon keeps serving. A handle opened before a change never mixes old and new bytes.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tifffile

import hcsfs
from tests.plates import synthetic_plane
from tests.torture.helpers import make_source, reference_files

pytestmark = pytest.mark.mount

FAILED = (errno.EIO, errno.ENOENT)
RESULTS: list[dict[str, object]] = []


def _read(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _assert_fails(path: Path) -> int:
    with pytest.raises(OSError) as caught:
        _read(path)
    assert caught.value.errno in FAILED, caught.value
    return caught.value.errno


def _assert_fails_or_old(path: Path, old: bytes) -> int:
    """A plane read completely before the damage: the kernel may still hold all of its pages and serve
    that version whole; anything else must be an error."""
    try:
        data = _read(path)
    except OSError as exc:
        assert exc.errno in FAILED, exc
        return exc.errno
    assert data == old, f"{path.name}: neither the old bytes nor an error"
    return 0


def _assert_rest_reads(mnt: Path, files: dict[str, bytes], damaged: set[str]) -> int:
    checked = 0
    for name, data in files.items():
        if name not in damaged:
            assert _read(mnt / name) == data, name
            checked += 1
    assert (mnt / ".hcsfs" / "plate.json").read_bytes()  # the daemon still answers
    return checked


def _logged(caplog: pytest.LogCaptureFixture, fragment: str) -> bool:
    return any(fragment in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def _chunk_files(store: Path, well: str) -> list[Path]:
    row, column = well[:-2], str(int(well[-2:]))
    return sorted(p for p in (store / row / column).rglob("*") if p.is_file() and p.name != "zarr.json"
                  and "c" in p.relative_to(store).parts)


def _corrupt_zarr_chunk(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    chunk = _chunk_files(source, "B02")[0]
    chunk.write_bytes(b"\x28\xb5\x2f\xfd garbage, not zstd" * 3)
    # chunk .../<well>/<field>/0/c/<t>/<c>/<z>/0/0: field 0 is site 1, channel index from the path
    parts = chunk.relative_to(source).parts
    site, channel = int(parts[2]) + 1, int(parts[6]) + 1
    return {f"B02_s{site:03d}_w{channel}_z001_t001.tif"}, str(chunk.parent.parent.parent.parent.parent)


def _remove_zarr_well(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    shutil.rmtree(source / "B" / "2")
    return {n for n in files if n.startswith("B02_")}, str(source)


def _truncate_tiff(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    name = "A01_s002_w1_z001_t001.tif"
    with open(source / name, "r+b") as file:
        file.truncate(len(files[name]) // 2)
    return {name}, str(source / name)


def _delete_tiff(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    name = "B02_s001_w2_z001_t001.tif"
    (source / name).unlink()
    return {name}, str(source / name)


def _replace_tiff(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    name = "AF48_s001_w1_z001_t001.tif"
    other = synthetic_plane(hcsfs.PlaneKey("H12", 1, 1, 1, 1), (80, 100), "u2")
    tifffile.imwrite(source / f"{name}.new", other)
    os.replace(source / f"{name}.new", source / name)  # a new file under the old name
    return {name}, str(source / name)


def _overwrite_tiff_in_place(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    name = "A01_s001_w2_z001_t001.tif"
    other = synthetic_plane(hcsfs.PlaneKey("H12", 1, 1, 1, 1), (96, 130), "u2")  # same size, new pixels
    tifffile.imwrite(source / name, other)
    return {name}, str(source / name)


def _delete_ixm_file(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    path = source / "TimePoint_1" / "screen_C2_A01_s1_w1.TIF"
    path.unlink()
    return {"A01_s001_w1_z001_t001.tif"}, str(path)


def _remove_ixm_timepoint(source: Path, files: dict[str, bytes]) -> tuple[set[str], str]:
    shutil.rmtree(source / "TimePoint_1")
    return set(files), "TimePoint_1"


Damage = Callable[[Path, dict[str, bytes]], tuple[set[str], str]]
CASES: list[tuple[str, str, Damage]] = [
    ("corrupt zarr chunk", "ome-zarr", _corrupt_zarr_chunk),
    ("zarr well folder removed", "ome-zarr", _remove_zarr_well),
    ("truncated TIFF", "tiff-folder", _truncate_tiff),
    ("deleted TIFF", "tiff-folder", _delete_tiff),
    ("TIFF replaced by another file", "tiff-folder", _replace_tiff),
    ("TIFF overwritten in place, same size", "tiff-folder", _overwrite_tiff_in_place),
    ("deleted ImageXpress file", "imagexpress", _delete_ixm_file),
    ("ImageXpress folder removed", "imagexpress", _remove_ixm_timepoint),
]


@pytest.mark.parametrize("seen_before", [False, True], ids=["unseen", "read-before"])
@pytest.mark.parametrize(("case", "kind", "damage"), CASES, ids=[c[0] for c in CASES])
def test_damage_fails_only_the_damaged_planes(case: str, kind: str, damage: Damage, seen_before: bool,
                                              tmp_path: Path, mountpoint: Path,
                                              caplog: pytest.LogCaptureFixture, watchdog) -> None:  # type: ignore[no-untyped-def]
    source = make_source(kind, tmp_path / "source")
    assert isinstance(source, Path)
    files = reference_files(source)
    caplog.set_level(logging.WARNING)
    with hcsfs.mounted(source, mountpoint, cache_size="64K") as mnt:
        with watchdog.bound(f"reads after: {case}", 60, mnt.path):
            if seen_before:  # the kernel has the planes' sizes and pages cached
                for name in files:
                    assert _read(mnt.path / name) == files[name]
            time.sleep(0.05)  # past the mount's first clock tick (file systems stamp ctime coarsely)
            damaged, where = damage(source, files)
            if seen_before:
                codes = {n: _assert_fails_or_old(mnt.path / n, files[n]) for n in sorted(damaged)}
            else:
                codes = {n: _assert_fails(mnt.path / n) for n in sorted(damaged)}
            checked = _assert_rest_reads(mnt.path, files, damaged)
        assert not all(c == 0 for c in codes.values()) or seen_before
        assert _logged(caplog, where) or all(c == 0 for c in codes.values()), f"no warning names {where}"
    RESULTS.append({"case": case, "seen": seen_before, "failed": codes, "still_correct": checked})


def test_a_handle_open_across_a_change_never_mixes_versions(tmp_path: Path, mountpoint: Path) -> None:
    source = make_source("tiff-folder", tmp_path / "source")
    assert isinstance(source, Path)
    files = reference_files(source)
    name = "A01_s001_w1_z001_t001.tif"
    with hcsfs.mounted(source, mountpoint) as mnt:
        with open(mnt.path / name, "rb") as handle:
            head = handle.read(100)
            time.sleep(0.05)
            other = synthetic_plane(hcsfs.PlaneKey("H12", 1, 1, 1, 1), (96, 130), "u2")
            tifffile.imwrite(source / name, other)  # in place: same inode, new bytes
            rest = handle.read()
        whole = head + rest
        # Either the old file, or an error: never old header with new pixels.
        assert whole == files[name]
