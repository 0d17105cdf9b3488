"""Run the shipped CellProfiler pipelines headless and read back what they export.

Both pipelines get their planes from a file list (``--file-list``), never from ``-i``: ``-i`` walks a
folder recursively, and a mount root also holds the planes of its run folders (``/<run>/nuclei/...``)
under the same flat names. The folders given here may be anywhere, a read-only FUSE mount included:
only their ``*.tif`` files are listed (not their subfolders), and everything is written under ``out``.

- ``contrib/hcsfs_measure_objects.cppipe`` pairs intensity planes (DAPI = w1, GFP = w2) with label
  planes of the same flat names, telling them apart by folder: label planes sit in a folder named
  ``nuclei`` (a run's ``/<run>/nuclei/``). Labels are loaded as Objects, unscaled, so object numbers are
  the label values. For a labels folder of another name the rules are rewritten in a copy under ``out``.
- ``contrib/hcsfs_identify_nuclei.cppipe`` smooths w1 with a Gaussian of sigma 2 and identifies nuclei
  with one global two-class Otsu threshold (no declumping, no size or border filter, holes kept).

Intensities come back as CellProfiler writes them, scaled to 0..1: raw = value x ``Scaling_<image>``
(``Image.csv``; 65535 for 16-bit planes).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

from tests.clients import cellprofiler_env

ROOT = Path(__file__).resolve().parents[2]
MEASURE_PIPELINE = ROOT / "contrib" / "hcsfs_measure_objects.cppipe"
IDENTIFY_PIPELINE = ROOT / "contrib" / "hcsfs_identify_nuclei.cppipe"
LABELS_FOLDER = "nuclei"  # the folder name the measure pipeline's rules take for label planes
_LABELS_RULE = f'[\\\\\\\\/]{LABELS_FOLDER}$"'  # as the rules spell it in the .cppipe file

Field = tuple[str, int, int, int]  # (well, site, z, t), the key of one image set


def run_cellprofiler(cellprofiler: Path, pipeline: Path, files: list[Path], out: Path,
                     timeout: float = 600) -> None:
    """``cellprofiler -c -r -p PIPELINE --file-list LIST -o OUT``; AssertionError with its log if it fails."""
    if not files:
        raise ValueError("no planes to give CellProfiler")
    out.mkdir(parents=True, exist_ok=True)
    file_list = out / "files.txt"
    file_list.write_text("".join(f"{path}\n" for path in files))
    done = subprocess.run(
        ["timeout", str(int(timeout)), str(cellprofiler), "-c", "-r", "-p", str(pipeline),
         "--file-list", str(file_list), "-o", str(out)],
        capture_output=True, text=True, env={**os.environ, "JAVA_HOME": str(cellprofiler_env.JAVA_HOME)},
    )
    if done.returncode != 0:
        raise AssertionError(f"CellProfiler ({pipeline.name}) exited {done.returncode}:\n"
                             f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file that ExportToSpreadsheet wrote."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def field_of(row: dict[str, str]) -> Field:
    """(well, site, z, t) of a CellProfiler row, from its Metadata columns."""
    return (row["Metadata_Well"], int(row["Metadata_Site"]), int(row["Metadata_ZSlice"]),
            int(row["Metadata_TimePoint"]))


def _planes(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.tif") if not path.name.startswith("."))


def measure_pipeline_for(labels_dir: Path, out: Path) -> Path:
    """The shipped pipeline, or a copy under ``out`` whose rules name ``labels_dir``'s folder."""
    if labels_dir.name == LABELS_FOLDER:
        return MEASURE_PIPELINE
    if not re.fullmatch(r"[A-Za-z0-9_-]+", labels_dir.name):
        raise ValueError(f"labels folder name {labels_dir.name!r}: letters, digits, _ and - only")
    text = MEASURE_PIPELINE.read_text()
    assert text.count(_LABELS_RULE) == 3, "the measure pipeline's folder rules changed"
    copy = out / f"hcsfs_measure_objects_{labels_dir.name}.cppipe"
    out.mkdir(parents=True, exist_ok=True)
    copy.write_text(text.replace(_LABELS_RULE, f'[\\\\\\\\/]{labels_dir.name}$"'))
    return copy


def measure_objects_with_cellprofiler(cellprofiler: Path, images_dir: Path, labels_dir: Path,
                                      out: Path) -> list[dict[str, str]]:
    """Rows of CellProfiler's per-object table (``out/nuclei.csv``) for the objects of ``labels_dir``.

    ``images_dir`` holds the intensity planes (w1 = DAPI, w2 = GFP), ``labels_dir`` int32 label planes
    with the flat names of the planes they were found in (w1). Each row has ``ImageNumber``,
    ``ObjectNumber`` (= the label value), ``Metadata_Well/Site/ZSlice/TimePoint``, ``AreaShape_*`` and
    ``Intensity_<feature>_DAPI`` / ``_GFP`` (0..1 scale; ``out/Image.csv`` has ``Scaling_DAPI``).
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    if images_dir.name == labels_dir.name:
        raise ValueError(f"images and labels folders are both named {labels_dir.name!r}: the pipeline "
                         "tells their planes apart by folder name")
    pipeline = measure_pipeline_for(labels_dir, Path(out))
    run_cellprofiler(cellprofiler, pipeline, _planes(images_dir) + _planes(labels_dir), Path(out))
    return read_table(Path(out) / "nuclei.csv")


def count_nuclei_with_cellprofiler(cellprofiler: Path, images_dir: Path, out: Path) -> dict[Field, int]:
    """CellProfiler's own nuclei count per image set of the w1 planes in ``images_dir``
    (``out/Image.csv``: ``Count_Nuclei``, ``Threshold_FinalThreshold_Nuclei`` on the 0..1 scale)."""
    planes = [path for path in _planes(Path(images_dir)) if "_w1_" in path.name]
    run_cellprofiler(cellprofiler, IDENTIFY_PIPELINE, planes, Path(out))
    return {field_of(row): int(float(row["Count_Nuclei"])) for row in read_table(Path(out) / "Image.csv")}
