"""The OME-Zarr plane sink writes what zarr-python writes, byte for byte, and readers open it.

Planes of per-plane-chunk local arrays are encoded and stored by hcsfs itself
(:class:`hcsfs.sinks.zarr.PlaneChunkArray`); the reference here is zarr-python writing the same planes
into an array made with the same codec, so the expectation comes from zarr-python, not from hcsfs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from hcsfs.naming import PlaneKey
from hcsfs.sinks import ZarrPlaneSink
from hcsfs.sinks.zarr import COMPRESSORS, OmeZarrPlateWriter, PlaneChunkArray, ZarrWriteOptions

zarr = pytest.importorskip("zarr")

SHAPE = (3, 48, 40)  # z, y, x


def _planes(dtype: str) -> np.ndarray:
    """Labels-like planes; the middle one all 0 (the fill value: zarr-python stores no chunk for it)."""
    rng = np.random.default_rng(7)
    field = ndi.gaussian_filter(rng.random(SHAPE, dtype=np.float32), (0, 2, 2))
    if dtype == "float32":
        stack = field
    else:
        stack = np.stack([ndi.label(p > np.percentile(p, 60))[0] for p in field]).astype(dtype)
    stack[1] = 0
    return stack


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _zarr_python_array(folder: Path, dtype: str, options: ZarrWriteOptions, stack: np.ndarray) -> None:
    """The same array written plane by plane with zarr-python's own API."""
    from zarr.storage import LocalStore

    shape = (1, 1, *SHAPE)
    extra = ({"dimension_names": ("t", "c", "z", "y", "x")} if options.zarr_format == 3
             else {"chunk_key_encoding": {"name": "v2", "separator": "/"}})
    array = zarr.create_array(store=LocalStore(folder), shape=shape, chunks=(1, 1, 1, *SHAPE[1:]),
                              dtype=dtype, compressors=options.compressors(np.dtype(dtype)), fill_value=0,
                              zarr_format=options.zarr_format, **extra)
    for z, plane in enumerate(stack):
        array[0, 0, z] = plane


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
@pytest.mark.parametrize("compressor", COMPRESSORS)
@pytest.mark.parametrize("dtype", ["int32", "uint16", "uint8", "float32"])
def test_plane_chunks_are_the_bytes_zarr_python_writes(tmp_path: Path, ngff: str, compressor: str,
                                                       dtype: str) -> None:
    options = ZarrWriteOptions(ngff=ngff, compressor=compressor)  # type: ignore[arg-type]
    stack = _planes(dtype)
    writer = OmeZarrPlateWriter(tmp_path / "hcsfs.zarr", options)
    field = writer.create_field("B03", 2, (1, 1, *SHAPE), dtype, channel_names=["nuclei"], pixel_size_um=0.5)
    assert isinstance(field._array, PlaneChunkArray)
    for z in (2, 0, 1):  # any order
        field.write_plane(0, 0, z, stack[z])
    field.close()
    reference = tmp_path / "reference"
    _zarr_python_array(reference, dtype, options, stack)
    written = _files(tmp_path / "hcsfs.zarr" / "B" / "3" / "1" / "0")
    assert written == _files(reference)
    assert not [name for name in written if name.endswith(".partial")]
    array = zarr.open_array(tmp_path / "hcsfs.zarr" / "B" / "3" / "1" / "0", mode="r")
    np.testing.assert_array_equal(array[0, 0], stack)


def test_an_all_zero_plane_written_over_a_plane_removes_its_chunk(tmp_path: Path) -> None:
    stack = _planes("int32")
    writer = OmeZarrPlateWriter(tmp_path / "p.zarr")
    field = writer.create_field("A01", 1, (1, 1, *SHAPE), "int32", channel_names=["x"], pixel_size_um=None)
    field.write_plane(0, 0, 0, stack[0])
    field.write_plane(0, 0, 0, np.zeros(SHAPE[1:], np.int32))
    array = zarr.open_array(tmp_path / "p.zarr" / "A" / "1" / "0" / "0", mode="r")
    assert not array[0, 0, 0].any()
    chunks = tmp_path / "p.zarr" / "A" / "1" / "0" / "0" / "c"
    assert not [p for p in chunks.rglob("*") if p.is_file()]


def test_an_existing_array_is_refused_unless_the_plate_is_shared(tmp_path: Path) -> None:
    root = tmp_path / "p.zarr"
    first = OmeZarrPlateWriter(root)
    first.create_field("A01", 1, (1, 1, *SHAPE), "int32", channel_names=["x"], pixel_size_um=None)
    again = OmeZarrPlateWriter(root, shared=True)
    field = again.create_field("A01", 1, (1, 1, *SHAPE), "int32", channel_names=["x"], pixel_size_um=None)
    assert isinstance(field._array, PlaneChunkArray)  # the same metadata: written chunk by chunk
    with pytest.raises(ValueError, match="another writer"):
        again.create_field("A01", 1, (1, 1, *SHAPE), "uint16", channel_names=["x"], pixel_size_um=None)
    with pytest.raises(FileExistsError):
        OmeZarrPlateWriter(root)  # a second writer of a plate that is not shared: the folder exists


def test_well_chunks_and_shards_still_go_through_zarr_python(tmp_path: Path) -> None:
    layouts = {"well": ZarrWriteOptions(chunks="well"), "shard": ZarrWriteOptions(shard="well")}
    for name, options in layouts.items():
        writer = OmeZarrPlateWriter(tmp_path / f"{name}.zarr", options)
        field = writer.create_field("A01", 1, (1, 1, *SHAPE), "int32", channel_names=["x"],
                                    pixel_size_um=None)
        assert not isinstance(field._array, PlaneChunkArray)
        stack = _planes("int32")
        for z, plane in enumerate(stack):
            field.write_plane(0, 0, z, plane)
        field.close()
        array = zarr.open_array(tmp_path / f"{name}.zarr" / "A" / "1" / "0" / "0", mode="r")
        np.testing.assert_array_equal(array[0, 0], stack)


def test_sink_fields_written_from_threads_read_back_with_ome_zarr(tmp_path: Path) -> None:
    """Several threads fill different fields at once; zarr-python and ome-zarr read the plate."""
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    sink = ZarrPlaneSink(tmp_path / "plate.ome.zarr", t=[1], channel=[1], z=[1, 2, 3], pixel_size_um=0.65,
                         channel_names={1: "DAPI"}, name="nuclei")
    stack = _planes("int32")
    wells = [f"{row}{column:02d}" for row in "AB" for column in range(1, 5)]
    errors: list[BaseException] = []

    def fill(well: str) -> None:
        try:
            for z, plane in enumerate(stack, start=1):
                sink.write(PlaneKey(well, 1, 1, z, 1), plane)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fill, args=(w,)) for w in wells]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    sink.finish()
    group = zarr.open_group(tmp_path / "plate.ome.zarr", mode="r")
    assert len(group.attrs["ome"]["plate"]["wells"]) == len(wells)
    for well in wells:
        np.testing.assert_array_equal(group[f"{well[0]}/{int(well[1:])}/0/0"][0, 0], stack)
    nodes = list(Reader(parse_url(str(tmp_path / "plate.ome.zarr")))())
    image = next(n for n in nodes if n.data)
    axes = [a["name"] for a in image.metadata["axes"]]
    assert axes == ["t", "c", "z", "y", "x"]
