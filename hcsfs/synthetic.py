"""Synthetic plates that look like the real thing, for ``make demo`` and the tests.

- MetaXpress (ImageXpress) folders: file names as MetaXpress writes them
  (``<plate>_<well>_s<site>_w<wave>[_thumb]<GUID>.tif``), ``TimePoint_<t>/ZStep_<z>/`` folders, thumbnails
  beside the planes, and a CRLF ``.HTD`` in cp1252 (:func:`ixm_name`, :func:`nested_relpaths`,
  :func:`htd_text`, :func:`write_imagexpress_plate`). Planes carry MetaMorph's ``<MetaData>`` description
  (illumination setting, spatial calibration) like the instrument's.
- Nuclei-like planes (:func:`cells_plane`): Gaussian blobs on a noisy background, a dimmer and wider
  "cytoplasm" in channel 2, so the demo's analysis finds nuclei and measures something.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["cells_plane", "guid", "htd_text", "ixm_name", "metamorph_description", "nested_relpaths",
           "write_htd", "write_imagexpress_plate"]


def cells_plane(seed: int, shape: tuple[int, int] = (256, 256), channel: int = 1) -> np.ndarray:
    """Nuclei-like Gaussian blobs on a dim background; channel 2 is a wider, dimmer 'cytoplasm' around
    the same nuclei (the same ``seed`` places them), with a brightness of its own per cell."""
    places = np.random.default_rng(seed)
    rng = np.random.default_rng([seed, channel])
    image = rng.normal(200, 20, shape)
    sigma, peak = (6.0, 3000.0) if channel == 1 else (14.0, 900.0)
    reach = int(4 * sigma)
    for _ in range(int(places.integers(12, 30))):
        cy, cx = places.uniform(0, shape[0]), places.uniform(0, shape[1])
        y0, y1 = max(0, int(cy) - reach), min(shape[0], int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(shape[1], int(cx) + reach + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]  # a blob's window: what it adds beyond 4 sigma is below 1e-3
        image[y0:y1, x0:x1] += peak * rng.uniform(0.6, 1.2) * np.exp(
            -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return np.clip(image, 0, 65535).astype(np.uint16)


def guid() -> str:
    return str(uuid.uuid4()).upper()


def ixm_name(prefix: str, well: str, site: int | None, wave: int | None, *, thumb: bool = False,
             with_guid: bool = True, ext: str = ".tif") -> str:
    """A MetaXpress file name; the GUID is glued to the wave number (or to ``_thumb``)."""
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
    """``(well, site, wave, z, t)`` → relative path of a nested plate; each plane's thumbnail is under
    ``(well, site, wave, z, -t)``."""
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
    """An HTD as MetaXpress writes it (CRLF line ends)."""
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


def metamorph_description(wave_name: str, pixel_size_um: float, z: int = 1, t: int = 1) -> str:
    """The ``<MetaData>`` XML MetaXpress writes into a plane's ImageDescription (the parts readers use)."""
    props = [("_IllumSetting_", "string", wave_name),
             ("spatial-calibration-x", "float", repr(pixel_size_um)),
             ("spatial-calibration-y", "float", repr(pixel_size_um)),
             ("spatial-calibration-units", "string", "um"),
             ("z-position", "float", f"{z * 2.0:.1f}"), ("timepoint", "int", str(t))]
    body = "".join(f'<prop id="{key}" type="{kind}" value="{value}"/>' for key, kind, value in props)
    return f"<MetaData>{body}</MetaData>"


def write_imagexpress_plate(
    root: Path,
    *,
    prefix: str = "demo",
    wells: Sequence[str] = ("A01", "A02", "A03", "B01", "B02", "B03"),
    sites: int = 2,
    wave_names: Sequence[str] = ("DAPI", "GFP"),
    timepoints: int = 2,
    zsteps: int = 2,
    shape: tuple[int, int] = (256, 256),
    pixel_size_um: float = 0.65,
    plane: Callable[[str, int, int, int, int], np.ndarray] | None = None,
) -> dict[tuple[str, int, int, int, int], Path]:
    """A nested MetaXpress plate under ``root``: ``TimePoint_<t>/ZStep_<z>/`` folders of GUID-named planes,
    a 4x-downscaled thumbnail beside each, and ``<prefix>.HTD``. ``plane(well, site, wave, z, t)`` gives
    the pixels (default: :func:`cells_plane`). Returns ``(well, site, wave, z, t)`` → the plane's file."""
    import tifffile

    from hcsfs.naming import parse_well

    def default_plane(well: str, site: int, wave: int, z: int, t: int) -> np.ndarray:
        row, column = parse_well(well)
        seed = ((row * 100 + column) * 100 + site) * 100 + t * 10 + z
        return cells_plane(seed, shape, wave)

    make = plane or default_plane
    pixels_of: dict[tuple[str, int, int, int, int], np.ndarray] = {}
    rows = max(parse_well(w)[0] for w in wells)
    columns = max(parse_well(w)[1] for w in wells)
    root.mkdir(parents=True, exist_ok=True)
    written: dict[tuple[str, int, int, int, int], Path] = {}
    for (well, site, wave, z, t), rel in nested_relpaths(prefix, wells, sites, len(wave_names), timepoints,
                                                          zsteps).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        field = (well, site, wave, z, abs(t))
        pixels = pixels_of.pop(field) if field in pixels_of else make(*field)
        if t > 0:
            pixels_of[field] = pixels  # its thumbnail comes next
        description = metamorph_description(wave_names[wave - 1], pixel_size_um, z, abs(t))
        if t < 0:  # the thumbnail of the plane above: a 4x downscale, as MetaXpress writes
            pixels = pixels[::4, ::4]
        tifffile.imwrite(path, pixels, description=description, software="MetaMorph 7.8.0.0",
                         photometric="minisblack", metadata=None)
        if t > 0:
            written[(well, site, wave, z, t)] = path
    write_htd(root / f"{prefix}.HTD", htd_text(
        max(rows, 8), max(columns, 12), wells=wells, sites=(sites, 1), wave_names=wave_names,
        timepoints=timepoints, zsteps=zsteps, description=f"{prefix}: synthetic nuclei (hcsfs demo)"))
    return written
