"""The plate dock widget: pick a well and a site; pick a run of the mount and follow it.

Following reads ``.pipelines/<name>.status`` from a one-second :class:`QTimer` (no thread, no busy
loop); when the status changed, the run folder is listed again and the session adds or refreshes the
run's layers, so labels appear as units finish. The timer stops once every followed run has ended.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hcsfs.napari.runs import RunFolder, mount_runs
from hcsfs.napari.session import SESSION_KEY, PlateSession

__all__ = ["PlateWidget", "dock_plate_widget", "POLL_MS"]

log = logging.getLogger("hcsfs.napari")

POLL_MS = 1000
"""How often a followed run's status file is read."""


def _session_of(viewer: Any) -> PlateSession | None:
    for layer in reversed(list(viewer.layers)):
        session = layer.metadata.get(SESSION_KEY)
        if isinstance(session, PlateSession):
            return session
    return None


class PlateWidget(QWidget):  # type: ignore[misc]
    """Well and site pickers, a run picker with Follow, and the followed runs' progress."""

    def __init__(self, napari_viewer: Any, session: PlateSession | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: PlateSession | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

        self.title = QLabel("no plate: open a mount, a run folder or a plate")
        self.title.setWordWrap(True)
        self.path = QLineEdit()
        self.path.setPlaceholderText("/mnt/plate, a plate folder, s3://...")
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self._open_clicked)
        self.well = QComboBox()
        self.site = QComboBox()
        self.run = QComboBox()
        self.run.setEditable(True)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh_runs)
        self.follow_button = QPushButton("Follow")
        self.follow_button.clicked.connect(self._follow_clicked)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        opener = QHBoxLayout()
        opener.addWidget(self.path)
        opener.addWidget(self.open_button)
        runs = QHBoxLayout()
        runs.addWidget(self.run, 1)
        runs.addWidget(self.refresh_button)
        runs.addWidget(self.follow_button)
        form = QFormLayout()
        form.addRow("well", self.well)
        form.addRow("site", self.site)
        form.addRow("run", runs)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(opener)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.well.currentTextChanged.connect(self._well_changed)
        self.site.currentTextChanged.connect(self._site_changed)
        self.viewer.dims.events.current_step.connect(self._dims_changed)
        found = session or _session_of(self.viewer)
        if found is not None:
            self.set_session(found)

    # ------------------------------------------------------------------ plate

    def set_session(self, session: PlateSession) -> None:
        """Show ``session``'s plate (binding it to the viewer: its layers are adopted or added)."""
        self.session = session
        if session.viewer is not self.viewer:
            session.bind(self.viewer)
        self.title.setText(session.title)
        self.path.setText(session.title)
        for box, values, current in ((self.well, session.layout.wells, session.well),
                                     (self.site, [str(s) for s in session.layout.sites], str(session.site))):
            box.blockSignals(True)
            box.clear()
            box.addItems(list(values))
            box.setCurrentText(current)
            box.blockSignals(False)
        self.refresh_runs()
        self._show_status()
        if session.following():
            self.timer.start()

    def _open_clicked(self) -> None:
        text = self.path.text().strip()
        if not text:
            return
        try:
            session = PlateSession.open(text)
        except Exception as exc:  # shown in the widget, not a traceback dialog
            self.status.setText(f"cannot open {text}: {exc}")
            return
        self.set_session(session)

    def _well_changed(self, well: str) -> None:
        if self.session is not None and well in self.session.layout.wells:
            self.session.show(well=well)

    def _site_changed(self, text: str) -> None:
        if self.session is not None and text.isdigit() and int(text) in self.session.layout.sites:
            self.session.show(site=int(text))

    def _dims_changed(self, event: Any = None) -> None:
        if self.session is not None and self.site.currentText() != str(self.session.site):
            self.site.blockSignals(True)
            self.site.setCurrentText(str(self.session.site))
            self.site.blockSignals(False)

    # ------------------------------------------------------------------ runs

    def refresh_runs(self) -> None:
        """List the mount's runs (``.pipelines/*.status``) in the run picker."""
        current = self.run.currentText()
        names = mount_runs(self.session.mount) if self.session and self.session.mount else []
        self.run.blockSignals(True)
        self.run.clear()
        self.run.addItems(names)
        self.run.setCurrentText(current if current else (names[0] if names else ""))
        self.run.blockSignals(False)

    def _follow_clicked(self) -> None:
        name = self.run.currentText().strip()
        if name:
            self.follow(name)

    def follow(self, run: str | Path | RunFolder) -> None:
        """Show run ``run`` (a name in the mount, or a run folder) and poll it until it ends."""
        if self.session is None:
            self.status.setText("open a plate first")
            return
        try:
            folder = self.session.follow(run)
        except Exception as exc:
            self.status.setText(f"cannot follow {run}: {exc}")
            return
        if self.run.currentText() != folder.name:
            self.run.setCurrentText(folder.name)
        self._show_status()
        if self.session.following():
            self.timer.start()

    def poll(self) -> None:
        """One tick: read the followed runs' status; refresh their layers if it changed."""
        if self.session is None:
            self.timer.stop()
            return
        try:
            self.session.poll()
        except Exception:  # a half-written run folder: try again next tick
            log.exception("napari: following failed this time")
        self._show_status()
        if not self.session.following():
            self.timer.stop()

    def _show_status(self) -> None:
        if self.session is None:
            return
        lines = []
        for name in self.session.runs:
            status = self.session.snapshots[name].status or {}
            line = (f"{name}: {status.get('state', 'no status')} {status.get('done', 0)}/"
                    f"{status.get('total', 0)} units, {status.get('planes', 0)} planes")
            if status.get("errors"):
                line += f", {len(status['errors'])} errors"
            lines.append(line)
        self.status.setText("\n".join(lines))


def dock_plate_widget(viewer: Any, session: PlateSession) -> PlateWidget:
    """The viewer's plate widget showing ``session`` (docked on the right the first time)."""
    for inner in getattr(viewer.window, "dock_widgets", {}).values():
        if isinstance(inner, PlateWidget):
            inner.set_session(session)
            return inner
    widget = PlateWidget(viewer, session)
    viewer.window.add_dock_widget(widget, name="hcsfs plate", area="right")
    return widget
