"""Hand-made OME-Zarr stores for tests: OpenHCS's layout, multiple acquisitions, odd axes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore


def _group(node: Path, attrs: dict[str, Any], zarr_format: int) -> None:
    node.mkdir(parents=True, exist_ok=True)
    if zarr_format == 3:
        doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
        (node / "zarr.json").write_text(json.dumps(doc))
    else:
        (node / ".zgroup").write_text('{"zarr_format": 2}')
        (node / ".zattrs").write_text(json.dumps(attrs))


def _array(node: Path, data: np.ndarray, zarr_format: int, chunks: Sequence[int] | None = None,
           attrs: dict[str, Any] | None = None) -> None:
    kwargs: dict[str, Any] = {}
    if zarr_format == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    array = zarr.create_array(store=LocalStore(node), shape=data.shape, dtype=data.dtype,
                              chunks=tuple(chunks or data.shape), zarr_format=zarr_format,
                              attributes=attrs or {}, **kwargs)
    array[...] = data


def write_plate(root: Path, wells: dict[str, list[dict[str, Any]]], *, zarr_format: int = 3,
                version_in_plate: bool = False, acquisitions: list[dict[str, Any]] | None = None) -> None:
    """``wells``: ``{"B/3": [{"data": array, "axes": "czyx", "acquisition": 1, "scale": 0.5,
    "channels": ["DAPI"], "chunks": (...), "attrs": {...}}, ...]}``."""
    rows = sorted({p.split("/")[0] for p in wells})
    cols = sorted({p.split("/")[1] for p in wells}, key=int)
    ome_version = "0.5" if zarr_format == 3 else "0.4"
    plate: dict[str, Any] = {
        "rows": [{"name": r} for r in rows], "columns": [{"name": c} for c in cols],
        "wells": [{"path": p, "rowIndex": rows.index(p.split("/")[0]),
                   "columnIndex": cols.index(p.split("/")[1])} for p in wells],
    }
    if acquisitions:
        plate["acquisitions"] = acquisitions
    if version_in_plate or zarr_format == 2:
        plate["version"] = ome_version
    _group(root, _ome({"plate": plate}, zarr_format, version_in_plate), zarr_format)
    for path, images in wells.items():
        entries = []
        for i, image in enumerate(images):
            entry: dict[str, Any] = {"path": str(i)}
            if "acquisition" in image:
                entry["acquisition"] = image["acquisition"]
            entries.append(entry)
            axes = [{"name": a, "type": {"t": "time", "c": "channel"}.get(a, "space")}
                    for a in image["axes"]]
            for axis in axes:
                if axis["name"] in "yx" and image.get("scale") is not None:
                    axis["unit"] = "micrometer"
                if axis["name"] == "field":
                    axis["type"] = "field"
            scale = [1.0] * len(axes)
            scale[-1] = scale[-2] = image.get("scale") or 1.0
            attrs: dict[str, Any] = {"multiscales": [{
                "axes": axes, "version": ome_version,
                "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
            }]}
            if image.get("channels"):
                attrs["omero"] = {"channels": [{"label": n} for n in image["channels"]]}
            node = root / path / str(i)
            _group(node, _ome(attrs, zarr_format, False), zarr_format)
            _array(node / "0", image["data"], zarr_format, image.get("chunks"), image.get("attrs"))
        _group(root / path, _ome({"well": {"images": entries}}, zarr_format, False), zarr_format)


def _ome(attrs: dict[str, Any], zarr_format: int, version_in_plate: bool) -> dict[str, Any]:
    if zarr_format == 2:
        return attrs
    return {"ome": attrs if version_in_plate else {"version": "0.5", **attrs}}


def chunk_files(array_dir: Path) -> list[Path]:
    """The chunk (or shard) files of an array folder."""
    return sorted(p for p in array_dir.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr.json")))
