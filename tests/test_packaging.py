"""Extras hygiene: every third-party package hcsfs imports is declared (core or the extra that needs it),
optional ones stay out of the core and are imported only when used, and the requirements say where the
CPU build of torch comes from."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Imported by hcsfs but not declared by it, on purpose.
UNDECLARED = {
    "qtpy": "napari's Qt shim, installed with napari (the napari extra)",
    "pyclesperanto_prototype": "requirements/no-deps.txt: it declares numpy<2, so no extra can name it",
}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    extras = {extra: {_name(r) for r in reqs if not r.startswith("hcsfs[")}
              for extra, reqs in PYPROJECT["optional-dependencies"].items()}
    return core, extras


def _imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the hcsfs files importing it (anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "hcsfs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.partition(".")[0]
                if root not in sys.stdlib_module_names and root not in ("hcsfs", "__future__"):
                    found.setdefault(root, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_declared_where_it_is_needed() -> None:
    core, extras = _declared()
    declared = core.union(*extras.values())
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(_imports().items()):
        if module in UNDECLARED:
            continue
        names = {_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            problems.append(f"{module} ({sorted(names)}) imported by {sorted(files)} is in no extra")
    assert not problems, "\n".join(problems)


def test_the_core_holds_what_mounting_and_analysis_need_and_no_more() -> None:
    core, extras = _declared()
    assert "pillow" in core  # plate heatmaps of analysis runs are PNGs made with Pillow
    for optional in ("tensorstore", "zarr", "zarrs", "obstore", "boto3", "distributed", "pyarrow", "torch",
                     "jax", "tensorflow-cpu", "cupy-cuda12x", "pyclesperanto", "onnxruntime", "napari"):
        assert optional not in core, optional
    assert [extra for extra, names in extras.items() if "tensorstore" in names] == ["zarr"]


def test_optional_packages_are_imported_only_when_used() -> None:
    core, _ = _declared()
    distributions = importlib.metadata.packages_distributions()
    optional = sorted(m for m in _imports()
                      if not {_name(d) for d in distributions.get(m, [m])} & core)
    modules = ["hcsfs", "hcsfs.cli", "hcsfs.fs.mount", "hcsfs.fs.operations", "hcsfs.pipelines",
               "hcsfs.pipelines.runner", "hcsfs.convert", "hcsfs.demo", "hcsfs.doctor", "hcsfs.memory"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            f"print(sorted(m for m in {optional!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    assert "zarr" in optional and "torch" in optional  # the list is not empty by mistake


def test_requirements_say_where_the_cpu_torch_comes_from() -> None:
    text = (ROOT / "requirements" / "frameworks.txt").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    (torch,) = [line for line in lines if line.startswith("torch")]
    assert torch == "torch==2.13.0", torch  # an exact pin: a range would let pip take PyPI's CUDA build
    assert "CPU build" in text and "PIP_FIND_LINKS" in text  # the comment says where it comes from
    no_deps = (ROOT / "requirements" / "no-deps.txt").read_text()
    assert "pyclesperanto-prototype==0.24.6" in no_deps.splitlines()
    assert "--no-deps -r requirements/no-deps.txt" in (ROOT / "Makefile").read_text()
