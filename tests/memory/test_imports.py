"""Importing hcsfs (and its mount code) imports no GPU framework; unsafe load orders are refused."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from hcsfs import memory as hm

FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "cupy", "pyclesperanto", "pyclesperanto_prototype",
              "pyopencl")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True,
        timeout=120,
    )


def test_import_hcsfs_and_mount_code_imports_no_gpu_framework():
    mount_modules = [m for m in ("hcsfs.cli", "hcsfs.fs.mount", "hcsfs.fs.operations")
                     if importlib.util.find_spec(m) is not None]
    code = f"""
        import sys, hcsfs, hcsfs.memory, numpy as np
        for name in {mount_modules!r}:
            __import__(name)
        hcsfs.memory.detect_memory_type(np.zeros(1))
        hcsfs.memory.convert(np.zeros((1, 2, 2)), "numpy")
        hcsfs.memory.cleanup_gpu_memory()
        print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))
    """
    done = run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("opencl", ["pyclesperanto", "pyclesperanto_prototype"])
def test_opencl_frameworks_after_tensorflow_are_refused_not_a_segfault(opencl):
    done = run(f"""
        import tensorflow
        from hcsfs.memory import FrameworkUnavailableError, import_framework
        try:
            import_framework("{opencl}")
        except FrameworkUnavailableError as exc:
            print("refused:", exc)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"refused: {opencl} cannot be imported after tensorflow" in done.stdout


def test_public_names_are_exported_once():
    assert sorted(hm.__all__) == sorted(set(hm.__all__))
    for name in hm.__all__:
        assert getattr(hm, name) is not None
