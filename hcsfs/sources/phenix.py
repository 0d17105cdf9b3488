"""Opera Phenix / Operetta plates (Harmony exports) through their index file.

Harmony writes ``Index.idx.xml``, ``Index.ref.xml`` or ``Index.xml``, at the measurement root or in
``Images/``, listing every image with its ``URL`` (relative to the index), ``Row``, ``Col``, ``FieldID``,
``PlaneID``, ``TimepointID`` and ``ChannelID``. The XML namespace changes with the Harmony version
(``.../HarmonyV5``, ``.../HarmonyV6``, a GUID namespace in V7), so elements are matched by local name.
Harmony 7 moved the per-channel facts (name, resolution, size) from each ``Image`` to
``Maps/Map/Entry[@ChannelID]``; both places are read.

Flat names: Row/Col → well, FieldID → site, PlaneID → z, ChannelID → channel, TimepointID → t (shifted
to 1-based when the index counts from 0, as Harmony 5 does). ``site_order="raster"`` renumbers the
fields of each well top-left to bottom-right from their stage positions instead.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcsfs.errors import PlateFormatError
from hcsfs.naming import PlaneKey, format_well
from hcsfs.sources.fieldorder import raster_sites
from hcsfs.sources.workspace import PassthroughSource, WorkspaceBuilder

__all__ = ["INDEX_NAMES", "PhenixSource", "can_open", "find_index", "read_index"]

INDEX_NAMES = ("index.idx.xml", "index.ref.xml", "index.xml")
"""Index file names Harmony writes, in order of preference (matched in any case)."""

_CHANNEL_FIELDS = ("ChannelName", "ImageResolutionX", "ImageResolutionY", "ImageSizeX", "ImageSizeY")
_IMAGE_FIELDS = (
    "URL", "Row", "Col", "FieldID", "PlaneID", "TimepointID", "ChannelID", "PositionX", "PositionY",
    *_CHANNEL_FIELDS,
)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _index_in(folder: Path) -> Path | None:
    try:
        names = {entry.name.lower(): entry.name for entry in os.scandir(folder) if entry.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return None
    for wanted in INDEX_NAMES:
        if wanted in names:
            return folder / names[wanted]
    return None


def find_index(path: Path) -> Path | None:
    """The Harmony index for ``path``: the file itself, or one in ``path`` or its ``Images/``."""
    if path.is_file():
        return path if path.name.lower() in INDEX_NAMES else None
    found = _index_in(path)
    if found is not None:
        return found
    for images in ("Images", "images"):
        found = _index_in(path / images)
        if found is not None:
            return found
    return None


def can_open(path: Path) -> bool:
    """A Harmony index file (``Index.idx.xml``/``Index.ref.xml``/``Index.xml``) here or in ``Images/``."""
    return find_index(path) is not None


@dataclass(frozen=True, slots=True)
class IndexImage:
    """One ``Image`` entry of the index, with the fields hcsfs uses (text as written)."""

    fields: dict[str, str]

    def number(self, name: str) -> int:
        value = self.fields.get(name)
        if value is None or not value.strip().lstrip("-").isdigit():
            raise PlateFormatError(f"index image {self.fields.get('URL')!r}: {name} is {value!r}")
        return int(value)


@dataclass(frozen=True, slots=True)
class HarmonyIndex:
    """What hcsfs reads from a Harmony index."""

    path: Path
    namespace: str
    images: list[IndexImage]
    channels: dict[int, dict[str, str]]
    plate: dict[str, str]


def _image_fields(element: ET.Element) -> dict[str, str]:
    return {
        _local(child.tag): (child.text or "").strip()
        for child in element if _local(child.tag) in _IMAGE_FIELDS
    }


def read_index(path: Path) -> HarmonyIndex:
    """Stream-parse the index (it can hold a million images); clears each element once read."""
    images: list[IndexImage] = []
    channels: dict[int, dict[str, str]] = {}
    plate: dict[str, str] = {}
    namespace = ""
    stack: list[str] = []
    try:
        for event, element in ET.iterparse(path, events=("start", "end")):
            tag = _local(element.tag)
            if event == "start":
                if not stack:
                    namespace = element.tag[1:].partition("}")[0] if element.tag[0] == "{" else ""
                stack.append(tag)
                continue
            stack.pop()
            parent = stack[-1] if stack else ""
            if tag == "Image" and parent == "Images":
                images.append(IndexImage(_image_fields(element)))
                element.clear()
            elif tag == "Entry" and parent == "Map" and "ChannelID" in element.attrib:
                facts = {
                    _local(c.tag): (c.text or "").strip()
                    for c in element if _local(c.tag) in _CHANNEL_FIELDS
                }
                channels.setdefault(int(element.attrib["ChannelID"]), {}).update(facts)
                element.clear()
            elif parent == "Plate" and tag in ("PlateID", "Name", "PlateTypeName", "PlateRows",
                                                "PlateColumns", "MeasurementID"):
                plate[tag] = (element.text or "").strip()
            elif tag in ("Plate", "Map", "Well"):
                element.clear()
    except ET.ParseError as exc:
        raise PlateFormatError(f"{path}: not a readable Harmony index: {exc}") from exc
    except OSError as exc:
        raise PlateFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not images and not plate:
        raise PlateFormatError(f"{path}: no Plates or Images in this index")
    return HarmonyIndex(path, namespace, images, channels, plate)


def _channel_facts(index: HarmonyIndex) -> dict[int, dict[str, str]]:
    """Per-channel name/resolution/size: the V7 ``Maps`` first, then the first image of each channel."""
    facts = {channel: dict(values) for channel, values in index.channels.items()}
    for image in index.images:
        channel = image.number("ChannelID")
        known = facts.setdefault(channel, {})
        for name in _CHANNEL_FIELDS:
            if name not in known and image.fields.get(name):
                known[name] = image.fields[name]
    return facts


def _microns(value: str | None) -> float | None:
    # ImageResolutionX is in metres (Unit="m") in every Harmony version seen.
    try:
        return float(value) * 1e6 if value else None
    except ValueError:
        return None


def _resolve(url: str) -> str:
    """The image path relative to the index folder (an absolute URL keeps only its file name)."""
    if "://" in url or url.startswith(("/", "\\")) or ":" in url[:3]:
        return url.replace("\\", "/").rpartition("/")[2]
    return url.replace("\\", "/")


def _listing(folders: set[Path]) -> set[Path]:
    """Every file in the folders the index points into: one ``scandir`` each, no ``stat`` per image."""
    present: set[Path] = set()
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                present.update(folder / entry.name for entry in entries)
        except FileNotFoundError:
            continue
    return present


class PhenixSource(PassthroughSource):
    """An Opera Phenix / Operetta measurement, served as flat names by passthrough of its TIFFs."""

    format_name = "phenix"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        site_order: str = "field",
    ) -> None:
        if site_order not in ("field", "raster"):
            raise PlateFormatError(f"site_order must be 'field' or 'raster', not {site_order!r}")
        index_path = find_index(Path(path).resolve())
        if index_path is None:
            raise PlateFormatError(
                f"{path}: no Harmony index ({', '.join(INDEX_NAMES)}) here or in Images/"
            )
        index = read_index(index_path)
        root = index_path.parent
        facts = _channel_facts(index)
        sites = raster_sites(index.images, facts) if site_order == "raster" else None
        builder = WorkspaceBuilder(root)
        rel_paths = [(image, _resolve(image.fields.get("URL", ""))) for image in index.images]
        present = _listing({(root / rel).parent for _, rel in rel_paths})
        missing_first: tuple[PlaneKey, str] | None = None
        for _image, key, rel in self._keys(index, rel_paths, sites):
            if root / rel in present:
                builder.add(key, rel)
            else:
                builder.miss(key, rel)
                missing_first = missing_first or (key, rel)
        if strict and missing_first is not None:
            raise PlateFormatError(
                f"{index_path}: {len(builder.missing)} indexed images are missing "
                f"(first: {missing_first[1]} for {missing_first[0].name}); "
                "without --strict they are left out"
            )
        channel_names = {c: f["ChannelName"] for c, f in facts.items() if f.get("ChannelName")}
        sizes = {_microns(f.get("ImageResolutionX")) for f in facts.values()}
        pixel_size = sizes.pop() if len(sizes) == 1 else None  # channels that differ: per plane
        extra: dict[str, Any] = {
            "instrument": "Opera Phenix / Operetta (Harmony)",
            "index": str(index_path),
            "index_namespace": index.namespace,
            "plate_metadata": index.plate,
            "site_order": site_order,
            "channel_metadata": {
                str(c): {
                    "name": f.get("ChannelName"),
                    "pixel_size_um": _microns(f.get("ImageResolutionX")),
                    "pixel_size_y_um": _microns(f.get("ImageResolutionY")),
                    "image_size": [int(f["ImageSizeY"]), int(f["ImageSizeX"])]
                    if f.get("ImageSizeX") and f.get("ImageSizeY") else None,
                }
                for c, f in sorted(facts.items())
            },
        }
        super().__init__(
            builder.build(), channel_names=channel_names, pixel_size_um=pixel_size, extra=extra
        )
        self.index = index
        self._channel_pixel_sizes = {c: _microns(f.get("ImageResolutionX")) for c, f in facts.items()}

    def _plane_pixel_size(self, key: PlaneKey) -> float | None:
        # Channels can differ (binning); a channel's own resolution beats the plate's.
        own = self._channel_pixel_sizes.get(key.channel) if isinstance(key.channel, int) else None
        return own if own is not None else self.pixel_size_um()

    @staticmethod
    def _keys(
        index: HarmonyIndex,
        rel_paths: list[tuple[IndexImage, str]],
        sites: dict[tuple[int, int, int], int] | None,
    ) -> Iterator[tuple[IndexImage, PlaneKey, str]]:
        # Harmony 5 counts time points from 0, Harmony 7 from 1: shift when the index holds a 0.
        zero_based = {
            axis: any(image.number(axis) == 0 for image in index.images)
            for axis in ("FieldID", "PlaneID", "TimepointID", "ChannelID")
        }

        def one_based(image: IndexImage, axis: str) -> int:
            return image.number(axis) + (1 if zero_based[axis] else 0)

        for image, rel in rel_paths:
            row, col = image.number("Row"), image.number("Col")
            field = image.number("FieldID")
            site = sites[(row, col, field)] if sites is not None else one_based(image, "FieldID")
            key = PlaneKey(
                format_well(row, col), site, one_based(image, "ChannelID"),
                one_based(image, "PlaneID"), one_based(image, "TimepointID"),
            )
            yield image, key, rel
