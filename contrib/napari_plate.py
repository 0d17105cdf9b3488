"""View one well/site of an hcsfs mount in napari: channels as layers, z (and t) as sliders.

    python contrib/napari_plate.py /mnt/plate7 B03 2      # needs: pip install "napari[all]" tifffile

Only the planes of that site are read, with tifffile; channel names and the pixel size come from the
mount's ``.hcsfs/plate.json``. ``load_site`` works without napari (for scripts and notebooks).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import tifffile

_NAME = re.compile(r"(?P<well>[A-Z]{1,2}\d{2,})_s(?P<site>\d+)_w(?P<c>\d+)_z(?P<z>\d+)_t(?P<t>\d+)\.tif")


def load_site(mount: str | Path, well: str, site: int) -> tuple[np.ndarray, list[str], float | None]:
    """``(array [T, C, Z, Y, X], channel names, pixel size in microns)`` of one well/site."""
    mount = Path(mount)
    planes = {}
    for path in mount.iterdir():
        match = _NAME.fullmatch(path.name)
        if match and match["well"] == well and int(match["site"]) == site:
            planes[(int(match["t"]), int(match["c"]), int(match["z"]))] = path
    if not planes:
        raise FileNotFoundError(f"no planes of {well} site {site} in {mount}")
    ts, cs, zs = (sorted({key[i] for key in planes}) for i in range(3))
    first = tifffile.imread(next(iter(planes.values())))
    stack = np.zeros((len(ts), len(cs), len(zs), *first.shape), first.dtype)
    for (t, c, z), path in planes.items():
        stack[ts.index(t), cs.index(c), zs.index(z)] = tifffile.imread(path)
    plate = json.loads((mount / ".hcsfs" / "plate.json").read_text())
    names = {ch["index"]: ch.get("name") for ch in plate.get("channels", [])}
    return stack, [names.get(c) or f"w{c}" for c in cs], plate.get("pixel_size_um")


def main(argv: list[str]) -> None:
    import napari

    mount, well, site = argv[0], argv[1], int(argv[2]) if len(argv) > 2 else 1
    stack, names, pixel_size = load_site(mount, well, site)
    scale = (1, 1, pixel_size, pixel_size) if pixel_size else None  # per layer: T, Z, Y, X
    viewer = napari.Viewer(title=f"{well} site {site}")
    viewer.add_image(stack, channel_axis=1, name=names, scale=scale)
    napari.run()


if __name__ == "__main__":
    main(sys.argv[1:])
