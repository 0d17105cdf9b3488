"""The live follow in a real napari window (Qt, on a private Xvfb: see conftest.py for why not
``QT_QPA_PLATFORM=offscreen``): the viewer follows a run of a mounted plate before the run exists,
the spec is written into ``.pipelines/``, and the widget's one-second timer brings the labels in as
units finish; at the end every output plane is shown, the nuclei table is a Points layer, and a
screenshot of the montage is not blank. The screenshot is docs/napari.png (rewritten when missing or
with ``HCSFS_SCREENSHOTS=1``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas
import pytest
import tifffile

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.demo import cells_plane

pytestmark = pytest.mark.mount

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "napari.png"
LIVE = """\
channels: {DAPI: 1, GFP: 2}
steps:
  - {func: slow_copy, input: DAPI, args: {seconds: 0.4}, as: dapi}
  - {func: gaussian_filter, input: dapi, args: {sigma: 2}, as: smooth}
  - {func: threshold_otsu, input: smooth, as: mask}
  - {func: label, input: mask, as: nuclei}
  - {measure: [shape, intensity], objects: nuclei, channels: [DAPI, GFP], table: nuclei}
save: [nuclei]
"""
WELLS = tuple(f"{row}{col:02d}" for row in "ABC" for col in range(1, 7))
SITES = (1, 2)
SHAPE = (160, 200)


def write_plate(folder: Path) -> Path:
    folder.mkdir()
    plate = MemoryPlate()
    for w, well in enumerate(WELLS):
        for site in SITES:
            for channel in (1, 2):
                plate.add(PlaneKey(well, site, channel), cells_plane(w * 10 + site, SHAPE, channel))
    for key in plate.keys():
        tifffile.imwrite(folder / key.name, plate.read_plane(key), imagej=True,
                         resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "micron"})
    return folder


def wait_for(app, condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    """Run Qt's event loop (the widget's timer fires in it) until ``condition()`` or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_follow_a_run_live_and_screenshot_the_plate(qt_display: str, tmp_path: Path,
                                                    mountpoint: Path) -> None:
    from qtpy.QtWidgets import QApplication

    from hcsfs.napari.app import open_viewer
    from hcsfs.napari.widget import POLL_MS

    folder = write_plate(tmp_path / "plate")
    with hcsfs.mounted(folder, mountpoint, outputs=tmp_path / "outputs",
                       plugins=("tests.pipeline_plugin",)):
        # A shown window (on the private X server): a hidden one's canvas is never drawn, its
        # screenshots are black.
        viewer, widget = open_viewer(mountpoint, show=True)
        try:
            app = QApplication.instance()
            session = widget.session
            assert [layer.name for layer in viewer.layers] == ["w1 plate", "w2 plate", "w1", "w2"]
            widget.follow("live")  # before the run exists: nothing yet, the timer is polling
            assert widget.timer.isActive() and widget.timer.interval() == POLL_MS
            seen: list[int] = []

            def record() -> None:  # after each tick of the widget's timer: how many planes shown
                spec = session._layers.get("result-well:live/nuclei:1")
                seen.append(len(spec.keys) if spec is not None else 0)

            widget.timer.timeout.connect(record)
            (mountpoint / ".pipelines" / "live.yaml").write_text(LIVE)
            assert wait_for(app, lambda: not widget.timer.isActive(), timeout=180), widget.status.text()
            status = session.snapshots["live"].status
            assert status is not None and status["state"] == "done" and not status["errors"], status
            total = len(WELLS) * len(SITES)
            assert status["planes"] == total
            # Planes appeared while it ran, without reopening: some tick saw part of them.
            assert any(0 < count < total for count in seen), seen
            assert seen[-1] == total and len(seen) <= 200  # about one status read a second
            assert "live: done" in widget.status.text()

            names = [layer.name for layer in viewer.layers]
            assert names == ["w1 plate", "w2 plate", "w1", "w2", "live/nuclei plate", "live/nuclei",
                             "live/nuclei.csv"]
            labels, montage = viewer.layers["live/nuclei"], viewer.layers["live/nuclei plate"]
            points = viewer.layers["live/nuclei.csv"]
            table = pandas.read_csv(mountpoint / "live" / "nuclei.csv")
            for well in WELLS:
                widget.well.setCurrentText(well)  # the widget's well picker
                assert session.well == well
                for s, site in enumerate(SITES):
                    name = f"{well}_s{site:03d}_w1_z001_t001.tif"
                    served = tifffile.imread(mountpoint / "live" / "nuclei" / name)
                    np.testing.assert_array_equal(np.asarray(labels.data[s, 0]), served)
                    y, x = session.montage.origin(well, site)
                    np.testing.assert_array_equal(
                        np.asarray(montage.data[0][y : y + SHAPE[0], x : x + SHAPE[1]]), served)
                assert len(points.data) == int((table.well == well).sum()) > 0
            widget.site.setCurrentText("2")
            assert viewer.dims.current_step[0] == 1 and session.site == 2

            widget.well.setCurrentText("B02")
            canvas, window = screenshots(viewer, app, session)
            assert canvas.ndim == 3 and canvas.shape[2] == 4
            rgb = canvas[..., :3].astype(np.int32)
            assert rgb.std() > 10 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 200  # not blank
            from PIL import Image

            Image.fromarray(window).save(tmp_path / "napari.png")
            if os.environ.get("HCSFS_SCREENSHOTS") == "1" or not DOCS_SCREENSHOT.exists():
                Image.fromarray(window[..., :3]).save(DOCS_SCREENSHOT, optimize=True)
        finally:
            widget.timer.stop()
            viewer.close()


def screenshots(viewer, app, session) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The canvas and the whole window, the plate's populated wells in view, every layer loaded."""
    layout, montage = session.layout, session.montage
    pixel = layout.pixel_size_um
    y0, x0 = montage.origin(layout.wells[0], layout.sites[0])
    y1, x1 = montage.origin(layout.wells[-1], layout.sites[-1])
    y1, x1 = y1 + layout.plane_shape[0], x1 + layout.plane_shape[1]
    viewer.window._qt_window.resize(1500, 640)
    settle(app)
    viewer.scene.camera.center = ((y0 + y1) / 2 * pixel, (x0 + x1) / 2 * pixel)
    canvas_h, canvas_w = viewer.window._qt_viewer.canvas.size
    viewer.scene.camera.zoom = 0.96 * min(canvas_h / ((y1 - y0) * pixel), canvas_w / ((x1 - x0) * pixel))
    wait_for(app, lambda: all(layer.loaded for layer in viewer.layers), timeout=60)
    settle(app)
    canvas = np.asarray(viewer.screenshot(canvas_only=True, flash=False))
    window = np.asarray(viewer.screenshot(canvas_only=False, flash=False))
    return canvas, window


def settle(app) -> None:  # type: ignore[no-untyped-def]
    for _ in range(10):
        app.processEvents()
        time.sleep(0.05)


def test_napari_open_docks_the_plate_widget(qt_display: str, tmp_path: Path) -> None:
    """``napari PLATE`` (the reader in a window): the layers, and the plate widget bound to them."""
    import napari
    from qtpy.QtWidgets import QApplication

    from hcsfs.napari.widget import PlateWidget

    folder = write_plate(tmp_path / "plate")
    viewer = napari.Viewer(show=True)
    try:
        app = QApplication.instance()
        viewer.open(str(folder), plugin="hcsfs")

        def widgets() -> list[PlateWidget]:
            return [w for w in viewer.window.dock_widgets.values() if isinstance(w, PlateWidget)]

        assert wait_for(app, lambda: len(widgets()) == 1, timeout=30)
        widget = widgets()[0]
        assert [layer.name for layer in viewer.layers] == ["w1 plate", "w2 plate", "w1", "w2"]
        assert widget.session is viewer.layers[0].metadata["hcsfs_session"]
        assert widget.well.count() == len(WELLS) and widget.site.count() == len(SITES)
        widget.well.setCurrentText("C06")
        np.testing.assert_array_equal(np.asarray(viewer.layers["w2"].data[1, 0]),
                                      tifffile.imread(folder / "C06_s002_w2_z001_t001.tif"))
    finally:
        viewer.close()
