"""`make gpu-check`'s CPU dry run, and the engine without FUSE (issue 18).

The dry run runs in a child process whose imports of pyfuse3 and trio fail (a ``sitecustomize`` adds a
meta-path finder that refuses them), as on a GPU node without FUSE: the engine, ``hcsfs process`` (the
check runs it as a grandchild, which inherits the block) and the whole check must not need them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = '''
import importlib.abc
import sys

_BLOCKED = {"pyfuse3", "trio"}


class _NoFuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a node without FUSE)", name=name)
        return None


sys.meta_path.insert(0, _NoFuse())
'''


@pytest.fixture(scope="module")
def no_fuse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose Python cannot import pyfuse3 or trio."""
    folder = tmp_path_factory.mktemp("no-fuse")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    paths = [str(folder), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _python(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_block_works(no_fuse: dict[str, str]) -> None:
    done = _python(no_fuse, "-c", "import hcsfs.fs.mount")
    assert done.returncode != 0
    assert "No module named 'pyfuse3' (blocked" in done.stderr


def test_the_engine_imports_without_fuse(no_fuse: dict[str, str]) -> None:
    code = ("import sys, hcsfs, hcsfs.cli, hcsfs.memory, hcsfs.pipelines, hcsfs.pipelines.process; "
            "loaded = [m for m in ('pyfuse3', 'trio') if m in sys.modules]; assert not loaded, loaded")
    done = _python(no_fuse, "-c", code)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def dry_run(no_fuse: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("gpu-check")
    done = _python(no_fuse, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(out),
                   "--work", str(out / "work"), timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads((out / "gpu.json").read_text()), (out / "gpu.md").read_text()


def test_dry_run_report_structure(dry_run: tuple[dict[str, Any], str]) -> None:
    doc, markdown = dry_run
    assert doc["schema"] == gpu_check.SCHEMA and doc["mode"] == "dry-run"
    assert list(doc["sections"]) == list(gpu_check.SECTIONS)
    for name, section in doc["sections"].items():
        assert section["status"] in ("passed", "skipped"), (name, section)
    assert doc["summary"] == {**doc["summary"], "passed": True, "failed_sections": []}
    assert doc["environment_after"]["fuse_modules_loaded"] == []
    assert markdown.startswith("# GPU check")
    for name in gpu_check.SECTIONS:
        assert f"| {name} | {doc['sections'][name]['status']} |" in markdown


def test_dry_run_cuda_sections_say_no_cuda_device(dry_run: tuple[dict[str, Any], str]) -> None:
    doc, markdown = dry_run
    reason = gpu_check.NO_CUDA if gpu_check.cuda_count() == 0 else gpu_check.DRY_RUN
    for name in gpu_check.CUDA_SECTIONS:
        assert doc["sections"][name] == {"status": "skipped", "reason": reason}, name
        assert f"| {name} | skipped | {reason} |" in markdown
    if reason == gpu_check.NO_CUDA:
        assert doc["sections"]["environment"]["device"] == {"name": None, "reason": gpu_check.NO_CUDA}


def test_dry_run_cpu_conversion_matrix(dry_run: tuple[dict[str, Any], str]) -> None:
    section = dry_run[0]["sections"]["conversions_cpu"]
    places = section["placements"]
    assert places[0] == "numpy@cpu" and "torch@cpu" in places
    assert len(section["pairs"]) == len(places) * (len(places) - 1)
    for pair in section["pairs"]:
        assert pair["passed"], pair
        assert set(pair["dtypes"]) == set(gpu_check.DTYPES)
        assert pair["timing"]["median_ms"] > 0
    shared = {(p["source"], p["target"]): p["shared"] for p in section["pairs"]}
    assert shared[("numpy@cpu", "torch@cpu")] and shared[("torch@cpu", "numpy@cpu")]  # DLPack, no copy
    assert section["stats_totals"]["numpy->torch:dlpack"] >= 1


def test_dry_run_oom_harness(dry_run: tuple[dict[str, Any], str]) -> None:
    (case,) = dry_run[0]["sections"]["oom_emulated"]["cases"]
    assert case["passed"] and case["mismatches"] == []
    assert [c["z"] for c in case["calls"]] == [16, 8, 4, 4, 8, 4, 4]
    assert case["counts"]["splits"] == 3 and case["counts"]["recovered"] == 1


def test_dry_run_pipeline_comparison_and_throughput(dry_run: tuple[dict[str, Any], str]) -> None:
    sections = dry_run[0]["sections"]
    (comparison,) = sections["pipeline_cpu"]["comparisons"]
    assert comparison["variant"] == "torch (CPU)" and comparison["passed"]
    outputs = comparison["outputs"]
    assert outputs["nuclei"]["equal"] and outputs["smooth"]["worst_relative"] <= 1e-4
    assert outputs["tables"]["tables"] == ["cells.csv", "image.csv", "nuclei.csv", "wells.csv"]
    rows = sections["throughput_cpu"]["rows"]
    assert {(r["case"], r["side"]) for r in rows} == {("image steps", 64), ("image steps", 96),
                                                      ("screen analysis", 64)}
    assert all(r["state"] == "done" for r in rows)
    assert all(r["ratio_vs_cpu"] > 0 for r in rows if r["variant"] != "numpy")
    cli = sections["process_cli"]
    assert cli["returncode"] == 0 and cli["state"] == "done"


def test_pytest_outcomes_are_collected(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_ok():\n    pass\n"
        "def test_bad():\n    assert 1 == 2\n"
        "def test_gpu():\n    pytest.skip('no CUDA device')\n")
    result = gpu_check.run_pytest([str(tmp_path / "test_sample.py")], None, 120, tmp_path,
                                  env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})  # napari's plugin is slow
    assert result["status"] == "failed"
    assert result["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    outcomes = {t["test"].rpartition("::")[2]: t["outcome"] for t in result["tests"]}
    assert outcomes == {"test_ok": "passed", "test_bad": "failed", "test_gpu": "skipped"}


def test_docs_page_explains_the_check_as_its_report_does(dry_run: tuple[dict[str, Any], str]) -> None:
    how = gpu_check.HOW.strip()
    assert how in dry_run[1]
    assert how in (ROOT / "docs" / "gpu.md").read_text()


def test_expand_labels_ties_are_accepted_and_nothing_else() -> None:
    """The rule a GPU's expand_labels is held to where it differs from numpy: a tie between two seeds."""
    seeds = np.zeros((1, 7), np.int32)
    seeds[0, 0], seeds[0, 6] = 1, 2  # pixel 3 is as near to both
    numpy_cells = np.array([[1, 1, 1, 1, 2, 2, 2]], np.int32)
    tie = numpy_cells.copy()
    tie[0, 3] = 2
    wrong = numpy_cells.copy()
    wrong[0, 2] = 2  # nearer to seed 1
    assert gpu_check._ties_only(numpy_cells, tie, seeds)
    assert not gpu_check._ties_only(numpy_cells, wrong, seeds)
    row = gpu_check._compare_labels({"p": numpy_cells}, {"p": tie}, "expand", True, {"p": seeds})
    assert row["passed"] and row["ties_only"] and not row["equal"]


def test_labels_after_a_moved_mask_pixel_are_matched_object_by_object() -> None:
    ref = np.zeros((20, 20), np.int32)
    ref[2:8, 2:8], ref[10:18, 10:18] = 1, 2
    moved = ref.copy()
    moved[2, 2] = 0  # one pixel at the threshold: the objects are the same
    row = gpu_check._compare_labels({"p": ref}, {"p": moved}, "labels", False, {})
    assert row["passed"] and row["matched_fraction"] == 1.0
    merged = ref.copy()
    merged[2:18, 2:18] = 1  # one object where there were two
    assert not gpu_check._compare_labels({"p": ref}, {"p": merged}, "labels", False, {})["passed"]
    assert not gpu_check._compare_labels({"p": ref}, {"p": moved}, "labels", True, {})["passed"]
