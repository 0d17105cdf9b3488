"""Yokogawa CellVoyager measurement files: where they are, and what the ``.mlf``, ``.mrf`` and ``.mes`` say.

A measurement folder (CV7000, CV8000, CQ1) holds one image file per plane plus::

    MeasurementData.mlf     one <MeasurementRecord> per image: Type (IMG, ERR), Row, Column, TimePoint,
                            FieldIndex, ZIndex, TimelineIndex, ActionIndex, Action, Ch, X, Y, Z, Time;
                            the element's text is the image's file name (ERR: an error message)
    MeasurementDetail.mrf   plate RowCount/ColumnCount, counts, and one <MeasurementChannel> per Ch:
                            pixel size (um), camera width/height in pixels, InputBitDepth
    <setting>.mes           the measurement setting the .mrf names: <ChannelList><Channel Ch Target ...>

All three are XML in the ``http://www.yokogawa.co.jp/BTS/BTSSchema/1.0`` namespace (prefix ``bts:``).
The ``.mlf`` can hold millions of records, so it is read in one streaming pass with expat, keeping a
small tuple per record; the other two are small and read whole. Nothing here imports numpy or tifffile:
:func:`can_open` is a detection sniffer.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from xml.parsers import expat

from hcsfs.errors import PlateFormatError

__all__ = [
    "MLF_NAME",
    "MRF_NAME",
    "ChannelGeometry",
    "ErrorRecord",
    "ImageRecord",
    "Measurement",
    "MeasurementData",
    "MeasurementDetail",
    "can_open",
    "find_measurements",
    "read_mlf",
    "read_mrf",
    "read_setting_channels",
]

log = logging.getLogger(__name__)

MLF_NAME = "MeasurementData.mlf"
MRF_NAME = "MeasurementDetail.mrf"
_NAMES = (MLF_NAME, MRF_NAME)
_READ_BLOCK = 1 << 20


# -- finding a measurement ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement folder: its ``.mlf`` and ``.mrf`` (image file names are relative to it)."""

    folder: Path
    mlf: Path
    mrf: Path


def _pair_in(folder: Path, listing: dict[str, tuple[str, bool]] | None = None) -> Measurement | None:
    """The measurement files in ``folder``: exact names first (two ``stat``), else any case."""
    exact = [folder / name for name in _NAMES]
    if all(path.is_file() for path in exact):
        return Measurement(folder, exact[0], exact[1])
    if listing is None:
        return None
    found = [listing.get(name.lower()) for name in _NAMES]
    if found[0] is None or found[1] is None or found[0][1] or found[1][1]:
        return None
    return Measurement(folder, folder / found[0][0], folder / found[1][0])


def find_measurements(path: Path) -> list[Measurement]:
    """Measurements at ``path``: the ``.mlf`` itself, its folder, or the folders one level down.

    The folder itself wins; only when it holds none are its subfolders looked at (two ``stat`` each;
    the image folders themselves are not listed), in name order. One ``scandir``, no ``stat`` per file:
    this is a detection sniffer, run on folders of 100,000 files.
    """
    if path.is_file():
        if path.name.lower() != MLF_NAME.lower():
            return []
        found = _pair_in(path.parent, _listing(path.parent))
        return [found] if found is not None else []
    listing = _listing(path)
    if listing is None:
        return []
    here = _pair_in(path, listing)
    if here is not None:
        return [here]
    below = []
    for name, is_dir in sorted(listing.values()):
        if is_dir:
            found = _pair_in(path / name, None)
            if found is not None:
                below.append(found)
    return below


def _listing(folder: Path) -> dict[str, tuple[str, bool]] | None:
    """Lower-cased name → (name, is a folder), from one ``scandir`` (its d_type, no ``stat``)."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name.lower(): (entry.name, entry.is_dir()) for entry in entries}
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


def can_open(path: Path) -> bool:
    """``MeasurementData.mlf`` and ``MeasurementDetail.mrf`` here or one folder down (or the .mlf)."""
    return bool(find_measurements(path))


# -- MeasurementDetail.mrf and the .mes ---------------------------------------------------------

def _local(name: str) -> str:
    return name.rpartition("}")[2].rpartition(":")[2]


def _attributes(element: ET.Element) -> dict[str, str]:
    return {_local(k): v for k, v in element.attrib.items()}


def _number(value: str | None, kind: type[int] | type[float]) -> int | float | None:
    if value is None or not value.strip():
        return None
    try:
        return kind(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ChannelGeometry:
    """One ``<MeasurementChannel>`` of the ``.mrf``: how camera channel ``ch`` is imaged."""

    ch: int
    pixel_size_um: float | None
    pixel_size_y_um: float | None
    width: int | None
    height: int | None
    bit_depth: int | None
    attributes: dict[str, str] = field(repr=False)

    @property
    def dtype(self) -> str | None:
        """The sample type of this channel's images: 8 bits or less are uint8, up to 16 uint16."""
        if self.bit_depth is None or not 1 <= self.bit_depth <= 16:
            return None
        return "uint8" if self.bit_depth <= 8 else "uint16"


@dataclass(frozen=True, slots=True)
class MeasurementDetail:
    """What the ``.mrf`` says about the plate and its channels."""

    path: Path
    attributes: dict[str, str]
    plate: dict[str, str]
    channels: dict[int, ChannelGeometry]

    def count(self, name: str) -> int | None:
        value = _number(self.attributes.get(name), int)
        return int(value) if value is not None else None

    @property
    def rows(self) -> int | None:
        return self.count("RowCount")

    @property
    def columns(self) -> int | None:
        return self.count("ColumnCount")

    @property
    def setting_file(self) -> str | None:
        return self.attributes.get("MeasurementSettingFileName") or None


def _read_xml(path: Path, what: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise PlateFormatError(f"{path}: not a readable {what}: {exc}") from exc
    except OSError as exc:
        raise PlateFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _geometry(attributes: dict[str, str], path: Path) -> ChannelGeometry:
    ch = _number(attributes.get("Ch"), int)
    if ch is None:
        raise PlateFormatError(f"{path}: a MeasurementChannel has no Ch number: {attributes}")

    def integer(name: str) -> int | None:
        value = _number(attributes.get(name), int)
        return int(value) if value is not None else None

    def real(name: str) -> float | None:
        value = _number(attributes.get(name), float)
        return float(value) if value is not None and value > 0 else None

    return ChannelGeometry(
        ch=int(ch), pixel_size_um=real("HorizontalPixelDimension"),
        pixel_size_y_um=real("VerticalPixelDimension"), width=integer("HorizontalPixels"),
        height=integer("VerticalPixels"), bit_depth=integer("InputBitDepth"), attributes=attributes,
    )


def read_mrf(path: Path) -> MeasurementDetail:
    """Parse ``MeasurementDetail.mrf`` (a UTF-8 byte-order mark is fine)."""
    root = _read_xml(path, "MeasurementDetail.mrf")
    if _local(root.tag) != "MeasurementDetail":
        raise PlateFormatError(f"{path}: root element is <{_local(root.tag)}>, not <MeasurementDetail>")
    plate: dict[str, str] = {}
    channels: dict[int, ChannelGeometry] = {}
    for child in root:
        tag = _local(child.tag)
        if tag == "MeasurementSamplePlate":
            plate = _attributes(child)
        elif tag == "MeasurementChannel":
            geometry = _geometry(_attributes(child), path)
            channels.setdefault(geometry.ch, geometry)
    return MeasurementDetail(path, _attributes(root), plate, channels)


def read_setting_channels(path: Path) -> dict[int, dict[str, str]]:
    """``Ch`` → attributes of each ``<ChannelList><Channel>`` of a ``.mes`` (``Target``: its name).

    The setting file is optional: an unreadable one is a warning, and channels stay unnamed.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        log.warning("%s: measurement setting not readable, channels stay unnamed: %s", path, exc)
        return {}
    channels: dict[int, dict[str, str]] = {}
    for channel_list in root.iter():
        if _local(channel_list.tag) != "ChannelList":
            continue
        for channel in channel_list:
            if _local(channel.tag) != "Channel":
                continue
            attributes = _attributes(channel)
            ch = _number(attributes.get("Ch"), int)
            if ch is not None:
                channels.setdefault(int(ch), attributes)
    return channels


# -- MeasurementData.mlf ------------------------------------------------------------------------

class ImageRecord(NamedTuple):
    """One ``Type="IMG"`` record: the plane it names (1-based indexes) and the file holding it."""

    row: int
    column: int
    field: int
    z: int
    timepoint: int
    timeline: int
    action: int
    ch: int
    file: str
    x: float | None
    y: float | None
    z_um: float | None
    time: str | None
    action_kind: str | None
    z_processing: str | None
    line: int


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """A ``Type="ERR"`` record (a failed acquisition, e.g. an autofocus error): what it says."""

    attributes: dict[str, str]
    message: str
    line: int


@dataclass(slots=True)
class MeasurementData:
    """The records of one ``.mlf``, in file order."""

    path: Path
    images: list[ImageRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    other_types: Counter[str] = field(default_factory=Counter)


class _MlfReader:
    """expat handlers collecting records; attribute names are looked up with the root's prefix."""

    def __init__(self, path: Path, parser: expat.XMLParserType) -> None:
        self.data = MeasurementData(path)
        self.parser = parser
        self.depth = 0
        self.record_tag = ""
        self.keys: dict[str, str] = {}
        self.attrs: dict[str, str] | None = None
        self.text: list[str] = []
        self.line = 0
        self.shared: dict[str, str] = {}

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            prefix, _, local = name.rpartition(":")
            if local != "MeasurementData":
                raise PlateFormatError(f"{self.data.path}: root element is <{name}>, not <MeasurementData>")
            prefix = f"{prefix}:" if prefix else ""
            self.record_tag = f"{prefix}MeasurementRecord"
            self.keys = {k: f"{prefix}{k}" for k in (
                "Type", "Row", "Column", "FieldIndex", "ZIndex", "TimePoint", "TimelineIndex",
                "ActionIndex", "Ch", "X", "Y", "Z", "Time", "Action", "ZImageProcessing")}
        elif self.depth == 2 and name == self.record_tag:
            if self.keys["Type"] not in attrs and attrs:  # attributes with another (or no) prefix
                attrs = {k.rpartition(":")[2]: v for k, v in attrs.items()}
                attrs = {self.keys.get(k, k): v for k, v in attrs.items()}
            self.attrs = attrs
            self.text = []
            self.line = self.parser.CurrentLineNumber

    def chars(self, data: str) -> None:
        if self.attrs is not None:
            self.text.append(data)

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.depth == 1 and self.attrs is not None:
            attrs, self.attrs = self.attrs, None
            text = "".join(self.text).strip()
            kind = attrs.get(self.keys["Type"], "IMG")
            if kind == "IMG":
                self.data.images.append(self._image(attrs, text))
            elif kind == "ERR":
                local = {k.rpartition(":")[2]: v for k, v in attrs.items()}
                self.data.errors.append(ErrorRecord(local, text, self.line))
            else:
                self.data.other_types[kind] += 1

    def _bad(self, message: str) -> PlateFormatError:
        return PlateFormatError(f"{self.data.path}, line {self.line}: {message}")

    def _image(self, attrs: dict[str, str], text: str) -> ImageRecord:
        # The hot path (a million records is a real plate): plain lookups, no per-field generators.
        k = self.keys
        get = attrs.get
        try:
            row, column = int(attrs[k["Row"]]), int(attrs[k["Column"]])
            fld, ch = int(attrs[k["FieldIndex"]]), int(attrs[k["Ch"]])
            z, timepoint = int(get(k["ZIndex"]) or 1), int(get(k["TimePoint"]) or 1)
            timeline, action = int(get(k["TimelineIndex"]) or 1), int(get(k["ActionIndex"]) or 1)
        except KeyError as exc:
            name = str(exc.args[0]).rpartition(":")[2]
            raise self._bad(f"an IMG record has no {name}") from None
        except ValueError as exc:
            raise self._bad(f"an IMG record has a non-integer index: {exc}") from None
        if not text:
            raise self._bad("an IMG record names no file")
        action_kind, processing = get(k["Action"]), get(k["ZImageProcessing"])
        return ImageRecord(
            row, column, fld, z, timepoint, timeline, action, ch, text,
            _float(get(k["X"])), _float(get(k["Y"])), _float(get(k["Z"])), get(k["Time"]),
            # A handful of distinct values over a million records: keep one string of each.
            self.shared.setdefault(action_kind, action_kind) if action_kind else action_kind,
            self.shared.setdefault(processing, processing) if processing else processing,
            self.line,
        )


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def read_mlf(path: Path) -> MeasurementData:
    """Stream ``MeasurementData.mlf`` once; every IMG record becomes an :class:`ImageRecord`."""
    parser = expat.ParserCreate()
    parser.buffer_text = True
    reader = _MlfReader(path, parser)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.chars
    try:
        with open(path, "rb") as file:
            while block := file.read(_READ_BLOCK):
                parser.Parse(block, False)
            parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise PlateFormatError(f"{path}: not a readable MeasurementData.mlf: {exc}") from exc
    except OSError as exc:
        raise PlateFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if reader.record_tag == "":
        raise PlateFormatError(f"{path}: holds no XML element")
    return reader.data
