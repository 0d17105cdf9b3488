"""ImageXpress / MetaXpress plates: nested instrument folders mapped to one flat workspace.

On disk (see ``docs/formats.md``)::

    plate/                        <plate>.HTD (optional; the ground truth when present)
      [TimePoint_<t>/]            t, 1-based; folder names in any case, "_", "-" or nothing before <t>
        [ZStep_<z>/]              z, 1-based; files beside ZStep folders are the instrument's projection
          <prefix>_<well>[_s<site>][_w<wave>][_thumb][<GUID> | _[<GUID>]].tif

and the newer MetaXpress Acquire layout, 0-based:
``timepoint<t>/<project>_t<t>_<well>_s<site>_w<wave>_z<z>.tif``.

Opening walks those folders once (names only, no ``stat``), parses every name right to left and keeps
the mapping in memory (:mod:`hcsfs.sources.workspace`). Thumbnails and junk are left out and listed;
with an HTD, files outside what it describes are left out too and what it promises but is absent is
listed as missing (never invented).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcsfs.errors import PlaneNameError, PlateFormatError
from hcsfs.naming import PlaneKey, format_well, parse_name, row_index
from hcsfs.sources.htd import Htd, find_htd, read_htd
from hcsfs.sources.workspace import PassthroughSource, WorkspaceBuilder

__all__ = ["ImageXpressSource", "IxmName", "can_open", "parse_ixm_name"]

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# Right to left: extension, GUID (glued, or "_[GUID]"), "_thumb", "_w<wave>", "_s<site>", the well.
# The prefix is lazy, so a well-like token inside it ("_C2_") is passed over unless everything after
# it is a well-formed tail; a greedy prefix would read the "w1" of a glued "_w1<GUID>" as a well.
_CLASSIC = re.compile(
    r"^(?:(?P<prefix>.*?)_)??(?P<row>[A-Za-z]{1,2})(?P<col>\d{1,3})(?:_s(?P<site>\d+))?"
    rf"(?:_w(?P<wave>\d+))?(?P<thumb>_thumb)?(?P<guid>_?\[{_GUID}\]|{_GUID})?\.tiff?$",
    re.IGNORECASE,
)
_ACQUIRE = re.compile(
    r"^(?P<prefix>.*)_t(?P<t>\d+)_(?P<row>[A-Za-z]{1,2})(?P<col>\d{1,3})"
    r"_s(?P<site>\d+)_w(?P<wave>\d+)_z(?P<z>\d+)(?P<thumb>_thumb)?\.tiff?$",
    re.IGNORECASE,
)
_TIMEPOINT_DIR = re.compile(r"timepoint[_-]?(\d+)$", re.IGNORECASE)
_ZSTEP_DIR = re.compile(r"zstep[_-]?(\d+)$", re.IGNORECASE)
_JUNK = ("thumbs.db", "desktop.ini", ".ds_store")

PROJECTION = "proj"
"""The z of a plane the instrument stored beside its ``ZStep`` folders (its own z projection)."""


@dataclass(frozen=True, slots=True)
class IxmName:
    """One MetaXpress file name, parsed. ``t``/``z`` are set only by names that carry them (Acquire)."""

    prefix: str
    well: str
    site: int | None
    wave: int | None
    thumb: bool
    guid: bool
    t: int | None = None
    z: int | None = None


@functools.lru_cache(maxsize=4096)
def _well(letters: str, column: str) -> str:
    return format_well(row_index(letters.upper()), int(column))


def _parse_acquire(name: str) -> IxmName | None:
    match = _ACQUIRE.match(name)
    if match is None:
        return None
    # Acquire counts from 0 (timepoint0, _s0, _w0, _z0); hcsfs counts from 1.
    return IxmName(
        prefix=match["prefix"], well=_well(match["row"], match["col"]),
        site=int(match["site"]) + 1, wave=int(match["wave"]) + 1, thumb=bool(match["thumb"]),
        guid=False, t=int(match["t"]) + 1, z=int(match["z"]) + 1,
    )


def parse_ixm_name(name: str) -> IxmName | None:
    """Parse a MetaXpress plane file name right to left; ``None`` when it is not one.

    Extension, then a GUID (glued to what precedes it, or ``_[GUID]``), ``_thumb``, ``_w<wave>``,
    ``_s<site>``, the well, and whatever is left is the plate prefix (it may hold ``_`` and
    well-like tokens such as ``_C2_``).
    """
    if name.startswith("._"):
        return None
    match = _CLASSIC.match(name)
    if match is None:
        return _parse_acquire(name)
    if match["row"] in ("z", "Z") and not match["site"] and not match["wave"]:
        # "<project>_t<t>_<well>_s<s>_w<w>_z<z>": the classic reading takes "z<z>" for the well
        acquire = _parse_acquire(name)
        if acquire is not None:
            return acquire
    try:
        well = _well(match["row"], match["col"])
    except PlaneNameError:
        return None
    return IxmName(
        prefix=match["prefix"] or "", well=well,
        site=int(match["site"]) if match["site"] else None,
        wave=int(match["wave"]) if match["wave"] else None,
        thumb=match["thumb"] is not None, guid=match["guid"] is not None,
    )


def _looks_like_metaxpress(name: str) -> bool:
    """A name only MetaXpress writes: parses, carries a site/wave/GUID, and is not a flat name."""
    parsed = parse_ixm_name(name)
    if parsed is None or not (parsed.site or parsed.wave or parsed.guid):
        return False
    try:
        parse_name(name)
    except PlaneNameError:
        return True
    return False


def can_open(path: Path) -> bool:
    """An HTD, a ``TimePoint_<n>`` folder, or MetaXpress-named TIFFs (looks at 200 names at most)."""
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:
        for count, entry in enumerate(entries):
            if count >= 200:
                break
            name = entry.name
            if name.lower().endswith(".htd") and not name.startswith("._"):
                return True
            if _TIMEPOINT_DIR.match(name) and entry.is_dir():
                return True
            if _looks_like_metaxpress(name):
                return True
    return False


class _Walker:
    """Walks the plate's folders once and feeds a :class:`WorkspaceBuilder`."""

    def __init__(self, root: Path, htd: Htd | None, builder: WorkspaceBuilder) -> None:
        self.root = root
        self.htd = htd
        self.builder = builder
        self.prefixes: set[str] = set()
        self.timepoint_folders = False

    def walk(self) -> None:
        self._folder("", t=1, z=1, depth=0)

    def _folder(self, relpath: str, t: int, z: int | str, depth: int) -> None:
        files: list[str] = []
        zsteps: list[tuple[str, int]] = []
        with os.scandir(self.root / relpath if relpath else self.root) as entries:
            for entry in entries:
                rel = f"{relpath}/{entry.name}" if relpath else entry.name
                if entry.is_dir():
                    tp, zs = _TIMEPOINT_DIR.match(entry.name), _ZSTEP_DIR.match(entry.name)
                    if tp and depth == 0:
                        self.timepoint_folders = True
                        self._folder(rel, t=int(tp[1]), z=1, depth=1)
                    elif zs and depth < 2:
                        zsteps.append((rel, int(zs[1])))
                    else:
                        self.builder.skip(rel + "/", "folder outside the ImageXpress layout")
                else:
                    files.append(rel)
        for rel, zstep in zsteps:
            self._folder(rel, t=t, z=zstep, depth=2)
        # Files beside ZStep folders are the instrument's projection of those steps.
        z_here: int | str = PROJECTION if zsteps and depth < 2 else z
        for rel in files:
            self._file(rel, t, z_here)

    def _file(self, relpath: str, t: int, z: int | str) -> None:
        name = relpath.rpartition("/")[2]
        parsed = parse_ixm_name(name)
        if parsed is None:
            if name.lower().endswith(".htd") and "/" not in relpath:
                return  # the plate's own metadata, not junk
            reason = "junk file" if name.lower() in _JUNK or name.startswith("._") else (
                "not an ImageXpress plane name"
            )
            self.builder.skip(relpath, reason)
            return
        if parsed.thumb:
            self.builder.skip(relpath, "thumbnail")
            return
        key_t = parsed.t if parsed.t is not None else t
        key_z = parsed.z if parsed.z is not None else z
        key = PlaneKey(parsed.well, parsed.site or 1, parsed.wave or 1, key_z, key_t)
        outside = self._outside_htd(key)
        if outside:
            self.builder.skip(relpath, outside)
            return
        self.prefixes.add(parsed.prefix)
        self.builder.add(key, relpath)

    def _outside_htd(self, key: PlaneKey) -> str | None:
        htd = self.htd
        if htd is None:
            return None
        if key.well not in htd.wells:
            return f"well {key.well} is not selected in {htd.path.name if htd.path else 'the HTD'}"
        if isinstance(key.site, int) and key.site > htd.sites:
            return f"site {key.site} is beyond the HTD's {htd.sites} sites"
        if key.channel not in htd.waves:
            return f"wavelength {key.channel} is not collected according to the HTD"
        if isinstance(key.t, int) and key.t > htd.timepoints:
            return f"time point {key.t} is beyond the HTD's {htd.timepoints}"
        if isinstance(key.z, int) and key.z > htd.zsteps:
            return f"z step {key.z} is beyond the HTD's {htd.zsteps}"
        return None


def _missing(
    htd: Htd, present: Iterable[PlaneKey], prefix: str, timepoint_folders: bool
) -> Iterator[tuple[PlaneKey, str]]:
    """Planes the HTD promises that no file provides, with the classic path each would have."""
    have = {(k.well, k.site, k.channel, k.z, k.t) for k in present}
    for well in sorted(htd.wells):
        for site in range(1, htd.sites + 1):
            for wave in htd.waves:
                for t in range(1, htd.timepoints + 1):
                    for z in range(1, htd.zsteps + 1):
                        if (well, site, wave, z, t) in have:
                            continue
                        folder = f"TimePoint_{t}/" if timepoint_folders else ""
                        folder += f"ZStep_{z}/" if htd.zsteps > 1 else ""
                        name = f"{prefix}_{well}" if prefix else well
                        name += f"_s{site}" if htd.has_sites else ""
                        name += f"_w{wave}" if htd.has_waves else ""
                        yield PlaneKey(well, site, wave, z, t), f"{folder}{name}*.tif"


class ImageXpressSource(PassthroughSource):
    """A MetaXpress plate folder, served as flat names by passthrough of its TIFFs."""

    format_name = "imagexpress"

    def __init__(
        self, path: str | os.PathLike[str], *, strict: bool = False, site_order: str = "field"
    ) -> None:
        if site_order != "field":
            raise PlateFormatError(
                f"site_order {site_order!r}: ImageXpress sites keep the instrument's numbering "
                "(raster renumbering applies to Phenix fields only)"
            )
        root = Path(path).resolve()
        if not root.is_dir():
            raise PlateFormatError(f"{root}: an ImageXpress plate is a folder")
        htd_path = find_htd(root)
        htd = read_htd(htd_path) if htd_path else None
        builder = WorkspaceBuilder(root)
        walker = _Walker(root, htd, builder)
        walker.walk()
        if htd is not None:
            prefix = min(walker.prefixes) if len(walker.prefixes) == 1 else "*"
            for key, relpath in _missing(htd, builder.planes, prefix, walker.timepoint_folders):
                builder.miss(key, relpath)
        if strict and builder.missing:
            first = builder.missing[0]
            raise PlateFormatError(
                f"{root}: {len(builder.missing)} planes the HTD promises are missing "
                f"(first: {first['name']} from {first['path']}); without --strict they are left out"
            )
        workspace = builder.build()
        if not workspace.planes and htd is None:
            raise PlateFormatError(f"{root}: no ImageXpress planes found")
        channel_names = {w: name for w, name in (htd.waves if htd else {}).items() if name}
        extra: dict[str, Any] = {"instrument": "ImageXpress (MetaXpress)"}
        if htd is not None:
            extra.update(htd.plate_extra())
        super().__init__(
            workspace, channel_names=channel_names, extra=extra,
            # Without WaveName<w>, MetaXpress planes still name their illumination setting.
            probe_channel_names=any(not n for n in (htd.waves if htd else {0: ""}).values()),
        )
        self.htd = htd
