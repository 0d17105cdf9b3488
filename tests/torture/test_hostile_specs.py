"""Hostile specs through a real mount: each is refused with a field-naming status, nothing runs, and
nothing is written outside the run's own folder under the outputs directory."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

import hcsfs
from tests.plates import tree_checksums
from tests.torture.helpers import small_plate

pytestmark = pytest.mark.mount

HOSTILE = {
    "traversal.yaml": ("name: ../../escape\nsteps: [{func: clip}]\n", "name"),
    "absolute.yaml": ("name: /tmp/escape\nsteps: [{func: clip}]\n", "name"),
    "output.yaml": ("output: ../../escape\nsteps: [{func: clip}]\n", "output"),
    "tag.yaml": ("steps: [{func: !!python/object/apply:os.system ['touch /tmp/hcsfs-pwned']}]\n", "spec"),
    "deep.yaml": ("a: " + "[" * 500 + "]" * 500 + "\nsteps: [{func: clip}]\n", "spec"),
    "bomb.yaml": ("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\nsteps: [{func: clip}]\n", "spec"),
    "unknown.json": ('{"steps": [{"func": "__import__", "args": {"name": "os"}}]}', "steps[0].func"),
    "sigma.yaml": ("steps: [{func: gaussian_filter, args: {sigma: 1e12}}]\n", "steps[0].args.sigma"),
    "billion.yaml": ("steps: [{func: threshold_otsu, args: {nbins: 1000000000}}]\n", "steps[0].args.nbins"),
    "wrongtype.yaml": ("steps: [{func: median_filter, args: {size: [3, 3]}}]\n", "steps[0].args.size"),
    "huge.yaml": ("# " + "x" * 200_000 + "\nsteps: [{func: clip}]\n", "spec"),
}


def test_hostile_specs_are_refused_and_write_nothing_outside_their_folder(tmp_path: Path,
                                                                          mountpoint: Path) -> None:
    outputs = tmp_path / "outputs"
    marker = Path("/tmp/hcsfs-pwned")
    marker.unlink(missing_ok=True)
    with hcsfs.mounted(small_plate(), mountpoint, outputs=outputs) as mnt:
        before_root = set(os.listdir(mnt.path))
        for filename, (text, _) in HOSTILE.items():
            # huge.yaml (200 KB) fits a control file (1 MiB) and is refused by the spec parser (64 KiB)
            (mnt.path / ".pipelines" / filename).write_text(text)
        with pytest.raises(OSError) as too_large:  # past a control file's limit: refused at write time
            (mnt.path / ".pipelines" / "toolarge.yaml").write_text("# " + "x" * (2 << 20) + "\n")
        assert too_large.value.errno == errno.EFBIG
        # What was written up to the limit is closed like any spec, and refused for its size.
        refused = {**HOSTILE, "toolarge.yaml": ("", "spec")}
        for filename, (_, field) in refused.items():
            status_file = mnt.path / ".pipelines" / (Path(filename).stem + ".status")
            deadline = time.monotonic() + 30  # FUSE sends RELEASE after close() returned
            while not status_file.exists():
                assert time.monotonic() < deadline, filename
                time.sleep(0.05)
            status = json.loads(status_file.read_text())
            assert status["state"] == "failed" and status["field"] == field, (filename, status)
            assert status["done"] == 0
            if filename in ("huge.yaml", "toolarge.yaml"):
                assert "bytes is more than the 65536 allowed" in json.dumps(status), status
        added = set(os.listdir(mnt.path)) - before_root
        assert added == set(), added  # no output folder for a refused spec
    assert not marker.exists()
    assert not (tmp_path / "escape").exists() and not Path("/tmp/escape").exists()
    for path in tree_checksums(outputs):
        assert path.startswith("runs/") and path.split("/")[1].rpartition("~")[0] in {
            Path(f).stem for f in refused}, path
