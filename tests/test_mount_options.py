"""One options type for ``hcsfs mount`` and ``hcsfs.mounted()``: every CLI flag is a MountOptions field or a
source option, every field is a keyword of mounted(), and the kernel-level ones really apply."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

import hcsfs
from hcsfs.cli import mount as mount_command
from hcsfs.fs.mount import MOUNT_KEYWORDS, MountOptions
from hcsfs.fs.mounttable import mount_entries
from hcsfs.options import SOURCE_OPTIONS
from tests.plates import memory_plate

CLI_ONLY = {"foreground", "format_", "log_file", "ready_fd"}  # the daemon's own business
CLI_NAMES = {"cache_size": "cache_bytes", "allow_scheduler": "allowed_schedulers"}
PYTHON_ONLY = {"debug_fuse", "s3_options"}  # --debug and the S3 flags fill them in


def test_every_mount_flag_is_an_option_of_mounted() -> None:
    fields = {f.name for f in dataclasses.fields(MountOptions)}
    from_cli = set()
    for param in mount_command.params:
        name = param.name
        if name in ("source", "mountpoint") or name in CLI_ONLY:
            continue
        if name in SOURCE_OPTIONS:
            continue
        field = CLI_NAMES.get(name, name)
        assert field in fields, f"hcsfs mount --{name.replace('_', '-')} has no MountOptions field"
        assert field in MOUNT_KEYWORDS
        from_cli.add(field)
    assert fields - from_cli == PYTHON_ONLY, "a MountOptions field that hcsfs mount cannot set"


def test_build_takes_every_field_and_refuses_others(tmp_path: Path) -> None:
    options = MountOptions.build(
        cache_size="64M", allow_other=True, uid=4242, gid=4343, umask=0o027, xattrs=False,
        pipelines=False, outputs=str(tmp_path), plugins=["tests.pipeline_plugin"], models=str(tmp_path),
        select="channel=1", scheduler="tcp://a:8786", allowed_schedulers=["tcp://b:8786"],
        shared_outputs="/shared", debug_fuse=False)
    assert options == MountOptions(
        cache_bytes=64 << 20, allow_other=True, uid=4242, gid=4343, umask=0o027, xattrs=False,
        pipelines=False, outputs=tmp_path, plugins=("tests.pipeline_plugin",), models=tmp_path,
        select=("channel=1",), scheduler="tcp://a:8786", allowed_schedulers=("tcp://b:8786",),
        shared_outputs="/shared")
    assert "allow_other" in options.fuse_options()
    with pytest.raises(TypeError, match="allow_others"):
        MountOptions.build(allow_others=True)


def test_mounted_refuses_a_misspelt_option(mountpoint: Path) -> None:
    with pytest.raises(TypeError, match="unknown option.*allow_others"):
        with hcsfs.mounted(memory_plate(), mountpoint, allow_others=True):
            pass  # pragma: no cover


@pytest.mark.mount
def test_owner_modes_and_allow_other_through_mounted(mountpoint: Path) -> None:
    plate = memory_plate()
    with hcsfs.mounted(plate, mountpoint, uid=4242, gid=4343, umask=0o027, allow_other=True,
                       allowed_schedulers=("tcp://b:8786",), cache_size="64M") as mnt:
        plane = os.stat(mnt.path / plate.keys()[0].name)
        assert (plane.st_uid, plane.st_gid) == (4242, 4343)
        assert stat.S_IMODE(plane.st_mode) == 0o444 & ~0o027
        folder = os.stat(mnt.path / ".hcsfs")
        assert (folder.st_uid, stat.S_IMODE(folder.st_mode)) == (4242, 0o555 & ~0o027)
        assert os.stat(mnt.path / ".pipelines").st_uid == os.geteuid()  # stays the mounting user's
        assert [e.fstype for e in mount_entries() if e.mountpoint == str(mnt.path)] == ["fuse.hcsfs"]
        (line,) = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if line.split()[4] == str(mnt.path)]
        assert "allow_other" in line.split(" - ")[1].split()[2].split(","), line  # the kernel's options
        assert mnt.session.options.allowed_schedulers == ("tcp://b:8786",)
        assert mnt.session.options.cache_bytes == 64 << 20
