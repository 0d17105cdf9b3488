"""One well/site of an hcsfs mount as an array, and the napari plugin opened at that well and site.

    python contrib/napari_plate.py /mnt/plate7 B03 2      # needs: pip install "hcsfs[napari]"

The viewer is hcsfs's napari plugin (``hcsfs/napari/``; ``hcsfs view /mnt/plate7`` and
``napari /mnt/plate7`` open it too): every well lazily, the whole-plate montage, runs' labels and tables,
the plate widget. ``load_site`` reads the planes of one site with tifffile and works without napari
(for scripts and notebooks); channel names and the pixel size come from ``.hcsfs/plate.json``.
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
    """Open the mount in hcsfs's napari plugin, showing ``well`` and ``site``."""
    import napari

    from hcsfs.napari.app import open_viewer

    mount, well, site = argv[0], argv[1], int(argv[2]) if len(argv) > 2 else 1
    _viewer, widget = open_viewer(mount)
    widget.well.setCurrentText(well)
    widget.site.setCurrentText(str(site))
    napari.run()


if __name__ == "__main__":
    main(sys.argv[1:])
