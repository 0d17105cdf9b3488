"""A real FUSE mount of an ``s3://`` plate: every plane read, the server taken away mid-read (EIO for
the planes it was needed for), and reads recovering when it returns."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import hcsfs
from hcsfs import MemoryPlate
from hcsfs.convert import convert_plate
from tests.s3.conftest import S3

pytestmark = [pytest.mark.mount, pytest.mark.timeout(180)]


def test_mount_s3_plate_eio_while_the_server_is_down_then_recovery(
    s3: S3, plate: MemoryPlate, tmp_path: Path,
) -> None:
    url = s3.url("screens/p.ome.zarr")
    convert_plate(plate, url, **s3.options)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with hcsfs.mounted(plate, tmp_path / "a", pipelines=False) as original:  # one mount per process
        expected = {p.name: p.read_bytes() for p in original.path.iterdir() if p.name.endswith(".tif")}
    with hcsfs.mounted(url, tmp_path / "b", outputs=tmp_path / "outputs", retries=0, timeout=2,
                       **s3.options) as mnt:
        names = sorted(p.name for p in mnt.path.iterdir() if p.name.endswith(".tif"))
        assert names == sorted(expected)
        sizes = {name: os.stat(mnt.path / name).st_size for name in names}  # all metadata now
        assert sizes == {name: len(data) for name, data in expected.items()}
        read_first, read_later = names[: len(names) // 2], names[len(names) // 2:]
        for name in read_first:
            assert (mnt.path / name).read_bytes() == expected[name]
        s3.server.stop()
        try:
            for name in read_first:  # already decoded: served from the cache
                assert (mnt.path / name).read_bytes() == expected[name]
            for name in read_later[:4]:
                with pytest.raises(OSError) as raised:
                    (mnt.path / name).read_bytes()
                assert raised.value.errno == errno.EIO, name
        finally:
            s3.server.start()
        for name in read_later:  # the mount recovered: nothing failed was cached
            assert (mnt.path / name).read_bytes() == expected[name]
        plate_json = (mnt.path / ".hcsfs" / "plate.json").read_text()
        assert url in plate_json
