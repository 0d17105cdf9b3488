"""The Qt viewer tests (tests/napari/test_live.py) in a child pytest of their own: a clean process for
the OpenGL context (see tests/napari/conftest.py); this test fails when any of them fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.napari.conftest import QT_CHILD

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


@pytest.mark.mount
def test_qt_viewer_tests_pass_in_their_own_process(tmp_path: Path) -> None:
    env = {**os.environ, QT_CHILD: "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "qt"),
         "-o", "addopts=-ra -p no:napari -p no:npe2 -p no:napari-plugin-engine", str(HERE / "test_live.py")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in summary and "skipped" not in summary and "deselected" not in summary, summary
