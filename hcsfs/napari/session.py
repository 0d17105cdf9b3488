"""One plate in a napari viewer: the layers the reader returns, and keeping them current.

:class:`PlateSession` needs no Qt: the reader turns it into layer data tuples, and once it is bound to a
viewer (``napari.components.ViewerModel`` or a real ``napari.Viewer``) it switches the well, moves the
well layers to the shown site, and adds or refreshes the layers of the runs it follows when
:meth:`PlateSession.poll` sees their status change. The dock widget calls ``poll`` from a one-second
timer.

Layers, bottom to top:

- ``<channel> plate``: the whole-plate montage of each channel (multiscale, first z and t);
- ``<channel>``: one well of each channel, ``(t,) site, z, y, x``, placed on the montage at the site shown;
- ``<run>/<result>`` and ``<run>/<result> plate``: a saved result of a run (Labels for labels results,
  Image for masks and images), per well and on the plate;
- ``<run>/<table>.csv``: a measurement table with object centroids, as a Points layer of the shown
  well whose features are the table's rows (hovering a point shows its row).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcsfs.naming import PlaneKey, sort_key
from hcsfs.napari.plate import (
    FlatFolder,
    Index,
    Montage,
    PlateLayout,
    Resolver,
    is_mount_root,
    montage_levels,
    resolver,
    sample_limits,
    well_array,
)
from hcsfs.napari.runs import CENTER_COLUMNS, RunFolder, RunSnapshot, find_run, mount_runs
from hcsfs.sources.base import PlateDescription

if TYPE_CHECKING:
    import pandas

    from hcsfs.sources.base import PlateSource

__all__ = ["LayerData", "PlateSession"]

log = logging.getLogger("hcsfs.napari")

LayerData = tuple[Any, dict[str, Any], str]
COLORMAPS = ("cyan", "magenta", "yellow", "red", "green", "blue")
"""Colours of three or more channels (napari's CYMRGB); one channel is gray, two green and magenta."""
SESSION_KEY = "hcsfs_session"
ID_KEY = "hcsfs_id"


@dataclass
class _Layer:
    """What the session made: how to rebuild a layer for another well or a newer snapshot."""

    id: str
    kind: str  # "image", "labels", "points"
    scope: str  # "well" (follows the shown well and site) or "plate" (the montage)
    source: PlateSource | None
    resolve: Resolver | None
    channel: Index | None
    dtype: np.dtype | None
    table: Path | None = None
    keys: frozenset[PlaneKey] = frozenset()
    """The result planes the layer was built from (a refresh rebuilds it only when they changed)."""


class _Merged:
    """The union of a run's results as one source, for the layout of a run opened without its plate."""

    def __init__(self, sources: Sequence[PlateSource]) -> None:
        self._sources = list(sources)
        keys: set[PlaneKey] = set()
        for source in self._sources:
            keys.update(source.keys())
        self._keys = sorted(keys, key=sort_key)

    def keys(self) -> list[PlaneKey]:
        return self._keys

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        for source in self._sources:
            if key in set(source.keys()):
                return source.plane_format(key)
        raise KeyError(key.name)

    def describe(self) -> PlateDescription:
        return self._sources[0].describe()


class PlateSession:
    """A plate (and the runs shown over it) as napari layers."""

    def __init__(self, source: PlateSource | None, *, title: str, mount: Path | None = None,
                 runs: Iterable[RunFolder] = ()) -> None:
        self.source = source
        self.title = title
        self.mount = mount
        self.runs: dict[str, RunFolder] = {}
        self.snapshots: dict[str, RunSnapshot] = {}
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self._layers: dict[str, _Layer] = {}
        self._tables: dict[Path, tuple[pandas.DataFrame, dict[str, np.ndarray]]] = {}
        self.viewer: Any = None
        for run in runs:
            self.runs[run.name] = run
            self._signatures[run.name] = run.signature()
            self.snapshots[run.name] = run.snapshot()
        self._plate_keys = resolver(source.keys()) if source is not None else None
        self.layout = self._layout()
        self.montage = Montage.of(self.layout)
        self.well = self.layout.wells[0]
        self.site = self.layout.sites[0]

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, path: str | os.PathLike[str] | PlateSource, *, runs: Sequence[str | Path] = (),
             **options: Any) -> PlateSession:
        """A mount root, a run folder (in a mount or on disk) or any plate :func:`hcsfs.open_plate` opens.

        ``runs``: more runs to show, by name (runs of the mount) or as run folders on disk.
        """
        from hcsfs.sources import open_plate

        shown: list[RunFolder] = []
        mount: Path | None = None
        source: PlateSource | None
        if not isinstance(path, (str, os.PathLike)) or str(path).startswith("s3://"):
            source = open_plate(path, **options)  # type: ignore[arg-type]
            title = str(path) if isinstance(path, str) else source.describe().source
        else:
            folder = Path(path).absolute()
            run = find_run(folder) if folder.is_dir() and not is_mount_root(folder) else None
            if run is not None:
                shown.append(run)
                mount = run.mount
                source = FlatFolder.mount_root(mount) if mount is not None else None
            elif is_mount_root(folder):
                mount = folder
                source = FlatFolder.mount_root(folder)
            else:
                source = open_plate(folder, **options)
            title = str(folder)
        for extra in runs:
            shown.append(cls._run(extra, mount))
        return cls(source, title=title, mount=mount, runs=shown)

    def run_folder(self, run: str | Path) -> RunFolder:
        """Run ``run``: a run of this plate's mount by name, or a run folder (raises ``HcsfsError``)."""
        return self._run(run, self.mount)

    @staticmethod
    def _run(run: str | Path, mount: Path | None) -> RunFolder:
        from hcsfs.errors import HcsfsError

        if mount is not None and isinstance(run, str) and "/" not in run:
            return RunFolder.in_mount(mount, run)
        found = find_run(Path(run).absolute())
        if found is None:
            where = f" (runs of {mount}: {', '.join(mount_runs(mount)) or 'none'})" if mount else ""
            raise HcsfsError(f"{run}: not a run folder{where}")
        return found

    def _layout(self) -> PlateLayout:
        if self.source is not None:
            return PlateLayout.of(self.source)
        results = [s for snap in self.snapshots.values() for s in snap.results.values()]
        if not results:
            raise ValueError(f"{self.title}: the run has no output planes yet")
        return PlateLayout.of(_Merged(results))  # type: ignore[arg-type]

    # ---------------------------------------------------------------- layer data

    def _well_translate(self, well: str | None = None, site: int | None = None) -> tuple[float, ...]:
        y, x = self.montage.origin(well or self.well, self.site if site is None else site)
        pixel = self.layout.pixel_size_um or 1.0
        return (*([0.0] * (len(self.layout.axes) - 2)), y * pixel, x * pixel)

    def _meta(self, layer_id: str) -> dict[str, Any]:
        return {SESSION_KEY: self, ID_KEY: layer_id}

    def _data(self, spec: _Layer) -> Any:
        if spec.kind == "points":
            assert spec.table is not None
            return self._points(spec.table)[0]
        assert spec.source is not None and spec.resolve is not None and spec.channel is not None
        labels = spec.kind == "labels"
        if spec.scope == "plate":
            return montage_levels(spec.source, self.layout, spec.resolve, self.montage, spec.channel,
                                  labels=labels, dtype=spec.dtype, label=spec.id)
        return well_array(spec.source, self.layout, spec.resolve, self.well, spec.channel, dtype=spec.dtype,
                          label=spec.id)

    def _common(self, spec: _Layer, name: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"name": name, "metadata": self._meta(spec.id)}
        space = "micrometer" if self.layout.pixel_size_um else "pixel"
        if spec.scope == "plate":
            pixel = self.layout.pixel_size_um or 1.0
            kwargs.update(scale=(pixel, pixel), units=(space, space), axis_labels=self.layout.axes[-2:])
            if spec.kind != "points":
                kwargs["multiscale"] = True
        else:
            kwargs.update(scale=self.layout.scale, translate=self._well_translate(),
                          units=("pixel",) * (len(self.layout.axes) - 2) + (space, space),
                          axis_labels=self.layout.axes)
        return kwargs

    def _image(self, spec: _Layer, name: str, limits: tuple[float, float], colormap: str,
               blending: str) -> LayerData:
        self._layers[spec.id] = spec
        kwargs = self._common(spec, name)
        kwargs.update(contrast_limits=limits, colormap=colormap, blending=blending)
        return self._data(spec), kwargs, "image"

    def _labels(self, spec: _Layer, name: str) -> LayerData:
        self._layers[spec.id] = spec
        kwargs = self._common(spec, name)
        kwargs.update(opacity=0.5)
        return self._data(spec), kwargs, "labels"

    def plate_layers(self) -> list[LayerData]:
        """The montage and well layers of every channel of the plate (none for a run without plate)."""
        if self.source is None or self._plate_keys is None:
            return []
        layout, source = self.layout, self.source
        montages, wells = [], []
        for i, channel in enumerate(layout.channels):
            label = layout.channel_label(channel)
            colormap = "gray" if len(layout.channels) == 1 else (
                ("green", "magenta")[i] if len(layout.channels) == 2 else COLORMAPS[i % len(COLORMAPS)])
            sample = next((k for k in (PlaneKey(w, s, channel, layout.zs[0], layout.ts[0])
                                       for w in layout.wells[:4] for s in layout.sites)
                           if self._plate_keys(k) is not None), None)
            limits = sample_limits(source, sample, layout.dtype) if sample else (0.0, 1.0)
            plate = _Layer(f"plate:{channel}", "image", "plate", source, self._plate_keys, channel, None)
            well = _Layer(f"channel:{channel}", "image", "well", source, self._plate_keys, channel, None)
            montages.append(self._image(plate, f"{label} plate", limits, colormap,
                                        "translucent_no_depth" if i == 0 else "additive"))
            wells.append(self._image(well, label, limits, colormap, "opaque" if i == 0 else "additive"))
        return montages + wells

    def run_layers(self, name: str, *, known: Iterable[str] = ()) -> list[LayerData]:
        """Layers of run ``name``'s current snapshot that are not in ``known`` (layer ids)."""
        skip = set(known)
        snap = self.snapshots[name]
        out: list[LayerData] = []
        for result, source in snap.results.items():
            keys = list(source.keys())
            if not keys:
                continue
            dtype = np.dtype(source.plane_format(keys[0])[1])
            kind = "labels" if dtype.kind == "i" else "image"
            channels = sorted({k.channel for k in keys}, key=lambda v: (0, v, "") if isinstance(v, int)
                              else (1, 0, v))
            base = name if result == name else f"{name}/{result}"
            for channel in channels:
                mine = frozenset(k for k in keys if k.channel == channel)
                resolve = resolver(mine, any_z=True)
                label = base if len(channels) == 1 else f"{base} w{channel}"
                for scope in ("plate", "well"):
                    layer_id = f"result-{scope}:{base}:{channel}"
                    if layer_id in skip:
                        continue
                    spec = _Layer(layer_id, kind, scope, source, resolve, channel, dtype, keys=mine)
                    shown = f"{label} plate" if scope == "plate" else label
                    if kind == "labels":
                        out.append(self._labels(spec, shown))
                    else:
                        first = next(k for k in keys if k.channel == channel)
                        limits = sample_limits(source, first, dtype)
                        out.append(self._image(spec, shown, limits, "gray", "additive"))
        for table, path in snap.tables.items():
            layer_id = f"table:{name}/{table}"
            if layer_id in skip or not self._has_centers(path):
                continue
            spec = _Layer(layer_id, "points", "well", None, None, None, None, table=path)
            self._layers[layer_id] = spec
            coords, features = self._points(path)
            kwargs = self._common(spec, f"{name}/{table}")
            kwargs.update(features=features, size=6, face_color="transparent", border_color="yellow",
                          border_width=0.15, symbol="disc", ndim=len(self.layout.axes),
                          projection_mode="none")
            out.append((coords, kwargs, "points"))
        return out

    def layer_data(self) -> list[LayerData]:
        """Everything: the plate's layers, then each run's."""
        data = self.plate_layers()
        for name in self.runs:
            data += self.run_layers(name)
        return data

    # ---------------------------------------------------------------- tables

    def _has_centers(self, path: Path) -> bool:
        try:
            with open(path, encoding="utf-8") as file:
                header = file.readline().strip().split(",")
        except OSError:
            return False
        return "well" in header and any(y in header and x in header for y, x in CENTER_COLUMNS)

    def _table(self, path: Path) -> tuple[pandas.DataFrame, dict[str, np.ndarray]]:
        cached = self._tables.get(path)
        if cached is None:
            import pandas

            frame = pandas.read_csv(path, dtype={"well": str})
            cached = self._tables[path] = (frame, frame.groupby("well").indices)
        return cached

    def _points(self, path: Path) -> tuple[np.ndarray, pandas.DataFrame]:
        """The shown well's rows of a table as point coordinates ``(t,) site, z, y, x`` and features."""
        frame, by_well = self._table(path)
        rows = frame.iloc[by_well.get(self.well, np.empty(0, np.intp))].reset_index(drop=True)
        ycol, xcol = next((y, x) for y, x in CENTER_COLUMNS if y in frame.columns and x in frame.columns)
        layout = self.layout
        sites = {s: i for i, s in enumerate(layout.sites)}
        zs = {str(z): i for i, z in enumerate(layout.zs)}
        ts = {str(t): i for i, t in enumerate(layout.ts)}
        site_index = np.array([sites.get(int(s), -1) for s in rows["site"]], np.intp) if "site" in rows \
            else np.zeros(len(rows), np.intp)
        keep = site_index >= 0
        rows, site_index = rows[keep].reset_index(drop=True), site_index[keep]
        z_values = [str(z) for z in rows["z"]] if "z" in rows else ["1"] * len(rows)
        t_values = [str(t) for t in rows["t"]] if "t" in rows else [str(layout.ts[0])] * len(rows)
        coords: list[np.ndarray] = []
        features: list[int] = []
        for i, (z, t) in enumerate(zip(z_values, t_values, strict=True)):
            # A row of a projection (z "zmax") belongs to every z of the plate.
            z_list = [zs[z]] if z in zs else list(range(len(layout.zs)))
            for zi in z_list:
                point = [site_index[i], zi, float(rows[ycol].iloc[i]), float(rows[xcol].iloc[i])]
                if len(layout.ts) > 1:
                    point.insert(0, ts.get(t, 0))
                coords.append(np.asarray(point, np.float64))
                features.append(i)
        array = np.stack(coords) if coords else np.empty((0, len(layout.axes)))
        return array, rows.iloc[features].reset_index(drop=True)

    # ---------------------------------------------------------------- a viewer

    def bind(self, viewer: Any) -> None:
        """Adopt this session's layers in ``viewer`` (adding those it lacks); follow its site slider."""
        from napari.layers import Layer

        self.viewer = viewer
        present = {layer.metadata.get(ID_KEY) for layer in viewer.layers
                   if layer.metadata.get(SESSION_KEY) is self}
        for data, kwargs, kind in self.layer_data():
            if kwargs["metadata"][ID_KEY] not in present:
                viewer.layers.append(Layer.create(data, kwargs, kind))
        for layer in self.layers():
            self._style(layer)
        viewer.dims.axis_labels = self.layout.axes
        if self.layout.pixel_size_um:
            viewer.canvas.overlays["scale_bar"].visible = True
        viewer.dims.events.current_step.connect(self._on_step)

    def _style(self, layer: Any) -> None:
        """What layer data tuples cannot say: integer images' contrast slider spans the dtype (the
        limits come from a sample), and labels on the montage are drawn as outlines."""
        spec = self._spec(layer)
        if spec.kind == "image":
            dtype = np.dtype(layer.dtype)
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                layer.contrast_limits_range = (float(info.min), float(info.max))
        elif spec.kind == "labels" and spec.scope == "plate":
            layer.contour = 1
            layer.opacity = 0.8

    def layers(self, kind: str | None = None, scope: str | None = None) -> list[Any]:
        """The bound viewer's layers of this session (optionally of one kind and scope)."""
        if self.viewer is None:
            return []
        out = []
        for layer in self.viewer.layers:
            if layer.metadata.get(SESSION_KEY) is not self:
                continue
            spec = self._layers.get(layer.metadata.get(ID_KEY))
            if spec is not None and kind in (None, spec.kind) and scope in (None, spec.scope):
                out.append(layer)
        return out

    def _spec(self, layer: Any) -> _Layer:
        return self._layers[layer.metadata[ID_KEY]]

    @property
    def site_axis(self) -> int:
        return self.layout.axes.index("site")

    def _on_step(self, event: Any = None) -> None:
        if self.viewer is None:
            return
        step = self.viewer.dims.current_step
        offset = len(step) - len(self.layout.axes)
        index = int(step[offset + self.site_axis]) if offset >= 0 else 0
        site = self.layout.sites[min(max(index, 0), len(self.layout.sites) - 1)]
        if site != self.site:
            self.site = site
            self._move()

    def _move(self) -> None:
        translate = self._well_translate()
        for layer in self.layers(scope="well"):
            layer.translate = translate

    def show(self, well: str | None = None, site: int | None = None) -> None:
        """Show ``well`` (its layers get its planes) and ``site`` (the site slider moves there)."""
        if well is not None and well != self.well:
            if well not in self.layout.wells:
                raise ValueError(f"{well}: not a well of {self.title}")
            self.well = well
            for layer in self.layers(scope="well"):
                spec = self._spec(layer)
                if spec.kind == "points":
                    coords, features = self._points(spec.table)  # type: ignore[arg-type]
                    layer.data = coords
                    layer.features = features
                else:
                    layer.data = self._data(spec)
        if site is not None:
            if site not in self.layout.sites:
                raise ValueError(f"site {site}: not a site of {self.title}")
            self.site = site
            if self.viewer is not None:
                offset = self.viewer.dims.ndim - len(self.layout.axes)
                self.viewer.dims.set_current_step(offset + self.site_axis, self.layout.sites.index(site))
        self._move()

    # ---------------------------------------------------------------- following runs

    def follow(self, run: str | Path | RunFolder) -> RunFolder:
        """Show run ``run`` (a run of the mount by name, or a run folder) and keep it current."""
        folder = run if isinstance(run, RunFolder) else self.run_folder(run)
        self.runs[folder.name] = folder
        self._signatures.pop(folder.name, None)
        self.poll(folder.name)
        return folder

    def following(self) -> list[str]:
        """Followed runs that have not ended yet (their outputs may still change)."""
        return [name for name in self.runs if not self.snapshots[name].finished]

    def poll(self, only: str | None = None) -> int:
        """Read the status of each followed run; refresh what changed. Returns the layers touched."""
        touched = 0
        for name, run in list(self.runs.items()):
            if only is not None and name != only:
                continue
            signature = run.signature()
            if self._signatures.get(name) == signature and name in self.snapshots:
                continue
            self._signatures[name] = signature
            self.snapshots[name] = run.snapshot()
            for path in self.snapshots[name].tables.values():
                self._tables.pop(path, None)  # a re-submitted run rewrites its tables
            touched += self._refresh(name)
        return touched

    def _refresh(self, name: str) -> int:
        """Bring run ``name``'s layers up to its latest snapshot (new keys, new results, tables)."""
        if self.source is None:
            self.layout = self._layout()
            self.montage = Montage.of(self.layout)
            if self.well not in self.layout.wells:
                self.well = self.layout.wells[0]
            if self.site not in self.layout.sites:
                self.site = self.layout.sites[0]
        if self.viewer is None:
            return 0
        from napari.layers import Layer

        snap = self.snapshots[name]
        relayout = self.source is None
        touched = 0
        existing = {layer.metadata[ID_KEY]: layer for layer in self.layers()}
        for layer_id, layer in existing.items():
            spec = self._layers[layer_id]
            base = layer_id.split(":", 2)[1] if layer_id.startswith("result-") else None
            if base is None or not (base == name or base.startswith(f"{name}/")):
                continue
            result = name if base == name else base[len(name) + 1 :]
            source = snap.results.get(result)
            if source is None:
                continue
            keys = frozenset(k for k in source.keys() if k.channel == spec.channel)
            if keys == spec.keys and not relayout:
                continue
            spec.source, spec.resolve, spec.keys = source, resolver(keys, any_z=True), keys
            layer.data = self._data(spec)
            if spec.scope == "well":
                layer.translate = self._well_translate()
            touched += 1
        for data, kwargs, kind in self.run_layers(name, known=existing):
            layer = Layer.create(data, kwargs, kind)
            self.viewer.layers.append(layer)
            self._style(layer)
            touched += 1
        if relayout:
            self._move()
        return touched

