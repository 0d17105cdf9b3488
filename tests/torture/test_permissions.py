"""Who may use a mount: private by default, ``allow_other`` opt-in, ``uid/gid/umask``, and
``.pipelines/`` writable only by the mount's owner. Root bypasses permission checks, so the other
users are played by ``nobody`` (and ``daemon``) through ``runuser``."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcsfs.fs.mount import MountOptions, MountSession
from tests.conftest import unavailable
from tests.torture.helpers import small_plate

pytestmark = pytest.mark.mount


@pytest.fixture(autouse=True)
def _root_and_runuser() -> None:
    """Acting as other users needs root and runuser; CI (.ci/run) runs as root, so there it fails."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        unavailable("needs root and runuser to act as other users")

NOBODY = pwd.getpwnam("nobody")
OTHER = pwd.getpwnam("daemon")
PLANE = "A01_s001_w1_z001_t001.tif"


@contextlib.contextmanager
def mount(options: MountOptions) -> Iterator[Path]:
    """A mount on a mountpoint every user can reach (``tmp_path`` is private to root)."""
    parent = Path(tempfile.mkdtemp(prefix="hcsfs-perm-"))
    parent.chmod(0o755)
    mountpoint = parent / "mnt"
    mountpoint.mkdir()
    session = MountSession(small_plate(), mountpoint, options)
    ready = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            session.run(on_ready=ready.set)
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30) and not errors, errors
    try:
        yield mountpoint
    finally:
        session.stop()
        thread.join(30)
        shutil.rmtree(parent, ignore_errors=True)


def as_user(user: pwd.struct_passwd, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user.pw_name, "--", *command], capture_output=True, text=True,
                          errors="replace",
                          timeout=30)


def test_private_by_default(tmp_path: Path) -> None:
    assert "default_permissions" in MountOptions().fuse_options()
    assert "allow_other" not in MountOptions().fuse_options()
    with mount(MountOptions(pipelines=False)) as mnt:
        assert os.listdir(mnt)
        denied = as_user(NOBODY, "ls", str(mnt))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_allow_other_reads_but_only_the_owner_writes_pipelines(tmp_path: Path) -> None:
    with mount(MountOptions(allow_other=True, outputs=tmp_path / "out")) as mnt:
        listed = as_user(NOBODY, "ls", "-a", str(mnt))
        assert listed.returncode == 0 and PLANE in listed.stdout and ".pipelines" in listed.stdout
        assert as_user(NOBODY, "cat", str(mnt / PLANE)).returncode == 0
        spec = mnt / ".pipelines" / "x.yaml"
        refused = as_user(NOBODY, "sh", "-c", f"echo 'steps: [{{func: clip}}]' > {spec}")
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert not spec.exists()
        spec.write_text("steps: [{func: clip}]\n")  # the owner may
        for attempt in (f"echo x >> {spec}", f"rm -f {spec}", f"mv {spec} {spec}.bak",
                        f"touch {mnt / '.pipelines' / 'y.json'}"):
            done = as_user(NOBODY, "sh", "-c", attempt)
            assert done.returncode != 0, attempt
        assert spec.read_text() == "steps: [{func: clip}]\n"
        mode = (mnt / ".pipelines").stat()
        assert mode.st_uid == 0 and stat.S_IMODE(mode.st_mode) == 0o755


def test_uid_gid_umask(tmp_path: Path) -> None:
    options = MountOptions(allow_other=True, uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, umask=0o077,
                           outputs=tmp_path / "out")
    with mount(options) as mnt:
        plane = (mnt / PLANE).stat()
        root = mnt.stat()
        assert (plane.st_uid, plane.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
        assert stat.S_IMODE(plane.st_mode) == 0o400 and stat.S_IMODE(root.st_mode) == 0o500
        assert as_user(NOBODY, "cat", str(mnt / PLANE)).returncode == 0  # the presented owner reads
        assert as_user(OTHER, "ls", str(mnt)).returncode != 0  # others do not (umask 077)
        pipelines = (mnt / ".pipelines").stat()
        assert pipelines.st_uid == 0 and stat.S_IMODE(pipelines.st_mode) == 0o700
        # owning the plate's files does not make nobody the owner of .pipelines/
        refused = as_user(NOBODY, "sh", "-c", f"echo 'steps: [{{func: clip}}]' > {mnt}/.pipelines/x.yaml")
        assert refused.returncode != 0
