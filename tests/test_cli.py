"""The ``hcsfs`` command as users run it: daemon mounts, foreground, errors, stale mounts, info."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcsfs.fs.mounttable import MountState, find_mount, probe_mountpoint
from tests.daemons import daemon_pid, wait_gone
from tests.plates import memory_plate, write_tiff_folder

HCSFS = [sys.executable, "-m", "hcsfs"]


def hcsfs(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*HCSFS, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"hcsfs {' '.join(map(str, args))} failed: {done.stderr}")
    return done


@pytest.fixture
def plate_dir(tmp_path: Path, unchanged) -> Path:  # type: ignore[no-untyped-def]
    return unchanged(write_tiff_folder(tmp_path / "plate", memory_plate()))


@pytest.fixture
def cleanup(mountpoint: Path) -> Iterator[Path]:
    yield mountpoint
    if find_mount(mountpoint) is not None:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


def test_version_and_help() -> None:
    assert hcsfs("--version").stdout.startswith("hcsfs, version ")
    assert "mount" in hcsfs("--help").stdout


def test_info(plate_dir: Path) -> None:
    out = hcsfs("info", plate_dir).stdout
    assert "format: tiff-folder" in out and "planes: 12" in out and "wells: 3 (A01 .. B01)" in out
    assert "plane shape: 48 x 64" in out
    summary = json.loads(hcsfs("info", "--json", plate_dir).stdout)
    assert summary["channels"] == [{"index": 1, "name": None}, {"index": 2, "name": None}]


def test_info_on_something_that_is_not_a_plate(tmp_path: Path) -> None:
    done = hcsfs("info", tmp_path, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("hcsfs: error:") and "looked for" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.mount
def test_mount_returns_once_the_mount_answers(plate_dir: Path, cleanup: Path, tmp_path: Path) -> None:
    log = tmp_path / "hcsfs.log"
    hcsfs("mount", plate_dir, cleanup, "--log-file", log, "--cache-size", "64M")
    # no waiting: the mount must already answer when the command returns
    assert len([n for n in os.listdir(cleanup) if n.endswith(".tif")]) == 12
    assert probe_mountpoint(cleanup) == MountState.LIVE
    assert find_mount(cleanup).fstype == "fuse.hcsfs"
    assert "mounted" in log.read_text()
    out = hcsfs("unmount", cleanup).stdout
    assert "unmounted" in out and find_mount(cleanup) is None


@pytest.mark.mount
def test_mount_errors_are_one_clear_line(plate_dir: Path, cleanup: Path, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    cases = [
        ((plate_dir, busy), "is not empty"),
        ((plate_dir, tmp_path / "absent"), "does not exist"),
        ((plate_dir, busy / "file"), "not a directory"),
        ((tmp_path / "busy", cleanup), "not a plate"),
    ]
    for args, message in cases:
        done = hcsfs("mount", *args, check=False)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    hcsfs("mount", plate_dir, cleanup)
    again = hcsfs("mount", plate_dir, cleanup, check=False)
    assert again.returncode == 1 and "already a mountpoint" in again.stderr
    hcsfs("unmount", cleanup)
    gone = hcsfs("unmount", cleanup, check=False)
    assert gone.returncode == 1 and "not mounted" in gone.stderr


@pytest.mark.mount
def test_sigterm_unmounts_cleanly(plate_dir: Path, cleanup: Path) -> None:
    hcsfs("mount", plate_dir, cleanup)
    pid = daemon_pid(cleanup)
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    assert find_mount(cleanup) is None and os.listdir(cleanup) == []


@pytest.mark.mount
def test_kill_9_leaves_a_stale_mount_that_unmount_clears(plate_dir: Path, cleanup: Path) -> None:
    hcsfs("mount", plate_dir, cleanup)
    pid = daemon_pid(cleanup)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    assert probe_mountpoint(cleanup) == MountState.STALE
    refused = hcsfs("mount", plate_dir, cleanup, check=False)
    assert refused.returncode == 1 and "stale" in refused.stderr and "hcsfs unmount" in refused.stderr
    started = time.monotonic()
    hcsfs("unmount", cleanup)
    assert time.monotonic() - started < 5
    assert find_mount(cleanup) is None
    hcsfs("mount", plate_dir, cleanup)  # and a new mount works
    assert (cleanup / "A01_s001_w1_z001_t001.tif").read_bytes() == \
        (plate_dir / "A01_s001_w1_z001_t001.tif").read_bytes()
    hcsfs("unmount", cleanup)


@pytest.mark.mount
def test_foreground_stays_attached_and_stops_on_sigint(plate_dir: Path, cleanup: Path) -> None:
    process = subprocess.Popen([*HCSFS, "mount", "-f", str(plate_dir), str(cleanup)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while find_mount(cleanup) is None or not os.listdir(cleanup):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "A01_s001_w1_z001_t001.tif" in os.listdir(cleanup)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "mounted" in err and "unmounted" in err  # logs go to stderr in the foreground
    finally:
        if process.poll() is None:
            process.kill()
    assert find_mount(cleanup) is None


def test_convert_command(plate_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "plate.zarr"
    done = hcsfs("convert", plate_dir, destination, "--chunks", "well", "--compressor", "blosclz4")
    assert "wrote 12 planes (3 wells, 6 fields)" in done.stdout
    assert "converting plate" in done.stderr  # progress, plain lines when not a terminal
    assert json.loads(hcsfs("info", "--json", destination).stdout)["planes"] == 12
    again = hcsfs("convert", plate_dir, destination, check=False)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    hcsfs("convert", plate_dir, destination, "--overwrite", "--ngff", "0.4")
    assert (destination / ".zattrs").exists()


def test_run_and_status_need_a_mount(tmp_path: Path) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text("steps: [{func: clip}]\n")
    done = hcsfs("run", tmp_path, spec, check=False)
    assert done.returncode == 1 and "not an hcsfs mount" in done.stderr
    done = hcsfs("status", tmp_path, check=False)
    assert done.returncode == 1 and "not an hcsfs mount" in done.stderr


@pytest.mark.mount
def test_owner_and_umask_options_reach_the_daemon(plate_dir: Path, cleanup: Path) -> None:
    hcsfs("mount", plate_dir, cleanup, "--uid", "65534", "--gid", "65534", "--umask", "077")
    try:
        plane = (cleanup / "A01_s001_w1_z001_t001.tif").stat()
        assert (plane.st_uid, plane.st_gid) == (65534, 65534) and plane.st_mode & 0o777 == 0o400
        pipelines = (cleanup / ".pipelines").stat()
        assert pipelines.st_uid == os.getuid()  # the control folder stays the mounting user's
    finally:
        hcsfs("unmount", cleanup)


@pytest.mark.mount
def test_demo_mounts_a_plate_and_its_pipeline_runs(tmp_path: Path) -> None:
    """What `make demo` does (tests/test_demo.py checks the rest), followed by the first pipeline it
    suggests, on its ImageXpress mount."""
    done = subprocess.run([sys.executable, "-m", "hcsfs.demo", "--dir", str(tmp_path), "--no-analysis"],
                          capture_output=True, text=True, timeout=120)
    mnt = tmp_path / "mnt" / "imagexpress"
    try:
        assert done.returncode == 0, done.stderr
        assert "96 planes" in done.stdout and "hcsfs run" in done.stdout
        assert len([n for n in os.listdir(mnt) if n.endswith(".tif")]) == 96
        hcsfs("run", mnt, tmp_path / "nuclei.yaml", "--wait", "--timeout", "120")
        assert (mnt / "nuclei" / "objects.csv").read_text().startswith("well,site,channel,z,t,label")
    finally:
        for mountpoint in (mnt, tmp_path / "mnt" / "ome-zarr"):
            if find_mount(mountpoint) is not None:
                hcsfs("unmount", mountpoint)


def test_a_closed_pipe_is_not_an_error() -> None:
    """`hcsfs functions | head -1`: no error line when the reader stops early."""
    done = subprocess.run(f"{sys.executable} -m hcsfs functions | head -1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.startswith("NAME") and "error" not in done.stderr, done.stderr
