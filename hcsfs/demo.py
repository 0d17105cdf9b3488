"""``make demo``: write two small plates that look like real ones, mount both, run the screen analysis,
and show what to try.

- ``demo/imagexpress/``: a nested MetaXpress plate (``TimePoint_<t>/ZStep_<z>/`` folders, GUID-suffixed
  names, a thumbnail beside every plane, a cp1252 ``.HTD``): 6 wells x 2 sites x 2 channels (DAPI, GFP)
  x 2 z x 2 t of nuclei-like 256x256 planes, mounted on ``demo/mnt/imagexpress``.
- ``demo/plate.ome.zarr``: an OME-Zarr HCS plate (written with ``hcsfs convert``'s code), mounted on
  ``demo/mnt/ome-zarr``.
- The analysis spec ``contrib/screen.yaml`` (nuclei in DAPI, GFP measured in nuclei and cells) runs on
  the ImageXpress mount; its ``wells.csv``, ROI sets and heatmaps appear under
  ``demo/mnt/imagexpress/screen/``.

Run ``python -m hcsfs.demo --help`` for the options. Running it again reuses the plates and remounts.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hcsfs.fs.mounttable import find_mount, unmount
from hcsfs.naming import PlaneKey
from hcsfs.synthetic import cells_plane, write_imagexpress_plate

__all__ = ["NUCLEI_SPEC", "SCREEN_SPEC", "main", "write_demo_plates", "write_zarr_plate"]

PIXEL_SIZE_UM = 0.65
WELLS = ("A01", "A02", "A03", "B01", "B02", "B03")
SCREEN_SPEC = Path(__file__).resolve().parents[1] / "contrib" / "screen.yaml"
NUCLEI_SPEC = """\
# Segment the nuclei of channel 1: smooth, threshold, label; one row per nucleus in objects.csv.
select: {channel: [1]}
steps:
  - {func: gaussian_filter, args: {sigma: 2}}
  - {func: threshold_otsu}
  - {func: label, tables: [objects, object_counts]}
"""


def write_zarr_plate(path: Path) -> int:
    """An OME-Zarr HCS plate of nuclei-like planes (6 wells x 2 sites x 2 channels), via ``hcsfs convert``."""
    from hcsfs.convert import convert_plate
    from hcsfs.sources.memory import MemoryPlate

    plate = MemoryPlate(pixel_size_um=PIXEL_SIZE_UM, channel_names={1: "DAPI", 2: "GFP"}, name="demo")
    for index, well in enumerate(WELLS):
        for site in (1, 2):
            for channel in (1, 2):
                pixels = cells_plane(1000 + index * 10 + site, channel=channel)
                plate.add(PlaneKey(well, site, channel), pixels)
    convert_plate(plate, path)
    return len(plate)


def write_demo_plates(folder: Path) -> dict[str, Path]:
    """The two plates under ``folder`` (kept if already there): ``{"imagexpress": ..., "ome-zarr": ...}``."""
    plates = {"imagexpress": folder / "imagexpress", "ome-zarr": folder / "plate.ome.zarr"}
    if not (plates["imagexpress"] / "demo.HTD").exists():
        shutil.rmtree(plates["imagexpress"], ignore_errors=True)
        written = write_imagexpress_plate(plates["imagexpress"], wells=WELLS, pixel_size_um=PIXEL_SIZE_UM)
        print(f"demo: wrote a nested ImageXpress plate, {len(written)} planes and as many thumbnails: "
              f"{plates['imagexpress']}")
    if not plates["ome-zarr"].exists():
        try:
            count = write_zarr_plate(plates["ome-zarr"])
        except ImportError as exc:  # the zarr extra (make install has it)
            print(f"demo: no OME-Zarr plate ({exc}): pip install 'hcsfs[zarr]'")
            del plates["ome-zarr"]
        else:
            print(f"demo: wrote an OME-Zarr plate, {count} planes: {plates['ome-zarr']}")
    return plates


def _hcsfs(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hcsfs", *args], text=True, **kwargs)  # type: ignore[call-overload]


def _show_results(run_dir: Path) -> list[str]:
    lines = []
    wells = run_dir / "wells.csv"
    with open(wells, newline="") as file:
        rows = list(csv.DictReader(file))
    columns = ["well", "Count_nuclei", "AreaShape_Area_nuclei", "Intensity_MeanIntensity_GFP_nuclei"]
    shown = [c for c in columns if rows and c in rows[0]]
    lines.append(f"  {wells}  ({len(rows)} wells)")
    lines.append("    " + "  ".join(shown) + "  ...")
    for row in rows[:3]:
        lines.append("    " + "  ".join(row[c][:8].ljust(len(c)) for c in shown))
    rois = sorted((run_dir / "rois").glob("*.roi.zip"))
    heatmaps = sorted((run_dir / "heatmaps").glob("*.png"))
    lines.append(f"  {run_dir / 'rois'}/  ({len(rois)} ROI sets, e.g. {rois[0].name if rois else '-'})")
    lines.append(f"  {run_dir / 'heatmaps'}/  ({', '.join(p.name for p in heatmaps)})")
    lines.append(f"  {run_dir}/nuclei/ and cells/ (label planes), nuclei.csv, cells.csv, image.csv")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="where the plates and mounts go")
    parser.add_argument("--no-analysis", action="store_true", help="do not run contrib/screen.yaml")
    parser.add_argument("--unmount", action="store_true", help="unmount the demo's mounts and stop")
    args = parser.parse_args(argv)
    started = time.monotonic()
    folder = args.dir.absolute()
    mounts_dir = folder / "mnt"
    for mountpoint in (mounts_dir / "imagexpress", mounts_dir / "ome-zarr"):
        if find_mount(mountpoint) is not None:
            print(f"demo: {unmount(mountpoint)}")
    if args.unmount:
        return 0
    plates = write_demo_plates(folder)
    (folder / "nuclei.yaml").write_text(NUCLEI_SPEC)
    screen = folder / "screen.yaml"
    if SCREEN_SPEC.exists():
        shutil.copyfile(SCREEN_SPEC, screen)
    mounts: dict[str, Path] = {}
    for kind, plate in plates.items():
        mountpoint = mounts_dir / kind
        mountpoint.mkdir(parents=True, exist_ok=True)
        _hcsfs("mount", str(plate), str(mountpoint), "--outputs", str(folder / "outputs" / kind), "--xattrs",
               check=True)
        mounts[kind] = mountpoint
        summary = json.loads((mountpoint / ".hcsfs" / "plate.json").read_text())
        names = sorted(p.name for p in mountpoint.iterdir() if p.suffix == ".tif")
        print(f"demo: mounted {kind} on {mountpoint}: {summary['planes']} planes, wells "
              f"{summary['wells'][0]}..{summary['wells'][-1]}, sites {summary['sites']}, channels "
              f"{[c['name'] for c in summary['channels']]}, z {summary['z']}, t {summary['t']}; "
              f"{names[0]} ...")
    ixm = mounts["imagexpress"]
    results: list[str] = []
    if not args.no_analysis and screen.exists():
        done = _hcsfs("run", str(ixm), str(screen), "--wait", "--timeout", "300", capture_output=True)
        if done.returncode != 0:
            print(f"demo: the screen analysis failed:\n{done.stdout}{done.stderr}", file=sys.stderr)
            return 1
        results = _show_results(ixm / "screen")
    zarr = mounts.get("ome-zarr")
    plane = "A01_s001_w1_z001_t001.tif"
    hcsfs_cmd = f"{Path(sys.executable).parent}/hcsfs"
    print(f"""
Two mounts, one flat folder each (ImageXpress planes are served byte for byte; zarr planes are encoded on
read as TIFFs carrying the pixel size):
  ls {ixm} | head;  ls {zarr or '(no zarr mount)'} | head
  tiffinfo {ixm}/{plane}
  getfattr -d {ixm}/{plane}     # user.hcs.* attributes: well, site, ..., source_path
  cat {ixm}/.hcsfs/plate.json
  fiji {ixm}/.hcsfs/overview/w1.tif                  # the whole plate at a glance
  ls {folder / 'imagexpress'}/TimePoint_1/ZStep_1 | head -3  # the instrument's own names and thumbnails

Tables of the plate (pandas.read_csv, or CellProfiler's LoadData without any regex):
  {ixm}/.hcsfs/planes.csv     one row per plane: well, site, channel, z, t, shape, source file...
  {ixm}/.hcsfs/loaddata.csv   one row per image set: FileName_w1, PathName_w1, ..., Metadata_*
  cellprofiler -c -r -p contrib/hcsfs_loaddata.cppipe --data-file {ixm}/.hcsfs/loaddata.csv -o out/

The screen analysis (contrib/screen.yaml, docs/pipelines.md "Analysis specs": nuclei in DAPI, GFP
measured in nuclei and in the cells around them, compared per well):
  {hcsfs_cmd} run {ixm} {screen} --wait""")
    if results:
        print("  ... ran here; its results:")
        print("\n".join(results))
    else:
        print(f"  then: {ixm}/screen/wells.csv, {ixm}/screen/rois/*.roi.zip, {ixm}/screen/heatmaps/*.png")
    if zarr is not None:
        print(f"  the same on the zarr plate: {hcsfs_cmd} run {zarr} {screen} --wait;  ls {zarr}/screen/")
    print(f"""  fiji {ixm}/screen/rois/A01_s001_w1_z001_t001_nuclei.roi.zip     # one ROI per nucleus
  {hcsfs_cmd} status {ixm};  cat {ixm}/.pipelines/screen.status
A first pipeline of your own: {hcsfs_cmd} run {ixm} {folder / 'nuclei.yaml'} --wait;  ls {ixm}/nuclei/
When done:
  {sys.executable} -m hcsfs.demo --dir {folder} --unmount   # or: {hcsfs_cmd} unmount {ixm}
(demo ready in {time.monotonic() - started:.0f} s)""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
