"""``make demo``: write a small synthetic plate, mount it, and show what to try.

The plate is a folder of flat-named TIFFs with nuclei-like blobs (two channels), so the mount can be
opened in Fiji or CellProfiler right away. Run ``python -m hcsfs.demo --help`` for the options.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from hcsfs.fs.mounttable import find_mount, unmount
from hcsfs.naming import PlaneKey

PIXEL_SIZE_UM = 0.65
NUCLEI_SPEC = """\
# Segment the nuclei of channel 1: smooth, threshold, label; one row per nucleus in objects.csv.
select: {channel: [1]}
steps:
  - {func: gaussian_filter, args: {sigma: 2}}
  - {func: threshold_otsu}
  - {func: label, tables: [objects, object_counts]}
"""
WELLS = ("A01", "A02", "A03", "B01", "B02", "B03")


def cells_plane(seed: int, shape: tuple[int, int] = (256, 256), channel: int = 1) -> np.ndarray:
    """Nuclei-like Gaussian blobs on a dim background (channel 2: wider, dimmer 'cytoplasm')."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = rng.normal(200, 20, shape)
    sigma, peak = (6.0, 3000.0) if channel == 1 else (14.0, 900.0)
    for _ in range(int(rng.integers(12, 30))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        image += peak * rng.uniform(0.6, 1.2) * np.exp(
            -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return np.clip(image, 0, 65535).astype(np.uint16)


def write_demo_plate(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for well_index, well in enumerate(WELLS):
        for site in (1, 2):
            seed = well_index * 10 + site
            for channel in (1, 2):
                key = PlaneKey(well, site, channel)
                tifffile.imwrite(folder / key.name, cells_plane(seed, channel=channel),
                                 imagej=True, resolution=(1 / PIXEL_SIZE_UM, 1 / PIXEL_SIZE_UM),
                                 metadata={"unit": "micron"})
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="where plate/ and mnt/ go")
    args = parser.parse_args()
    plate, mnt = (args.dir / "plate").absolute(), (args.dir / "mnt").absolute()
    if find_mount(mnt) is not None:
        print(f"demo: {mnt} was mounted; {unmount(mnt)}")
    if not plate.exists():
        print(f"demo: wrote {write_demo_plate(plate)} planes to {plate}")
    mnt.mkdir(parents=True, exist_ok=True)
    spec = (args.dir / "nuclei.yaml").absolute()
    spec.write_text(NUCLEI_SPEC)
    hcsfs = [sys.executable, "-m", "hcsfs"]
    subprocess.run([*hcsfs, "info", str(plate)], check=True)
    subprocess.run([*hcsfs, "mount", str(plate), str(mnt)], check=True)
    listing = subprocess.run(["ls", str(mnt)], capture_output=True, text=True).stdout.split()
    print(f"\n$ ls {mnt} | head -4\n" + "\n".join(listing[:4]) + f"\n... ({len(listing)} planes)")
    print(f"""
Try:
  ls -l {mnt}
  tiffinfo {mnt}/A01_s001_w1_z001_t001.tif
  cat {mnt}/.hcsfs/plate.json
  getfattr -d {mnt}/A01_s001_w1_z001_t001.tif
  cp -r {mnt} /tmp/plate-copy;  rsync -a {mnt}/ /tmp/plate-rsync/
  fiji {mnt}/A01_s001_w1_z001_t001.tif      # pixel size 0.65 micron is shown
  fiji {mnt}/.hcsfs/overview/w1.tif         # the whole plate at a glance
A pipeline (segment the nuclei; outputs and objects.csv appear in {mnt}/nuclei/):
  .venv/bin/hcsfs run {mnt} {spec} --wait
  .venv/bin/hcsfs status {mnt};  ls {mnt}/nuclei/
When done:
  .venv/bin/hcsfs unmount {mnt}""")


if __name__ == "__main__":
    main()
