"""hcsfs.doctor: each check against a faked machine, the real machine, and a real stale mount."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hcsfs import doctor
from hcsfs.doctor import Check, exit_status, format_checks, run_checks

ROOT = Path(__file__).resolve().parents[2]


def test_dev_fuse_missing_says_how_to_fix(tmp_path: Path) -> None:
    check = doctor.check_dev_fuse(tmp_path / "fuse")
    assert check.ok is False and "modprobe fuse" in check.fix and "--device /dev/fuse" in check.fix


def test_fusermount_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    check = doctor.check_fusermount()
    sudo = "" if os.geteuid() == 0 else "sudo "  # the command of hcsfs/sysdeps.py, as make prints it
    assert check.ok is False and check.fix == f"{sudo}apt-get install -y fuse3"


@pytest.mark.parametrize(("text", "ok"), [
    ("user_allow_other\n", True),
    ("# user_allow_other\n", None),
    ("mount_max = 1000\n  user_allow_other  # lab machines\n", True),
])
def test_user_allow_other(tmp_path: Path, text: str, ok: bool | None) -> None:
    conf = tmp_path / "fuse.conf"
    conf.write_text(text)
    check = doctor.check_allow_other(conf)
    assert check.ok is ok
    if ok is None:
        assert "user_allow_other" in check.fix and "--allow-other" in check.detail


def test_missing_fuse_conf_is_information(tmp_path: Path) -> None:
    assert doctor.check_allow_other(tmp_path / "absent").ok is None


def test_mounts_found_in_mountinfo(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(textwrap.dedent("""\
        22 1 0:21 / /proc rw,nosuid - proc proc rw
        90 22 0:50 / /mnt/plate\\0407 ro,nosuid - fuse.hcsfs hcsfs ro,user_id=0
        91 22 0:51 / /mnt/other rw - fuse.sshfs host:/ rw
        """))
    assert doctor.hcsfs_mounts(mountinfo) == ["/mnt/plate 7"]
    checks = doctor.check_mounts(mountinfo)  # /mnt/plate 7 is not in the real mount table
    assert checks == []


def test_no_mounts_is_fine(tmp_path: Path) -> None:
    empty = tmp_path / "mountinfo"
    empty.write_text("")
    assert doctor.check_mounts(empty) == [Check("hcsfs mounts", True, "no hcsfs mounts")]


def test_absent_framework_is_information(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = doctor.Framework("hcsfs_no_such_module", "nope", "nope", "nothing")
    check = doctor.check_framework(fake, probe=True)
    assert check.ok is None and check.fix == "pip install 'hcsfs[nope]'"


def test_framework_probe_runs_in_a_child_with_a_time_limit() -> None:
    slow = doctor.Framework("json", "json", "x", "test", probe="import time; time.sleep(30)")
    started = time.monotonic()
    check = doctor.check_framework(slow, probe=True, timeout=1)
    assert time.monotonic() - started < 10
    assert check.ok is False and "did not answer" in check.detail
    good = doctor.Framework("json", "json", "x", "test", probe="print('2 devices')")
    assert doctor.check_framework(good, probe=True).detail.endswith("; 2 devices")
    broken = doctor.Framework("json", "json", "x", "test", probe="import json_nope")
    check = doctor.check_framework(broken, probe=True)
    assert check.ok is False and "importing it failed" in check.detail and "reinstall" in check.fix


def test_run_checks_imports_no_framework() -> None:
    """The doctor itself stays fast: no GPU framework gets imported into its process."""
    code = ("import sys; from hcsfs.doctor import run_checks, format_checks; "
            "print('\\n'.join(format_checks(run_checks()))); "
            "print('IMPORTED', [m for m in ('torch', 'jax', 'tensorflow', 'cupy', 'pyclesperanto') "
            "if m in sys.modules])")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stdout
    assert time.monotonic() - started < 20
    assert "/dev/fuse" in done.stdout and "fusermount3" in done.stdout


def test_format_and_exit_status() -> None:
    checks = [Check("a", True, "fine", "never shown"), Check("b", None, "fyi", "maybe"),
              Check("c", False, "broken", "do this")]
    assert format_checks(checks) == ["[ok  ] a: fine", "[info] b: fyi", "       fix: maybe",
                                     "[FAIL] c: broken", "       fix: do this"]
    assert exit_status(checks) == 1
    assert exit_status(checks[:2]) == 0


def test_this_machine_can_mount() -> None:
    """Where the mount tests run, FUSE must be healthy; the doctor must agree."""
    from tests.conftest import fuse_problem, unavailable

    problem = fuse_problem()
    if problem is not None:
        unavailable(problem)  # CI mounts: there a broken FUSE fails this test
    names = {c.name: c for c in run_checks()}
    for name in ("/dev/fuse", "fusermount3", "pyfuse3"):
        assert names[name].ok is True, names[name]


@pytest.mark.mount
def test_a_killed_daemon_is_reported_stale_with_the_unmount_command(tmp_path: Path, mountpoint: Path
                                                                    ) -> None:
    from tests.plates import memory_plate, write_tiff_folder

    folder = write_tiff_folder(tmp_path / "plate", memory_plate())
    hcsfs_cli = [sys.executable, "-m", "hcsfs"]
    subprocess.run(hcsfs_cli + ["mount", str(folder), str(mountpoint), "--log-file",
                                str(tmp_path / "log")], check=True, timeout=60)
    try:
        found = [c for c in doctor.check_mounts() if c.name == f"mount {mountpoint}"]
        assert found and found[0].ok is True
        pid = int(subprocess.run(["pgrep", "-f", f"hcsfs mount {folder} {mountpoint}"],
                                 capture_output=True, text=True).stdout.split()[0])
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            found = [c for c in doctor.check_mounts() if c.name == f"mount {mountpoint}"]
            if found and found[0].ok is False:
                break
            time.sleep(0.1)
        assert found[0].ok is False and "stale" in found[0].detail
        assert found[0].fix == f"hcsfs unmount {mountpoint}"
    finally:
        subprocess.run(hcsfs_cli + ["unmount", str(mountpoint)], capture_output=True, timeout=60)
