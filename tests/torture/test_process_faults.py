"""Process faults: the daemon killed mid-read, SIGTERM during a pipeline run, a hung request.

These use the CLI daemon (one mount per process is pyfuse3's limit, and a crash must not take the
test process with it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs import MemoryPlate
from hcsfs.fs.mounttable import MountState, find_mount, probe_mountpoint
from tests.daemons import daemon_pid, wait_gone
from tests.torture.helpers import make_source, reference_files, small_plate

pytestmark = pytest.mark.mount

REPO = Path(__file__).resolve().parents[2]
HCSFS = [sys.executable, "-m", "hcsfs"]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
FIGURES: dict[str, float] = {}
PLUGIN = "tests.pipeline_plugin"


def cli(*args: object, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*HCSFS, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and done.returncode != 0:
        raise AssertionError(f"hcsfs {args} failed: {done.stderr}")
    return done




@pytest.fixture
def cleanup(mountpoint: Path) -> Iterator[Path]:
    yield mountpoint
    if find_mount(mountpoint) is not None:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


_LOOP_READER = r"""
import os, sys
root, names = sys.argv[1], sys.argv[2:]
print("started", flush=True)
while True:
    for name in names:
        try:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(65536):
                    pass
        except OSError as exc:
            print(exc.errno, flush=True)
            sys.exit(0)
"""


def test_kill_9_mid_read_readers_fail_fast_unmount_and_remount(tmp_path: Path, cleanup: Path, unchanged,  # type: ignore[no-untyped-def]
                                                               watchdog) -> None:
    plate = small_plate(shape=(512, 640))
    source = unchanged(make_source("ome-zarr", tmp_path / "source", plate))
    files = reference_files(source)
    log = tmp_path / "daemon.log"
    cli("mount", source, cleanup, "--cache-size", "1M", "--log-file", log)
    pid = daemon_pid(cleanup)
    readers = [subprocess.Popen([sys.executable, "-c", _LOOP_READER, str(cleanup), *sorted(files)],
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    for reader in readers:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "started"
    time.sleep(0.5)  # reads in flight
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    with watchdog.bound("readers of a killed daemon", 20, cleanup):
        codes = [reader.communicate(timeout=30)[0].split() for reader in readers]
    FIGURES["readers_failed_after_s"] = round(time.monotonic() - killed, 2)
    assert all(c and int(c[-1]) in (107, 103, 5) for c in codes), codes  # ENOTCONN, ECONNABORTED, EIO
    wait_gone(pid)
    assert probe_mountpoint(cleanup) == MountState.STALE
    started = time.monotonic()
    cli("unmount", cleanup)
    FIGURES["unmount_after_kill_s"] = round(time.monotonic() - started, 2)
    assert FIGURES["unmount_after_kill_s"] <= 5 and find_mount(cleanup) is None
    cli("mount", source, cleanup, "--log-file", log)
    with watchdog.bound("reads after remount", 30, cleanup, pid=daemon_pid(cleanup), log_file=log):
        assert all((cleanup / n).read_bytes() == d for n, d in files.items())
    cli("unmount", cleanup)
    print("process faults:", FIGURES)


def test_sigterm_during_a_run_marks_it_cancelled_and_shows_only_complete_planes(
        tmp_path: Path, cleanup: Path, unchanged, watchdog) -> None:  # type: ignore[no-untyped-def]
    source = unchanged(make_source("tiff-folder", tmp_path / "source"))
    outputs = tmp_path / "outputs"
    log = tmp_path / "daemon.log"
    cli("mount", source, cleanup, "--outputs", outputs, "--plugins", PLUGIN, "--log-file", log)
    pid = daemon_pid(cleanup)
    (cleanup / ".pipelines" / "slow.yaml").write_text(
        "output: tiff\nsteps: [{func: slow_copy, args: {seconds: 0.4}}]\n")
    deadline = time.monotonic() + 30
    status_file = cleanup / ".pipelines" / "slow.status"
    # FUSE sends RELEASE after close() returned: the run (and its status file) starts a moment later
    while not status_file.exists() or json.loads(status_file.read_text())["done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid, 30)
    assert find_mount(cleanup) is None
    [folder] = (outputs / "runs").iterdir()
    saved = json.loads((folder / "status.json").read_text())
    assert saved["state"] == "cancelled" and saved["done"] < saved["total"], saved
    cli("mount", source, cleanup, "--outputs", outputs, "--plugins", PLUGIN, "--log-file", log)
    try:
        with watchdog.bound("reading a cancelled run", 30, cleanup, pid=daemon_pid(cleanup), log_file=log):
            status = json.loads((cleanup / ".pipelines" / "slow.status").read_text())
            assert status["state"] == "cancelled"
            shown = sorted(os.listdir(cleanup / "slow"))
            planes = [n for n in shown if n.endswith(".tif")]
            assert 0 < len(planes) < 12 and len(planes) <= status["planes"], (shown, status)
            original = reference_files(source)
            import tifffile

            for name in planes:  # every plane shown is complete and correct
                np.testing.assert_array_equal(tifffile.imread(cleanup / "slow" / name),
                                              tifffile.imread(source / name))
            assert set(planes) <= set(original)
    finally:
        cli("unmount", cleanup)


class _HangingPlate(MemoryPlate):
    """A plate whose plane A01_s001_w1 never finishes decoding until released."""

    release = threading.Event()

    def read_plane(self, key):  # type: ignore[no-untyped-def]
        if key.name == "A01_s001_w1_z001_t001.tif":
            self.release.wait(120)
        return super().read_plane(key)


def test_watchdog_dumps_the_stacks_of_a_hung_mount_and_unblocks_it(tmp_path: Path, mountpoint: Path,
                                                                   watchdog) -> None:
    plate = _HangingPlate()
    for key in small_plate().keys():
        plate.add(key, np.full((20, 30), 7, np.uint16))
    plate.caches_planes = False  # decode through the mount's worker threads
    try:
        with hcsfs.mounted(plate, mountpoint) as mnt:
            with pytest.raises(pytest.fail.Exception) as failed:
                with watchdog.bound("a read that never ends", 2, mnt.path):
                    (mnt.path / "A01_s001_w1_z001_t001.tif").read_bytes()
            plate.release.set()
    finally:
        plate.release.set()
    message = str(failed.value)
    assert "HANG: a read that never ends" in message
    assert "in read_plane" in message and "in _pixels_now" in message  # the stuck worker thread, named


def test_sigusr1_dumps_the_daemon_stacks_into_its_log(tmp_path: Path, cleanup: Path) -> None:
    source = make_source("tiff-folder", tmp_path / "source")
    log = tmp_path / "daemon.log"
    cli("mount", source, cleanup, "--log-file", log)
    try:
        from tests.torture.watchdog import Watchdog

        stacks = Watchdog._stacks(daemon_pid(cleanup), log, log.stat().st_size)
        assert "Thread 0x" in stacks and "hcsfs/fs/mount.py" in stacks, stacks
        assert os.listdir(cleanup)  # and it keeps serving
    finally:
        cli("unmount", cleanup)
