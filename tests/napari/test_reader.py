"""The napari reader without a screen: ``napari.components.ViewerModel`` (no Qt) opens memory,
ImageXpress, OME-Zarr and run-output plates, through npe2 (``viewer.open(path, plugin="hcsfs")``)
where there is a path. Each test checks the layer count, names and scale, and that the values napari
gets are the planes the source reads (per well, on the montage at every level, labels, points)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas
import pytest
import tifffile

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.demo import cells_plane
from hcsfs.napari.plate import Montage, PlateLayout, montage_levels, resolver
from hcsfs.napari.reader import get_reader
from hcsfs.napari.session import PlateSession
from tests.plates import imagexpress_folder, memory_plate, plate_keys, write_tiff_folder, zarr_plate
from tests.specs import screen_spec

SCREEN = "\n".join(line for line in screen_spec().splitlines()
                   if not line.startswith(("rois:", "heatmaps:"))) + "\n"
WELLS = ("A01", "A02", "B01", "B03")


def viewer_model():  # type: ignore[no-untyped-def]
    """A viewer without Qt; npe2 discovers the installed plugins (napari.Viewer would do it)."""
    import npe2
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()
    return ViewerModel()


def cells_plate() -> MemoryPlate:
    plate = MemoryPlate(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for w, well in enumerate(WELLS):
        for site in (1, 2):
            for channel in (1, 2):
                plate.add(PlaneKey(well, site, channel), cells_plane(w * 10 + site, (96, 128), channel))
    return plate


def expected_names(source: hcsfs.PlateSource) -> list[str]:
    description = source.describe()
    channels = sorted({k.channel for k in source.keys()})
    labels = [description.channel_names.get(c) or f"w{c}" for c in channels]  # type: ignore[call-overload]
    return [f"{n} plate" for n in labels] + labels


def check_plate_layers(viewer, source: hcsfs.PlateSource, session: PlateSession) -> None:  # type: ignore[no-untyped-def]
    """Names, scale, and values: the shown well's array and the montage equal the source's planes."""
    layout = session.layout
    names = expected_names(source)
    assert [layer.name for layer in viewer.layers][: len(names)] == names
    pixel = layout.pixel_size_um or 1.0
    for channel in layout.channels:
        label = layout.channel_label(channel)
        well_layer, plate_layer = viewer.layers[label], viewer.layers[f"{label} plate"]
        assert well_layer.data.shape == (len(layout.sites), len(layout.zs), *layout.plane_shape)
        assert tuple(well_layer.scale) == (1.0, 1.0, pixel, pixel)
        assert tuple(plate_layer.scale) == (pixel, pixel) and plate_layer.multiscale
        for well in layout.wells:
            session.show(well=well)
            for s, site in enumerate(layout.sites):
                for z_index, z in enumerate(layout.zs):
                    key = PlaneKey(well, site, channel, z, layout.ts[0])
                    np.testing.assert_array_equal(np.asarray(well_layer.data[s, z_index]),
                                                  source.read_plane(key))
                y, x = session.montage.origin(well, site)
                h, w = layout.plane_shape
                plane = source.read_plane(PlaneKey(well, site, channel, layout.zs[0], layout.ts[0]))
                np.testing.assert_array_equal(np.asarray(plate_layer.data[0][y : y + h, x : x + w]), plane)
        session.show(well=layout.wells[0])


def test_memory_plate_through_a_viewer_model() -> None:
    plate = memory_plate(plate_keys(z=3), channel_names={1: "DAPI", 2: "GFP"})
    session = PlateSession.open(plate)
    viewer = viewer_model()
    session.bind(viewer)
    assert len(viewer.layers) == 4
    check_plate_layers(viewer, plate, session)
    dapi = viewer.layers["DAPI"]
    assert dapi.dtype == np.uint16 and tuple(dapi.contrast_limits_range) == (0, 65535)
    low, high = dapi.contrast_limits
    assert 0 <= low < high <= 65535  # from a sample plane, not the dtype
    assert viewer.dims.axis_labels == ("site", "z", "y", "x")
    assert [str(u) for u in dapi.units] == ["pixel", "pixel", "micrometer", "micrometer"]


def test_well_layers_sit_on_their_site_of_the_montage() -> None:
    plate = memory_plate(plate_keys(sites=4))
    session = PlateSession.open(plate)
    viewer = viewer_model()
    session.bind(viewer)
    dapi = viewer.layers["DAPI"]
    for well, site in (("A02", 3), ("B01", 4), ("A01", 1)):
        session.show(well=well, site=site)
        y, x = session.montage.origin(well, site)
        assert tuple(dapi.translate) == (0, 0, y * 0.65, x * 0.65)
        assert viewer.dims.current_step[0] == site - 1
    viewer.dims.set_current_step(0, 1)  # moving the site slider moves the well layers too
    assert session.site == 2
    assert tuple(dapi.translate)[2:] == tuple(np.multiply(session.montage.origin("A01", 2), 0.65))


def test_montage_levels_are_exact_downsamples() -> None:
    plate = memory_plate(plate_keys(wells=[f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)],
                                    sites=4, channels=1), shape=(300, 410))
    layout = PlateLayout.of(plate)
    montage = Montage.of(layout)
    levels = montage_levels(plate, layout, resolver(plate.keys()), montage, 1)
    assert len(levels) == len(montage.levels) > 1
    assert max(levels[-1].shape) <= 4096 + 64
    for k, level in enumerate(levels):
        assert level.shape == tuple(s // 2**k for s in levels[0].shape)
    assert len(levels) == 3  # 9,600 px wide at full resolution: the top level is 4 times smaller
    key = PlaneKey("C05", 3, 1, 1, 1)
    plane = plate.read_plane(key).astype(np.float64)
    y, x = montage.origin("C05", 3)
    for k, level in enumerate(levels):
        f = 2**k
        h, w = 300 // f, 410 // f
        shown = np.asarray(level[y // f : y // f + h, x // f : x // f + w])
        expected = plane[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3))
        np.testing.assert_array_equal(shown, np.rint(expected).astype(np.uint16))


def test_only_the_shown_planes_are_decoded() -> None:
    plate = memory_plate(plate_keys(sites=3, z=4))
    reads: list[PlaneKey] = []

    class Counting(MemoryPlate):
        def read_plane(self, key: PlaneKey) -> np.ndarray:
            reads.append(key)
            return super().read_plane(key)

    counting = Counting(pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})
    for key in plate.keys():
        counting.add(key, plate.read_plane(key))
    session = PlateSession.open(counting)
    viewer = viewer_model()
    session.bind(viewer)
    samples = 2  # one plane per channel for the contrast limits
    shown = set(reads[samples:])
    # The montage: every site of the plate at the first z; the wells: the first site and z of A01.
    montage = {k for k in plate.keys() if k.z == 1}
    assert shown <= montage | {PlaneKey("A01", 1, c, 1, 1) for c in (1, 2)}
    assert len(reads) < len(plate.keys()) / 2
    reads.clear()
    viewer.dims.set_current_step(1, 3)  # z 4 of the shown site: two planes, one per channel
    assert sorted(reads, key=lambda k: k.channel) == [PlaneKey("A01", 1, c, 4, 1) for c in (1, 2)]


@pytest.mark.parametrize("kind", ["imagexpress", "ome-zarr", "tiff-folder"])
def test_plate_folders_open_through_npe2(kind: str, tmp_path: Path) -> None:
    plate = memory_plate(plate_keys(z=2))
    if kind == "imagexpress":
        plate = memory_plate(plate_keys())
        path = imagexpress_folder(tmp_path / "ix", plate)
    elif kind == "ome-zarr":
        path = zarr_plate(tmp_path, plate)
    else:
        path = write_tiff_folder(tmp_path / "tiffs", plate)
    assert get_reader(str(path)) is not None
    viewer = viewer_model()
    layers = viewer.open(str(path), plugin="hcsfs")
    source = hcsfs.open_plate(path)
    assert len(layers) == 4
    session = layers[0].metadata["hcsfs_session"]
    session.bind(viewer)  # what the widget does: adopts the layers (adds none)
    assert len(viewer.layers) == 4
    check_plate_layers(viewer, source, session)
    if kind == "ome-zarr":
        assert [layer.name for layer in layers] == ["DAPI plate", "GFP plate", "DAPI", "GFP"]
        assert tuple(layers[2].scale) == (1, 1, 0.65, 0.65)


def test_the_reader_declines_what_it_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a plate")
    assert get_reader(str(tmp_path / "notes")) is None
    assert get_reader(str(tmp_path / "notes" / "a.txt")) is None
    assert get_reader([str(tmp_path), str(tmp_path)]) is None


def run_screen(plate: MemoryPlate, tmp_path: Path) -> Path:
    from hcsfs.pipelines.process import process_plate

    spec = tmp_path / "screen.yaml"
    spec.write_text(SCREEN)
    out = tmp_path / "screen-run"
    status = process_plate(plate, spec, out)
    assert status["state"] == "done", status
    return out


def test_a_run_folder_on_disk_opens_as_labels_and_points(tmp_path: Path) -> None:
    plate = cells_plate()
    out = run_screen(plate, tmp_path)
    viewer = viewer_model()
    layers = viewer.open(str(out), plugin="hcsfs")
    names = [layer.name for layer in layers]
    assert names == ["screen/cells plate", "screen/cells", "screen/nuclei plate", "screen/nuclei",
                     "screen/nuclei.csv"]  # cells.csv has no centroids: no points
    session = layers[0].metadata["hcsfs_session"]
    session.bind(viewer)
    assert len(viewer.layers) == 5
    nuclei, nuclei_plate = viewer.layers["screen/nuclei"], viewer.layers["screen/nuclei plate"]
    assert type(nuclei).__name__ == "Labels" and nuclei.data.dtype == np.int32
    assert tuple(nuclei.scale) == (1, 1, 1, 1)  # a run folder alone does not know the pixel size
    result = hcsfs.open_plate(out / "data" / "nuclei" / "plate.ome.zarr")
    table = pandas.read_csv(out / "tables" / "nuclei.csv")
    points = viewer.layers["screen/nuclei.csv"]
    for well in WELLS:
        session.show(well=well)
        for s, site in enumerate((1, 2)):
            plane = result.read_plane(PlaneKey(well, site, 1, 1, 1))
            np.testing.assert_array_equal(np.asarray(nuclei.data[s, 0]), plane)
            y, x = session.montage.origin(well, site)
            np.testing.assert_array_equal(np.asarray(nuclei_plate.data[0][y : y + 96, x : x + 128]), plane)
        rows = table[table.well == well].reset_index(drop=True)
        assert len(points.data) == len(rows) > 0
        pandas.testing.assert_frame_equal(points.features[list(rows.columns)], rows, check_dtype=False)
        np.testing.assert_allclose(points.data[:, 2], rows.AreaShape_Center_Y)
        np.testing.assert_allclose(points.data[:, 3], rows.AreaShape_Center_X)
        np.testing.assert_array_equal(points.data[:, 0], rows.site - 1)
        # each centroid lies inside its own object
        for (site, _z, cy, cx), number in zip(points.data, rows.ObjectNumber, strict=True):
            plane = result.read_plane(PlaneKey(well, int(site) + 1, 1, 1, 1))
            assert plane[int(round(cy)), int(round(cx))] == number


@pytest.mark.mount
def test_a_mount_and_its_run_folder(tmp_path: Path, mountpoint: Path) -> None:
    folder = tmp_path / "plate"
    folder.mkdir()
    plate = cells_plate()
    for key in plate.keys():  # calibrated as ImageJ writes it: the mount's plate.json has the pixel size
        tifffile.imwrite(folder / key.name, plate.read_plane(key), imagej=True,
                         resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "micron"})
    with hcsfs.mounted(folder, mountpoint, outputs=tmp_path / "outputs"):
        (mountpoint / ".pipelines" / "screen.yaml").write_text(SCREEN)
        deadline = time.monotonic() + 120
        status = mountpoint / ".pipelines" / "screen.status"
        while '"done"' not in status.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert '"done"' in status.read_text()
        viewer = viewer_model()
        started = time.perf_counter()
        plate_layers = viewer.open(str(mountpoint), plugin="hcsfs")
        assert time.perf_counter() - started < 10
        assert [layer.name for layer in plate_layers] == ["w1 plate", "w2 plate", "w1", "w2"]
        assert tuple(plate_layers[2].scale) == (1, 1, 0.65, 0.65)
        session = plate_layers[0].metadata["hcsfs_session"]
        session.bind(viewer)
        check_plate_layers(viewer, hcsfs.open_plate(folder), session)
        run = viewer_model()
        layers = run.open(str(mountpoint / "screen"), plugin="hcsfs")
        assert [layer.name for layer in layers] == [
            "w1 plate", "w2 plate", "w1", "w2", "screen/cells plate", "screen/cells",
            "screen/nuclei plate", "screen/nuclei", "screen/nuclei.csv"]
        session = layers[0].metadata["hcsfs_session"]
        session.bind(run)
        session.show(well="B03", site=2)
        served = tifffile.imread(mountpoint / "screen" / "nuclei" / "B03_s002_w1_z001_t001.tif")
        np.testing.assert_array_equal(np.asarray(run.layers["screen/nuclei"].data[1, 0]), served)
        rows = pandas.read_csv(mountpoint / "screen" / "nuclei.csv")
        assert len(run.layers["screen/nuclei.csv"].data) == int((rows.well == "B03").sum())


def test_a_384_well_plate_opens_in_a_moment() -> None:
    """The reader's own cost (keys, geometry, graphs): no plane is decoded but two contrast samples."""
    wells = [f"{row}{col:02d}" for row in "ABCDEFGHIJKLMNOP" for col in range(1, 25)]
    plate = memory_plate(plate_keys(wells, sites=4, channels=2), shape=(16, 16))
    import dask.array  # noqa: F401  (imported once by napari anyway; not the reader's cost)

    started = time.perf_counter()
    session = PlateSession.open(plate)
    layers = session.layer_data()
    elapsed = time.perf_counter() - started
    assert len(layers) == 4
    assert (session.montage.base.plate_rows, session.montage.base.plate_cols) == (16, 24)
    assert layers[2][0].shape == (4, 1, 16, 16)
    assert elapsed < 5, elapsed


def test_hcsfs_view_is_a_command() -> None:
    from click.testing import CliRunner

    from hcsfs.cli import main

    result = CliRunner().invoke(main, ["view", "--help"])
    assert result.exit_code == 0 and "--run" in result.output and "napari" in result.output
