"""Generated Yokogawa CellVoyager measurements for tests: the instrument's XML, pixels of our own.

``write_measurement`` writes a ``MeasurementData.mlf`` (one record per image, as CV7000/CV8000 write
it), a ``MeasurementDetail.mrf``, optionally a ``.mes`` naming the channels, and one image per record:
a small TIFF whose pixels encode a running number (``generate_ixm.plane_bytes``), or a PNG of the
``.mrf``'s size whose pixels are known to the test. ``copy_sample`` does the same for the real CV7000
metadata in ``../shared/samples/yokogawa_cv7000_meta``: its ``.mlf``/``.mrf`` under the instrument's
names, and a file for every record. This module parses nothing with hcsfs: the expectations of the
tests come from the records themselves (read here with ElementTree) or from fractal-tasks-core's CSVs.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from tests.sources.generate_ixm import SAMPLES, plane_bytes, tree_digest

if TYPE_CHECKING:
    from hcsfs import MemoryPlate

CV_SAMPLES = SAMPLES / "yokogawa_cv7000_meta"
NS = "http://www.yokogawa.co.jp/BTS/BTSSchema/1.0"


def row_token(row: int) -> str:
    """How the test spells a row in file names (A..Z, then AA..): the instrument's own business."""
    return chr(64 + row) if row <= 26 else "A" + chr(64 + row - 26)


@dataclass(frozen=True)
class Rec:
    """One image record, as the test means it."""

    row: int
    column: int
    field: int
    ch: int
    z: int = 1
    t: int = 1
    timeline: int = 1
    action: int = 1
    x: float = 0.0
    y: float = 0.0
    z_um: float = 0.0
    kind: str = "3D"
    ext: str = ".tif"
    plate: str = "hcsfs-test"
    extra: str = ""
    time: str = "2024-05-06T10:00:00.000+02:00"

    @property
    def file(self) -> str:
        return (f"{self.plate}_{row_token(self.row)}{self.column:02d}_T{self.t:04d}F{self.field:03d}"
                f"L{self.timeline:02d}A{self.action:02d}Z{self.z:02d}C{self.ch:02d}{self.ext}")

    def xml(self) -> str:
        return (f'<bts:MeasurementRecord bts:Type="IMG" bts:Time="{self.time}" bts:Column="{self.column}" '
                f'bts:Row="{self.row}" bts:TimePoint="{self.t}" bts:FieldIndex="{self.field}" '
                f'bts:ZIndex="{self.z}" bts:TimelineIndex="{self.timeline}" '
                f'bts:ActionIndex="{self.action}" bts:Action="{self.kind}" bts:X="{self.x}" '
                f'bts:Y="{self.y}" bts:Z="{self.z_um}" bts:Ch="{self.ch}"{self.extra}>{self.file}'
                "</bts:MeasurementRecord>")


def err_record(row: int, column: int, message: str, t: int = 1) -> str:
    """An autofocus failure as CellVoyager records it: no FieldIndex, ZIndex or Ch, a message."""
    return (f'<bts:MeasurementRecord bts:Type="ERR" bts:Time="2024-05-06T11:00:00.000+02:00" '
            f'bts:Column="{column}" bts:Row="{row}" bts:TimePoint="{t}" bts:PartialTileIndex="1" '
            f'bts:TimelineIndex="1" bts:X="-20.0" bts:Y="25.0">{message}</bts:MeasurementRecord>')


def mlf_text(records: Iterable[str]) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<bts:MeasurementData bts:Version="1.0" xmlns:bts="{NS}">\n'
            + "".join(line + "\n" for line in records) + "</bts:MeasurementData>\n")


@dataclass(frozen=True)
class Channel:
    """One ``<MeasurementChannel>`` of the ``.mrf``."""

    ch: int
    pixel_size: float = 0.65
    width: int = 64
    height: int = 48
    bit_depth: int = 16
    pixel_size_y: float | None = None
    shading: str = ""

    def xml(self) -> str:
        y = self.pixel_size_y if self.pixel_size_y is not None else self.pixel_size
        return (f'  <bts:MeasurementChannel bts:Ch="{self.ch}" '
                f'bts:HorizontalPixelDimension="{self.pixel_size}" bts:VerticalPixelDimension="{y}" '
                f'bts:CameraNumber="1" bts:InputBitDepth="{self.bit_depth}" bts:InputLevel="1000" '
                f'bts:HorizontalPixels="{self.width}" bts:VerticalPixels="{self.height}" '
                f'bts:FilterWheelPosition="1" bts:FilterPosition="1" '
                f'bts:ShadingCorrectionSource="{self.shading}" />\n')


def mrf_text(rows: int, columns: int, channels: Sequence[Channel], setting: str = "hcsfs-test.mes") -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<bts:MeasurementDetail bts:Version="1.0" bts:OperatorName="hcsfs" bts:Title="hcsfs-test" '
            f'bts:MeasurementSettingFileName="{setting}" bts:ColumnCount="{columns}" bts:RowCount="{rows}" '
            f'bts:TimePointCount="1" bts:FieldCount="1" bts:ZCount="1" bts:TargetSystem="CV8000" '
            f'bts:ReleaseNumber="R1.02.01" xmlns:bts="{NS}">\n'
            '  <bts:MeasurementSamplePlate bts:Name="hcsfs-test" bts:WellPlateFileName="hcsfs-test.wpi" '
            'bts:WellPlateProductFileName="plate.wpp" />\n'
            + "".join(c.xml() for c in channels) + "</bts:MeasurementDetail>\n")


def mes_text(targets: Mapping[int, str]) -> str:
    channels = "".join(
        f'    <bts:Channel bts:Ch="{ch}" bts:Target="{name}" bts:Objective="20x" bts:Acquisition="BP445/45">'
        "<bts:LightSourceName>405nm</bts:LightSourceName></bts:Channel>\n"
        for ch, name in targets.items())
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<bts:MeasurementSetting xmlns:bts="{NS}" bts:Version="1.0">\n'
            '  <bts:Timelapse><bts:Timeline bts:Name="Timeline1" bts:Color="#ff44ee66" /></bts:Timelapse>\n'
            f"  <bts:ChannelList>\n{channels}  </bts:ChannelList>\n</bts:MeasurementSetting>\n")


def png_pixels(rec: Rec, shape: tuple[int, int], dtype: str) -> np.ndarray:
    """The pixels of ``rec``'s PNG: a pattern unique to the record (and known without reading it)."""
    seed = (rec.row * 7919 + rec.column * 104729 + rec.field * 31 + rec.z * 17 + rec.t * 13
            + rec.ch * 7 + rec.action * 3 + rec.timeline) % (2**32)
    high = 255 if dtype == "uint8" else 65535
    return np.random.default_rng(seed).integers(0, high, shape, endpoint=True).astype(dtype)


@dataclass
class Written:
    """What ``write_measurement`` wrote: the folder, and each record's file and (PNG) pixels."""

    folder: Path
    files: dict[Rec, Path] = field(default_factory=dict)
    pixels: dict[Rec, np.ndarray] = field(default_factory=dict)


def write_measurement(
    folder: Path,
    records: Sequence[Rec],
    *,
    rows: int = 8,
    columns: int = 12,
    channels: Sequence[Channel] | None = None,
    targets: Mapping[int, str] | None = None,
    errors: Sequence[str] = (),
    arrays: bool = False,
) -> Written:
    """A measurement folder with an image for every record.

    PNG records get ``png_pixels`` of the ``.mrf``'s size; TIFF records a tiny numbered plane, or with
    ``arrays`` a TIFF of ``png_pixels`` too (then ``Written.pixels`` holds every record's pixels).
    """
    import imagecodecs

    folder.mkdir(parents=True, exist_ok=True)
    channels = channels or [Channel(ch) for ch in sorted({r.ch for r in records})]
    geometry = {c.ch: c for c in channels}
    (folder / "MeasurementData.mlf").write_text(mlf_text([r.xml() for r in records] + list(errors)))
    (folder / "MeasurementDetail.mrf").write_text(mrf_text(rows, columns, channels))
    if targets is not None:
        (folder / "hcsfs-test.mes").write_text(mes_text(targets))
    written = Written(folder)
    for rec in records:
        path = folder / rec.file
        channel = geometry[rec.ch]
        dtype = "uint8" if channel.bit_depth <= 8 else "uint16"
        if rec.ext == ".png" or arrays:
            pixels = written.pixels[rec] = png_pixels(rec, (channel.height, channel.width), dtype)
            if rec.ext == ".png":
                path.write_bytes(imagecodecs.png_encode(pixels))
            else:
                tifffile.imwrite(path, pixels)
        else:
            path.write_bytes(plane_bytes())
        written.files[rec] = path
    return written


# -- the real CV7000 samples --------------------------------------------------------------------

def checked_samples() -> Iterator[Path]:
    """For a fixture: the real CV7000 metadata (read only), checked unchanged after the tests.

    Missing samples skip the tests, except in CI (``../shared`` is beside the clone there).
    """
    import pytest

    if not CV_SAMPLES.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CellVoyager samples not found under {CV_SAMPLES}")
        pytest.skip(reason=f"CellVoyager samples not found under {CV_SAMPLES}")
    before = tree_digest(CV_SAMPLES)
    yield CV_SAMPLES
    assert tree_digest(CV_SAMPLES) == before, "a test changed the shared CellVoyager samples"


def sample_records(mlf: Path) -> list[dict[str, str]]:
    """Every record of a real ``.mlf``: its attributes (local names) plus ``file`` (the text)."""
    records = []
    for element in ET.parse(mlf).getroot():
        attributes = {k.rpartition("}")[2]: v for k, v in element.attrib.items()}
        attributes["file"] = (element.text or "").strip()
        records.append(attributes)
    return records


def copy_sample(folder: Path, mlf: str, mrf: str) -> list[dict[str, str]]:
    """A measurement of the sample's ``mlf``/``mrf`` (under the instrument's names) with its images."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CV_SAMPLES / mlf, folder / "MeasurementData.mlf")
    shutil.copyfile(CV_SAMPLES / mrf, folder / "MeasurementDetail.mrf")
    records = sample_records(folder / "MeasurementData.mlf")
    for record in records:
        if record["Type"] == "IMG":
            (folder / record["file"]).write_bytes(plane_bytes())
    return records


def cellvoyager_folder(root: Path, plate: MemoryPlate, ext: str = ".png") -> Path:
    """``plate`` as a CellVoyager measurement: a record and a PNG (or TIFF) per plane, 1536-well geometry."""
    import imagecodecs

    from hcsfs.naming import parse_well

    root.mkdir(parents=True, exist_ok=True)
    records, channels = [], {}
    for key in plate.keys():
        row, column = parse_well(key.well)
        rec = Rec(row, column, int(key.site), int(key.channel), z=int(key.z), t=int(key.t), ext=ext)
        plane = plate.read_plane(key)
        channels[rec.ch] = Channel(rec.ch, plate.pixel_size_um or 0.65, plane.shape[1], plane.shape[0],
                                   8 * plane.dtype.itemsize)
        data = imagecodecs.png_encode(plane) if ext == ".png" else None
        if data is None:
            tifffile.imwrite(root / rec.file, plane)
        else:
            (root / rec.file).write_bytes(data)
        records.append(rec.xml())
    (root / "MeasurementData.mlf").write_text(mlf_text(records))
    (root / "MeasurementDetail.mrf").write_text(mrf_text(32, 48, list(channels.values())))
    return root
