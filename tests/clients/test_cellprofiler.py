"""CellProfiler 4.2.8 runs contrib/hcsfs_nuclei.cppipe headless over a mounted plate.

The pipeline takes well/site/channel/z/t from the flat names (Metadata regex), pairs channels by
metadata (NamesAndTypes), measures whole-image intensities and identifies nuclei. Every number it
exports is compared with the same measurement computed from the source arrays.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs import PlaneKey
from tests.clients import cellprofiler_env
from tests.clients.synthetic import nuclei_count, nuclei_plate

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "contrib" / "hcsfs_nuclei.cppipe"


def _regex_from_pipeline() -> re.Pattern[str]:
    line = next(line for line in PIPELINE.read_text().splitlines()
                if "Regular expression to extract from file name:" in line)
    return re.compile(line.split(":", 1)[1])


def test_pipeline_regex_reads_every_flat_name() -> None:
    """The shipped Metadata regex parses hcsfs names, two-letter rows, w10 and reductions included."""
    regex = _regex_from_pipeline()
    for key in (PlaneKey("A01"), PlaneKey("AF48", 12, 10, 3, 7), PlaneKey("BO105", 1, 2, "max", 1)):
        found = regex.fullmatch(key.name)
        assert found is not None, key.name
        assert found["Well"] == key.well
        assert found["Site"].lstrip("0") == str(key.site)
        assert found["ChannelNumber"] == str(key.channel)
        assert found["ZSlice"].lstrip("0") == str(key.z)
        assert found["TimePoint"].lstrip("0") == str(key.t)
    assert regex.fullmatch("plate.json") is None


@pytest.mark.clients
@pytest.mark.mount
def test_cellprofiler_measures_a_mounted_plate(cellprofiler: Path, mountpoint: Path, tmp_path: Path
                                               ) -> None:
    plate = nuclei_plate()
    out = tmp_path / "out"
    with hcsfs.mounted(plate, mountpoint, pipelines=False):
        done = subprocess.run(
            ["timeout", "600", str(cellprofiler), "-c", "-r", "-p", str(PIPELINE), "-i", str(mountpoint),
             "-o", str(out)],
            capture_output=True, text=True, env={**os.environ, "JAVA_HOME": str(cellprofiler_env.JAVA_HOME)},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "Image.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    fields = {(k.well, k.site, k.z, k.t) for k in plate.keys()}
    assert len(rows) == len(fields) == 12  # 3 wells x 2 sites x 2 z, channels paired
    seen = set()
    for row in rows:
        well, site, z, t = (row["Metadata_Well"], int(row["Metadata_Site"]), int(row["Metadata_ZSlice"]),
                            int(row["Metadata_TimePoint"]))
        seen.add((well, site, z, t))
        assert row["PathName_DNA"] == str(mountpoint)
        for channel, name in ((1, "DNA"), (2, "GFP")):
            key = PlaneKey(well, site, channel, z, t)
            assert row[f"FileName_{name}"] == key.name
            source = plate.read_plane(key).astype(np.float64)
            scale = float(row[f"Scaling_{name}"])
            assert scale == 65535
            assert int(row[f"Width_{name}"]) == source.shape[1]
            assert int(row[f"Height_{name}"]) == source.shape[0]

            def measured(what: str, row: dict = row, name: str = name, scale: float = scale) -> float:
                return float(row[f"Intensity_{what}Intensity_{name}"]) * scale

            assert measured("Mean") == pytest.approx(source.mean(), rel=1e-6)
            assert measured("Min") == pytest.approx(source.min(), rel=1e-6)
            assert measured("Max") == pytest.approx(source.max(), rel=1e-6)
            assert measured("Total") == pytest.approx(source.sum(), rel=1e-5)  # float32 sum
            assert measured("Median") == pytest.approx(np.median(source), rel=1e-6)
        assert int(float(row["Count_Nuclei"])) == nuclei_count(PlaneKey(well, site, 1, z, t))
    assert seen == fields
