"""CellProfiler 4.2.8 takes its image sets from a mount's ``/.hcsfs/loaddata.csv`` (LoadData, no regex).

``contrib/hcsfs_loaddata.cppipe`` is LoadData, MeasureImageIntensity of w1 and w2, ExportToSpreadsheet;
it has no Images/Metadata/NamesAndTypes modules, so every channel and every metadata value CellProfiler
reports came from the table. Each image set's intensities are compared with numpy's of the planes the
set should hold (planes differ per channel, z and t, so a swapped channel or a shifted row shows).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs import PlaneKey
from tests.clients import cellprofiler_env
from tests.clients.cellprofiler_runs import read_table
from tests.clients.synthetic import nuclei_plate

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "contrib" / "hcsfs_loaddata.cppipe"


def test_loaddata_pipeline_has_no_regex_and_no_file_rules() -> None:
    text = PIPELINE.read_text()
    modules = [line.split(":[", 1)[0] for line in text.splitlines() if ":[module_num:" in line]
    assert modules == ["LoadData", "MeasureImageIntensity", "ExportToSpreadsheet"]
    assert "Regular expression" not in text
    assert "Base image location:None|" in text  # PathName_* are absolute: the mountpoint


@pytest.mark.clients
@pytest.mark.mount
def test_cellprofiler_loaddata_over_a_mount(cellprofiler: Path, tmp_path: Path) -> None:
    plate = nuclei_plate(wells=("A01", "B02"), sites=2, channels=2, z=2, t=2, shape=(128, 160))
    mountpoint = tmp_path / "plate mnt"  # a space in PathName: the table must quote nothing wrongly
    mountpoint.mkdir()
    out = tmp_path / "out"
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        done = subprocess.run(
            ["timeout", "600", str(cellprofiler), "-c", "-r", "-p", str(PIPELINE),
             "--data-file", str(mountpoint / ".hcsfs" / "loaddata.csv"), "-o", str(out)],
            capture_output=True, text=True, cwd=tmp_path,
            env={**os.environ, "JAVA_HOME": str(cellprofiler_env.JAVA_HOME)},
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = read_table(out / "Image.csv")
    expected = {(k.well, k.site, k.z, k.t) for k in plate.keys()}
    assert len(expected) == 16
    seen = []
    for row in rows:
        well, site, z, t = (row["Metadata_Well"], int(row["Metadata_Site"]), int(row["Metadata_ZSlice"]),
                            int(row["Metadata_TimePoint"]))
        seen.append((well, site, z, t))
        assert row["Metadata_Row"] == well[0] and int(row["Metadata_Column"]) == int(well[1:])
        assert row["Metadata_Plate"] == "memory"
        for channel in (1, 2):
            key = PlaneKey(well, site, channel, z, t)
            image = f"w{channel}"
            assert row[f"FileName_{image}"] == key.name
            assert row[f"PathName_{image}"] == str(mountpoint)
            source = plate.read_plane(key).astype(np.float64)
            scale = float(row[f"Scaling_{image}"])
            assert scale == 65535
            assert (int(row[f"Height_{image}"]), int(row[f"Width_{image}"])) == source.shape
            for what, value in (("Mean", source.mean()), ("Min", source.min()), ("Max", source.max()),
                                ("Median", np.median(source))):
                measured = float(row[f"Intensity_{what}Intensity_{image}"]) * scale
                assert measured == pytest.approx(value, rel=1e-6), (key.name, what)
    assert sorted(seen) == sorted(expected)  # every image set once, none invented
