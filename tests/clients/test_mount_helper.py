"""scripts/mount.hcsfs: option translation (dry runs), a real mount through it, and `mount -t hcsfs`
through mount(8) itself (which only looks for helpers in /sbin, /sbin/fs.d and /sbin/fs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.plates import memory_plate, write_tiff_folder

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "scripts" / "mount.hcsfs"
HCSFS = Path(sys.executable).with_name("hcsfs")


def dry_run(*args: str) -> list[str]:
    done = subprocess.run([str(HELPER), *args], capture_output=True, text=True,
                          env={**os.environ, "HCSFS_MOUNT_DRY_RUN": "1", "HCSFS": "/opt/hcsfs"})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_fstab_options_become_hcsfs_flags() -> None:
    assert dry_run("/data/plate 7", "/mnt/p 7", "-o", "ro,cache_size=2G,allow_other,noauto,_netdev,"
                   "x-systemd.automount,outputs=/srv/out,no_xattrs,no_pipelines,format=phenix") == [
        "/opt/hcsfs", "mount", "/data/plate 7", "/mnt/p 7", "--cache-size", "2G", "--allow-other",
        "--outputs", "/srv/out", "--no-xattrs", "--no-pipelines", "--format", "phenix"]


def test_mount8_flags_and_repeated_options() -> None:
    assert dry_run("src", "mnt", "-n", "-v", "-o", "rw,defaults", "-ocache_size=64M", "-t", "hcsfs",
                   "-o", "strict,site_order=raster,acquisition=2,zarr_impl=tensorstore,pipelines") == [
        "/opt/hcsfs", "mount", "src", "mnt", "--cache-size", "64M", "--strict", "--site-order", "raster",
        "--acquisition", "2", "--zarr-impl", "tensorstore"]
    assert dry_run("src", "mnt") == ["/opt/hcsfs", "mount", "src", "mnt"]


def test_unknown_option_is_an_error_unless_sloppy() -> None:
    done = subprocess.run([str(HELPER), "src", "mnt", "-o", "cache_size=1G,bogus"], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "unknown option bogus" in done.stderr
    assert dry_run("src", "mnt", "-s", "-o", "bogus,allow_other")[-1] == "--allow-other"


def test_fake_prints_without_mounting() -> None:
    done = subprocess.run([str(HELPER), "src", "mnt", "-fv", "-o", "cache_size=1G"], capture_output=True,
                          text=True, env={**os.environ, "HCSFS": "/opt/hcsfs"})
    assert done.returncode == 0
    assert done.stdout.strip() == "/opt/hcsfs mount src mnt --cache-size 1G"


def test_usage() -> None:
    done = subprocess.run([str(HELPER), "only-one"], capture_output=True, text=True)
    assert done.returncode == 1 and "usage: mount.hcsfs" in done.stderr


def test_fstab_example_parses() -> None:
    """Every line of contrib/fstab.example goes through the helper's option parsing."""
    lines = [line.split() for line in (ROOT / "contrib" / "fstab.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines
    for source, mountpoint, fstype, options, *_ in lines:
        assert fstype == "hcsfs"
        assert dry_run(source, mountpoint, "-o", options)[1:4] == ["mount", source, mountpoint]


def _assert_serves(mountpoint: Path, plate) -> None:
    names = sorted(name for name in os.listdir(mountpoint) if not name.startswith("."))
    assert names == sorted(key.name for key in plate.keys())


@pytest.mark.mount
def test_helper_mounts_for_real(tmp_path: Path, mountpoint: Path, unchanged) -> None:
    plate = memory_plate()
    folder = unchanged(write_tiff_folder(tmp_path / "plate", plate))
    env = {**os.environ, "HCSFS": str(HCSFS)}
    options = f"ro,cache_size=64M,no_xattrs,log_file={tmp_path / 'log'}"
    done = subprocess.run([str(HELPER), str(folder), str(mountpoint), "-o", options], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    try:
        _assert_serves(mountpoint, plate)
        with pytest.raises(OSError):  # no_xattrs reached the mount: no user.hcs.* attributes
            os.getxattr(mountpoint / plate.keys()[0].name, "user.hcs.well")
    finally:
        subprocess.run([str(HCSFS), "unmount", str(mountpoint)], capture_output=True, timeout=60)


@pytest.mark.mount
def test_mount_t_hcsfs_through_mount8(tmp_path: Path, mountpoint: Path, unchanged) -> None:
    """mount(8) finds /sbin/mount.hcsfs: installed for the test (root in CI only), then removed."""
    installed = Path("/sbin/mount.hcsfs")
    if os.geteuid() != 0 or not IN_CI:
        pytest.skip(reason="needs root and CI=true: it installs /sbin/mount.hcsfs for the test's duration")
    if shutil.which("mount") is None:
        pytest.fail("mount(8) is missing (apt-get install mount)")
    plate = memory_plate()
    folder = unchanged(write_tiff_folder(tmp_path / "plate", plate))
    ours = not installed.exists()
    if ours:
        installed.symlink_to(HELPER)
    try:
        env = {**os.environ, "HCSFS": str(HCSFS)}
        done = subprocess.run(["mount", "-t", "hcsfs", "-o", f"ro,cache_size=64M,log_file={tmp_path / 'log'}",
                               str(folder), str(mountpoint)], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        try:
            _assert_serves(mountpoint, plate)
            line = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                        if f" {mountpoint} " in line)
            assert " - fuse.hcsfs hcsfs " in line
        finally:
            subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=60)
    finally:
        if ours:
            installed.unlink()
