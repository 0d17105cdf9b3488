"""Fast generation of big OME-Zarr v0.5 plates for the benchmarks (metadata written once).

Writing 7,035 positions through a library that rewrites the plate document per position is quadratic.
Here one reference field image is written with hcsfs's own writer, its array/image/well documents are
copied for every well, each well's single chunk is encoded directly with numcodecs, and the plate
document is written once at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from hcsfs.naming import format_well, row_letters
from hcsfs.sinks.zarr import OmeZarrPlateWriter, ZarrWriteOptions


def wells_for(count: int) -> list[tuple[int, int]]:
    """``count`` (row, column) pairs on a near-square grid (7,035 → 67 rows x 105 columns)."""
    columns = 105 if count > 1536 else (12 if count <= 96 else 24 if count <= 384 else 48)
    rows = -(-count // columns)
    return [(r, c) for r in range(1, rows + 1) for c in range(1, columns + 1)][:count]


def write_positions_plate(root: Path, count: int, shape: tuple[int, int] = (128, 128), seed: int = 0) -> Path:
    """A v0.5 plate of ``count`` wells, one field, one 2-D ``uint16`` plane each, zstd, one chunk."""
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    reference = root.with_name(root.name + ".ref")
    shutil.rmtree(reference, ignore_errors=True)
    writer = OmeZarrPlateWriter(reference, ZarrWriteOptions(compressor="zstd", level=1))
    writer.create_field("A01", 1, (1, 1, 1, *shape), "u2", channel_names=["DAPI"], pixel_size_um=0.65)
    writer.finish()
    image_doc = (reference / "A" / "1" / "0" / "zarr.json").read_bytes()
    array_doc = (reference / "A" / "1" / "0" / "0" / "zarr.json").read_bytes()
    well_doc = (reference / "A" / "1" / "zarr.json").read_bytes()
    plate_doc = json.loads((reference / "zarr.json").read_text())
    shutil.rmtree(reference)

    import numcodecs

    codec = numcodecs.Zstd(level=1)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 4000, shape, dtype="<u2")
    wells = wells_for(count)
    root.mkdir(parents=True)
    for row in sorted({r for r, _ in wells}):
        (root / row_letters(row)).mkdir()
        (root / row_letters(row) / "zarr.json").write_text(
            '{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    entries = []
    for index, (row, column) in enumerate(wells):
        well = root / row_letters(row) / str(column)
        array = well / "0" / "0"
        (array / "c" / "0" / "0" / "0" / "0").mkdir(parents=True)
        (well / "zarr.json").write_bytes(well_doc)
        (well / "0" / "zarr.json").write_bytes(image_doc)
        (array / "zarr.json").write_bytes(array_doc)
        plane = base.copy()
        plane[0, : min(8, shape[1])] = index  # every position differs
        (array / "c" / "0" / "0" / "0" / "0" / "0").write_bytes(codec.encode(plane))
        entries.append({"path": f"{row_letters(row)}/{column}", "rowIndex": row - 1, "columnIndex": column - 1})
    plate = plate_doc["attributes"]["ome"]["plate"]
    rows = sorted({r for r, _ in wells})
    columns = sorted({c for _, c in wells})
    plate["rows"] = [{"name": row_letters(r)} for r in rows]
    plate["columns"] = [{"name": str(c)} for c in columns]
    plate["wells"] = entries
    plate["name"] = f"bench-{count}"
    (root / "zarr.json").write_text(json.dumps(plate_doc))
    marker.touch()
    return root


def well_names(count: int) -> list[str]:
    return [format_well(r, c) for r, c in wells_for(count)]


def well_paths(count: int) -> list[str]:
    return [f"{row_letters(r)}/{c}" for r, c in wells_for(count)]
