"""The run's tables: measurement tables streamed to disk, ``image.csv``, ``wells.csv``, Parquet, heatmaps.

Rows never pile up in memory. Each unit's rows are encoded as CSV text when its outcome arrives and
appended to a spool file per table; the index (unit -> offset, length) is all that is kept. When the run
is done, each table is written in unit order by copying the spooled blocks (``tables/<table>.csv``), and,
with ``table_format: parquet``, converted by pyarrow's streaming CSV reader. Per-well summaries need all
objects of a well: the values of a well are buffered only until its last unit arrives (units run in
plate order, so few wells are open at once), then reduced to one ``wells.csv`` row.

Version-1 ``tables:`` (``objects``, ``object_counts``) keep their layout: one row per object with the
plane's ``well, site, channel, z, t``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from hcsfs.naming import PlaneKey, parse_name, parse_well, sort_key
from hcsfs.pipelines.analysis import aggregated_columns, well_columns
from hcsfs.pipelines.journal import append_durably
from hcsfs.pipelines.measure import measure_columns
from hcsfs.pipelines.outputs import KEY_COLUMNS, RunOutput, tables_csv, write_atomic
from hcsfs.pipelines.spec import PipelineSpec
from hcsfs.pipelines.units import Unit
from hcsfs.pipelines.worker import UnitOutcome

__all__ = ["ANALYSIS_KEYS", "AnalysisTables", "LegacyTables", "format_value"]

ANALYSIS_KEYS = ("well", "site", "z", "t")
"""Key columns of analysis tables: a unit holds every channel, so rows name no channel."""


def format_value(value: Any) -> str:
    """CSV text of one value: integers as such, floats with 10 significant digits, NaN as empty."""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{float(value):.10g}"
    return str(value)


def _block(key_values: list[list[Any]], columns: Mapping[str, np.ndarray], order: Iterable[str]) -> bytes:
    """CSV text of the rows of some planes: key values per plane repeated for each of its objects."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    arrays = [columns[c] for c in order]
    for keys, start, stop in key_values:
        for i in range(start, stop):
            writer.writerow([*keys, *(format_value(a[i]) for a in arrays)])
    return buffer.getvalue().encode()


class _Spool:
    """An append-only file of CSV blocks, one per unit, copied out in unit order at the end.

    ``resume``: keep what an interrupted run spooled; blocks of its committed units are indexed again by
    :meth:`restore`, anything after them (a unit that never committed) is ignored.
    """

    def __init__(self, path: Path, *, resume: bool = False) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "ab" if resume else "wb")  # noqa: SIM115 - closed by finish()
        self._index: dict[int, tuple[int, int]] = {}
        self._offset = self._file.tell()

    def append(self, unit: int, data: bytes) -> None:
        self._file.write(data)
        self._index[unit] = (self._offset, len(data))
        self._offset += len(data)

    def durable(self, unit: int) -> list[int] | None:
        """Flush and fsync; where ``unit``'s block lies (for the unit journal), ``None`` if it has none."""
        self._file.flush()
        os.fsync(self._file.fileno())
        found = self._index.get(unit)
        return None if found is None else [found[0], found[1]]

    def restore(self, unit: int, where: list[int] | None) -> bytes:
        """Index a committed unit's block again; returns the block."""
        if where is None:
            return b""
        self._index[unit] = (int(where[0]), int(where[1]))
        with open(self.path, "rb") as source:
            source.seek(int(where[0]))
            return source.read(int(where[1]))

    def rows_written(self) -> int:
        return len(self._index)

    def copy_to(self, target: Path, header: bytes) -> None:
        self._file.flush()
        tmp = target.with_name(f".{target.name}.tmp")
        with open(self.path, "rb") as source, open(tmp, "wb") as out:
            out.write(header)
            for unit in sorted(self._index):
                offset, length = self._index[unit]
                source.seek(offset)
                out.write(source.read(length))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)

    def close(self, *, remove: bool) -> None:
        """Close; ``remove``: delete the spool too (kept after an incomplete run, for resuming it)."""
        self._file.close()
        if remove:
            self.path.unlink(missing_ok=True)


def _header(columns: Iterable[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(list(columns))
    return buffer.getvalue().encode()


class AnalysisTables:
    """``measure`` tables, ``image.csv`` and ``wells.csv`` of one analysis run."""

    def __init__(self, spec: PipelineSpec, units: list[Unit], folder: Path, output: RunOutput, *,
                 resume: bool = False) -> None:
        self.spec = spec
        self.folder = folder
        self.output = output
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._columns = {m.table: measure_columns(m.features, m.channels) for m in spec.measures}
        self._aggregated = {m.table: aggregated_columns(m) for m in spec.measures}
        self._objects = {m.table: m.objects for m in spec.measures}
        self._spools = {t: _Spool(folder / f".{t}.spool", resume=resume) for t in self._columns}
        self._image = _Spool(folder / ".image.spool", resume=resume)
        self._values = _Spool(folder / ".values.spool", resume=resume)
        self._image_columns = [
            c for m in spec.measures
            for c in (f"Count_{m.objects}", *(f"{a}_{m.objects}" for a in self._aggregated[m.table]))]
        self._units_left: dict[str, int] = {}
        for unit in units:
            well = unit.keys[0].well if unit.keys else None
            if well is not None:
                self._units_left[well] = self._units_left.get(well, 0) + 1
        self._open_wells: dict[str, dict[str, list[np.ndarray]]] = {}
        self.well_rows: dict[str, dict[str, float]] = {}
        """Finished wells: column -> value (``wells.csv``; heatmaps read it)."""
        self.objects = 0

    def take(self, outcome: UnitOutcome | None, unit: Unit) -> None:
        """Fold one unit's rows in (``None`` or an outcome with an error: the unit has no rows)."""
        measurements = outcome.measurements if outcome is not None and outcome.error is None else {}
        blocks: dict[str, bytes] = {}
        image_rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for table, planes in measurements.items():
            objects = self._objects[table]
            keys_and_ranges: list[list[Any]] = []
            merged: dict[str, list[np.ndarray]] = {c: [] for c in self._columns[table]}
            start = 0
            for key, columns in planes:
                count = len(columns["ObjectNumber"])
                keys = [key.well, key.site, key.z, key.t]
                keys_and_ranges.append([keys, start, start + count])
                start += count
                for column in merged:
                    merged[column].append(columns[column])
                row = image_rows.setdefault((key.well, key.site, key.z, key.t), {})
                row[f"Count_{objects}"] = count
                for column in self._aggregated[table]:
                    values = columns[column]
                    row[f"{column}_{objects}"] = float(np.mean(values)) if count else math.nan
            joined = {c: np.concatenate(v) if v else np.empty(0) for c, v in merged.items()}
            blocks[table] = _block(keys_and_ranges, joined, self._columns[table])
            with self._lock:
                self.objects += start
            self._add_to_well(unit, table, joined)
        image_text = self._image_block(image_rows)
        index = outcome.index if outcome is not None else 0
        with self._lock:
            for table, data in blocks.items():
                self._spools[table].append(index, data)
            if image_text:
                self._image.append(index, image_text)
            if measurements:
                self._values.append(index, self._values_block(measurements))
            self._unit_arrived(unit)

    def _values_block(self, measurements: Mapping[str, list[tuple[PlaneKey, dict[str, np.ndarray]]]]
                      ) -> bytes:
        """The values wells.csv summarizes, exactly (float64), for resuming: per table, the object
        count, then each aggregated column."""
        parts: list[np.ndarray] = []
        for table in self._columns:
            planes = measurements.get(table, [])
            parts.append(np.asarray([sum(len(c["ObjectNumber"]) for _, c in planes)], dtype=np.float64))
            for column in self._aggregated[table]:
                parts += [np.asarray(c[column], dtype=np.float64) for _, c in planes]
        return np.concatenate(parts).tobytes() if parts else b""

    def commit(self, index: int) -> dict[str, Any]:
        """Make unit ``index``'s rows durable; what the unit journal records to find them again."""
        with self._lock:
            return {"tables": {t: spool.durable(index) for t, spool in self._spools.items()},
                    "image": self._image.durable(index), "values": self._values.durable(index)}

    def restore(self, unit: Unit, record: Mapping[str, Any]) -> None:
        """A unit an interrupted run committed: index its rows again and count them into its well."""
        index = int(record["index"])
        with self._lock:
            self._image.restore(index, record.get("image"))
            for table, where in record.get("tables", {}).items():
                if table in self._spools:
                    self._spools[table].restore(index, where)
            values = np.frombuffer(self._values.restore(index, record.get("values")), dtype=np.float64)
        position = 0
        for table in self._columns if values.size else ():
            count = int(values[position])
            position += 1
            columns: dict[str, np.ndarray] = {"ObjectNumber": np.empty(count)}
            for column in self._aggregated[table]:
                columns[column] = values[position:position + count]
                position += count
            with self._lock:
                self.objects += count
            self._add_to_well(unit, table, columns)
        with self._lock:
            self._unit_arrived(unit)

    def _image_block(self, rows: Mapping[tuple[Any, ...], Mapping[str, Any]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for key in sorted(rows, key=_image_order):
            row = rows[key]
            writer.writerow([*key, *(format_value(row.get(c, math.nan)) for c in self._image_columns)])
        return buffer.getvalue().encode()

    def _add_to_well(self, unit: Unit, table: str, columns: Mapping[str, np.ndarray]) -> None:
        well = unit.keys[0].well
        with self._lock:
            buffers = self._open_wells.setdefault(well, {})
            objects = self._objects[table]
            buffers.setdefault(f"#count_{table}", []).append(np.asarray([len(columns["ObjectNumber"])]))
            for column in self._aggregated[table]:
                buffers.setdefault(f"{column}_{objects}", []).append(columns[column])

    def _unit_arrived(self, unit: Unit) -> None:
        """Called with the lock held: a well whose last unit arrived becomes a ``wells.csv`` row."""
        if not unit.keys:
            return
        well = unit.keys[0].well
        self._units_left[well] -= 1
        if self._units_left[well] == 0:
            self._close_well(well)

    def _close_well(self, well: str) -> None:
        buffers = self._open_wells.pop(well, {})
        row: dict[str, float] = {}
        for measure in self.spec.measures:
            counts = buffers.get(f"#count_{measure.table}", [])
            row[f"Count_{measure.objects}"] = float(sum(int(c.sum()) for c in counts))
            for column in self._aggregated[measure.table]:
                name = f"{column}_{measure.objects}"
                values = np.concatenate(buffers[name]) if buffers.get(name) else np.empty(0)
                row[name] = float(np.mean(values)) if values.size else math.nan
                row[f"Median_{name}"] = float(np.median(values)) if values.size else math.nan
        self.well_rows[well] = row

    def finish(self, complete: bool) -> list[str]:
        """Write the tables if the run completed; returns log lines. The spool files are removed then,
        and kept otherwise (a resumed run continues them)."""
        lines: list[str] = []
        try:
            if not complete:
                return lines
            with self._lock:
                for well in list(self._open_wells):
                    self._close_well(well)  # units that never ran (a stopped run) leave wells open
            for table, spool in self._spools.items():
                path = self.folder / f"{table}.csv"
                spool.copy_to(path, _header((*ANALYSIS_KEYS, *self._columns[table])))
                self.output.set_table(path.name, path)
                lines.append(f"table {path.name}: rows of {spool.rows_written()} units")
            image = self.folder / "image.csv"
            self._image.copy_to(image, _header((*ANALYSIS_KEYS, *self._image_columns)))
            self.output.set_table(image.name, image)
            wells = self.folder / "wells.csv"
            columns = well_columns(self.spec)
            data = tables_csv(("well", *columns), ({"well": w, **self.well_rows[w]}
                                                    for w in sorted(self.well_rows, key=parse_well)),
                              format_value)
            write_atomic(wells, data)
            self.output.set_table(wells.name, wells)
            lines.append(f"wells.csv: {len(self.well_rows)} wells, {self.objects} objects")
            if self.spec.table_format == "parquet":
                for table in (*self._spools, "image", "wells"):
                    self.output.set_table(f"{table}.parquet", write_parquet(self.folder / f"{table}.csv"))
            return lines
        finally:
            for spool in (*self._spools.values(), self._image, self._values):
                spool.close(remove=complete)


def _image_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return sort_key(PlaneKey(key[0], key[1], 1, key[2], key[3]))


def write_parquet(csv_path: Path) -> Path:
    """``<table>.parquet`` beside a CSV table, streamed batch by batch (never the whole table in memory)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    target = csv_path.with_suffix(".parquet")
    tmp = target.with_name(f".{target.name}.tmp")
    reader = pacsv.open_csv(csv_path, read_options=pacsv.ReadOptions(block_size=1 << 22),
                            convert_options=pacsv.ConvertOptions(strings_can_be_null=True,
                                                                 column_types=_key_types()))
    writer = None
    try:
        for batch in reader:
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema)
            writer.write_batch(batch)
        if writer is None:
            writer = pq.ParquetWriter(tmp, reader.schema)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, target)
    return target


def _key_types() -> dict[str, Any]:
    import pyarrow as pa

    # z and t are strings when a reduction named them (zmax); the site and well always are what they are
    return {"well": pa.string(), "z": pa.string(), "t": pa.string()}


class LegacyTables:
    """Version-1 ``tables:`` rows, written sorted by plane when the run is done."""

    def __init__(self, spec: PipelineSpec, registry: Any, folder: Path, output: RunOutput, *,
                 resume: bool = False) -> None:
        self.spec, self.registry, self.folder, self.output = spec, registry, folder, output
        self._rows: dict[str, list[tuple[PlaneKey, dict[str, Any]]]] = {}
        self._by_unit: dict[int, list[tuple[str, PlaneKey, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        self._spool = folder / ".legacy.jsonl"
        self._saved: dict[int, list[Any]] = {}
        if resume and self._spool.exists():
            for line in self._spool.read_bytes().splitlines():
                try:
                    record = json.loads(line)
                    self._saved[int(record["index"])] = record["rows"]
                except (ValueError, KeyError, TypeError):
                    continue
        elif self._spool.exists():
            self._spool.unlink()

    def take(self, outcome: UnitOutcome | None, unit: Unit) -> None:
        if outcome is None or outcome.error is not None:
            return
        with self._lock:
            self._by_unit[outcome.index] = outcome.legacy_rows
            for table, key, row in outcome.legacy_rows:
                self._rows.setdefault(table, []).append((key, row))

    def commit(self, index: int) -> dict[str, Any]:
        """Write unit ``index``'s rows durably (one fsynced JSON line per unit)."""
        with self._lock:
            rows = [[table, key.name, row] for table, key, row in self._by_unit.pop(index, [])]
        append_durably(self._spool, {"index": index, "rows": rows})
        return {}

    def restore(self, unit: Unit, record: Mapping[str, Any]) -> None:
        with self._lock:
            for table, name, row in self._saved.get(int(record["index"]), []):
                self._rows.setdefault(table, []).append((parse_name(name), row))

    def finish(self, complete: bool) -> list[str]:
        lines: list[str] = []
        if not complete:
            return lines
        self.folder.mkdir(parents=True, exist_ok=True)
        for step in self.spec.steps:
            definition = self.registry.get(step.func)
            for table in step.tables:
                columns = (*KEY_COLUMNS, *definition.tables[table].columns)
                rows = sorted(self._rows.get(table, []), key=lambda r: (sort_key(r[0]), r[1].get("label", 0)))
                data = tables_csv(columns, ({a: getattr(key, a) for a in KEY_COLUMNS} | row
                                            for key, row in rows))
                path = self.folder / f"{table}.csv"
                write_atomic(path, data)
                self.output.set_table(path.name, path)
                lines.append(f"table {table}.csv: {len(rows)} rows")
        self._spool.unlink(missing_ok=True)
        return lines
