"""The overview PNG: its size is known from the shape alone, and real decoders read it back."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hcsfs.png import stored_png, stored_png_size


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 700), dtype=st.sampled_from(["u1", "u2"]))
def test_size_is_exact_and_pillow_reads_it_back(height: int, width: int, dtype: str) -> None:
    array = np.random.default_rng(height * width).integers(0, 60000, (height, width)).astype(dtype)
    data = stored_png(array)
    assert len(data) == stored_png_size((height, width), dtype)
    with Image.open(io.BytesIO(data)) as image:
        np.testing.assert_array_equal(np.asarray(image), array)


def test_imagemagick_reads_it_strictly(tmp_path: Path) -> None:
    identify = shutil.which("identify")
    assert identify, "ImageMagick must be installed (.ci/run installs it)"
    path = tmp_path / "o.png"
    path.write_bytes(stored_png(np.arange(200 * 300, dtype=np.uint32).reshape(200, 300).astype(np.uint8)))
    done = subprocess.run([identify, "-regard-warnings", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "" and "300x200" in done.stdout


def test_rejects_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        stored_png(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError):
        stored_png(np.zeros((2, 2), np.float32))
