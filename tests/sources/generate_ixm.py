"""Generated ImageXpress (MetaXpress) plates for tests: real file-name shapes, pixels of our own.

Every plane is a tiny uncompressed 8x8 uint16 TIFF whose pixels encode a running number, so two files
never have the same bytes and a byte-for-byte comparison through the mount means something.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile

SAMPLES = Path(os.environ.get("HCSFS_SAMPLES", Path(__file__).resolve().parents[3] / "shared" / "samples")).resolve()
LISTING = SAMPLES / "imagexpress_listing" / "images.txt"

_SHAPE = (8, 8)


def _template() -> tuple[bytes, int]:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros(_SHAPE, np.uint16), description="hcsfs test plane")
    data = buffer.getvalue()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        offset = tif.pages.first.dataoffsets[0]
    return data, offset


_TEMPLATE, _OFFSET = _template()
_counter = 0


def plane_bytes(seed: int | None = None) -> bytes:
    """A valid single-plane TIFF whose pixels are all ``seed`` (a running number by default)."""
    global _counter
    if seed is None:
        _counter += 1
        seed = _counter
    pixels = np.full(_SHAPE, seed % 65536, np.uint16).tobytes()
    return _TEMPLATE[:_OFFSET] + pixels + _TEMPLATE[_OFFSET + len(pixels):]


def write_files(root: Path, relpaths: Iterable[str], content: bytes | None = None) -> list[Path]:
    """Create each file (and its folders); TIFF names get a unique plane, others ``content`` or b''."""
    written = []
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        is_tiff = rel.lower().endswith((".tif", ".tiff")) and not path.name.startswith("._")
        path.write_bytes(plane_bytes() if is_tiff else (content or b""))
        written.append(path)
    return written


def listing_names() -> list[str]:
    """The file names of the real MetaXpress listing (``imagexpress_listing/images.txt``)."""
    return [line.rsplit("/", 1)[-1] for line in LISTING.read_text().splitlines() if line.strip()]


def guid() -> str:
    return str(uuid.uuid4()).upper()


def ixm_name(prefix: str, well: str, site: int | None, wave: int | None, *, thumb: bool = False,
             with_guid: bool = True, ext: str = ".tif") -> str:
    name = f"{prefix}_{well}" if prefix else well
    name += f"_s{site}" if site is not None else ""
    name += f"_w{wave}" if wave is not None else ""
    name += "_thumb" if thumb else ""
    return name + (guid() if with_guid else "") + ext


def nested_relpaths(
    prefix: str,
    wells: Sequence[str],
    sites: int,
    waves: int,
    timepoints: int = 1,
    zsteps: int = 1,
    *,
    thumbs: bool = True,
    with_guid: bool = True,
    timepoint_dir: str = "TimePoint_{t}",
    zstep_dir: str = "ZStep_{z}",
) -> dict[tuple[str, int, int, int, int], str]:
    """``(well, site, wave, z, t)`` → relative path of a nested plate; thumbnails added beside."""
    paths: dict[tuple[str, int, int, int, int], str] = {}
    for t in range(1, timepoints + 1):
        for z in range(1, zsteps + 1):
            folder = timepoint_dir.format(t=t) + "/" if timepoints > 1 or zsteps > 1 else ""
            folder += zstep_dir.format(z=z) + "/" if zsteps > 1 else ""
            for well in wells:
                for site in range(1, sites + 1):
                    for wave in range(1, waves + 1):
                        name = ixm_name(prefix, well, site, wave, with_guid=with_guid)
                        paths[(well, site, wave, z, t)] = folder + name
                        if thumbs:
                            paths[(well, site, wave, z, -t)] = folder + ixm_name(
                                prefix, well, site, wave, thumb=True, with_guid=with_guid
                            )
    return paths


def htd_text(
    rows: int,
    columns: int,
    *,
    wells: Iterable[str] | None = None,
    sites: tuple[int, int] | None = (1, 1),
    site_selection: Sequence[Sequence[bool]] | None = None,
    wave_names: Sequence[str] = ("DAPI",),
    wave_collect: Sequence[int] | None = None,
    timepoints: int = 1,
    zsteps: int = 1,
    description: str = "hcsfs test plate",
) -> str:
    """An HTD as MetaXpress writes it (join with CRLF when writing)."""
    from hcsfs.naming import format_well

    selected = set(wells) if wells is not None else None
    lines = ['"HTSInfoFile", Version 1.0', f'"Description", "{description}"', '"PlateType", 6',
             f'"TimePoints", {timepoints}', f'"ZSeries", {"TRUE" if zsteps > 1 else "FALSE"}',
             f'"ZSteps", {zsteps}', '"ZProjection", FALSE', f'"XWells", {columns}', f'"YWells", {rows}']
    for r in range(1, rows + 1):
        cells = [selected is None or format_well(r, c) in selected for c in range(1, columns + 1)]
        lines.append(f'"WellsSelection{r}", ' + ", ".join("TRUE" if v else "FALSE" for v in cells))
    if sites is None:
        lines.append('"Sites", FALSE')
    else:
        x_sites, y_sites = sites
        lines += ['"Sites", TRUE', f'"XSites", {x_sites}', f'"YSites", {y_sites}']
        grid = site_selection or [[True] * x_sites for _ in range(y_sites)]
        for r, line in enumerate(grid, start=1):
            lines.append(f'"SiteSelection{r}", ' + ", ".join("TRUE" if v else "FALSE" for v in line))
    lines += ['"Waves", TRUE', f'"NWavelengths", {len(wave_names)}']
    collect = wave_collect or [1] * len(wave_names)
    for w, (name, flag) in enumerate(zip(wave_names, collect, strict=True), start=1):
        lines += [f'"WaveName{w}", "{name}"', f'"WaveCollect{w}", {flag}']
    lines += ['"UniquePlateIdentifier", "5C4A1D2E-0000-4000-8000-000000000001"', '"EndFile"']
    return "\r\n".join(lines) + "\r\n"


def write_htd(path: Path, text: str, encoding: str = "cp1252") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def tree_digest(root: Path) -> str:
    """One hash over every file's relative path, size, mtime and bytes (and every folder's name)."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        digest.update(os.path.relpath(folder, root).encode() + b"/\0")
        for name in sorted(files):
            path = Path(folder, name)
            stat = path.stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
