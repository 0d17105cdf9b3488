"""MetaXpress ``.HTD`` plate files: what the instrument says it acquired.

An HTD is line-oriented text, each line a quoted key followed by comma-separated values::

    "HTSInfoFile", Version 1.0
    "TimePoints", 2
    "XWells", 12
    "YWells", 8
    "WellsSelection1", FALSE, TRUE, ...        (one TRUE/FALSE per column of row 1)
    "Sites", TRUE
    "XSites", 3
    "YSites", 3
    "SiteSelection1", TRUE, FALSE, TRUE
    "Waves", TRUE
    "NWavelengths", 2
    "WaveName1", "DAPI"
    "WaveCollect1", 1
    "EndFile"

Lines end in CRLF, and free-text values (``Description``) may hold cp1252 bytes, so the file is read as
bytes and decoded UTF-8 first, then cp1252, then latin-1 (which cannot fail).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from hcsfs.errors import PlateFormatError
from hcsfs.naming import format_well

__all__ = ["Htd", "find_htd", "parse_htd", "read_htd"]


@dataclass(frozen=True, slots=True)
class Htd:
    """The acquisition an HTD describes; sites are numbered 1.. over the selected site cells."""

    path: Path | None
    rows: int
    columns: int
    wells: frozenset[str]
    sites: int
    has_sites: bool
    timepoints: int
    zsteps: int
    waves: dict[int, str]
    """Collected wavelengths: number → name (``WaveCollect`` 0 leaves a wavelength out)."""
    has_waves: bool
    values: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def plate_extra(self) -> dict[str, object]:
        return {
            "htd": self.path.name if self.path else None,
            "plate_rows": self.rows,
            "plate_columns": self.columns,
            "description": (self.values.get("Description") or [""])[0],
        }


def find_htd(folder: Path) -> Path | None:
    """The plate's HTD: a ``*.htd`` file (any case) directly in ``folder``; the first by name."""
    found = sorted(
        Path(entry.path) for entry in os.scandir(folder)
        if entry.name.lower().endswith(".htd") and not entry.name.startswith("._")
        and entry.is_file()
    )
    return found[0] if found else None


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _int(values: dict[str, list[str]], key: str, default: int) -> int:
    raw = values.get(key)
    if not raw or not raw[0]:
        return default
    try:
        return int(float(raw[0]))
    except ValueError:
        raise PlateFormatError(f"HTD key {key!r}: {raw[0]!r} is not a number") from None


def _flag(values: dict[str, list[str]], key: str, default: bool) -> bool:
    raw = values.get(key)
    return default if not raw else raw[0].strip().upper() in ("TRUE", "1")


def _selection(values: dict[str, list[str]], prefix: str, rows: int, columns: int) -> list[list[bool]]:
    """``<prefix><row>`` lines as a rows x columns grid; a plate without them selects everything."""
    if not any(key.startswith(prefix) for key in values):
        return [[True] * columns for _ in range(rows)]
    grid = []
    for row in range(1, rows + 1):
        cells = [v.strip().upper() == "TRUE" for v in values.get(f"{prefix}{row}", [])]
        grid.append((cells + [False] * columns)[:columns])
    return grid


def parse_htd(text: str, path: Path | None = None) -> Htd:
    """Parse HTD text (already decoded)."""
    values: dict[str, list[str]] = {}
    for fields in csv.reader(text.splitlines(), skipinitialspace=True):
        if fields and fields[0].strip():
            values[fields[0].strip()] = [f.strip() for f in fields[1:]]
    if "HTSInfoFile" not in values and "XWells" not in values:
        raise PlateFormatError(f"{path or 'HTD'}: not an HTD file (no HTSInfoFile or XWells line)")
    rows, columns = _int(values, "YWells", 0), _int(values, "XWells", 0)
    if rows < 1 or columns < 1:
        raise PlateFormatError(f"{path or 'HTD'}: XWells/YWells missing or zero")
    wells = frozenset(
        format_well(r + 1, c + 1)
        for r, line in enumerate(_selection(values, "WellsSelection", rows, columns))
        for c, selected in enumerate(line) if selected
    )
    has_sites = _flag(values, "Sites", False)
    sites = 1
    if has_sites:
        y_sites, x_sites = _int(values, "YSites", 1), _int(values, "XSites", 1)
        sites = sum(map(sum, _selection(values, "SiteSelection", y_sites, x_sites))) or 1
    has_waves = _flag(values, "Waves", "NWavelengths" in values)
    waves = {1: ""}
    if has_waves:
        waves = {
            w: (values.get(f"WaveName{w}") or [""])[0]
            for w in range(1, _int(values, "NWavelengths", 1) + 1)
            if _int(values, f"WaveCollect{w}", 1) != 0
        }
    zsteps = _int(values, "ZSteps", 1) if _flag(values, "ZSeries", True) else 1
    return Htd(
        path=path, rows=rows, columns=columns, wells=wells, sites=sites, has_sites=has_sites,
        timepoints=max(1, _int(values, "TimePoints", 1)), zsteps=max(1, zsteps),
        waves=waves, has_waves=has_waves, values=values,
    )


def read_htd(path: Path) -> Htd:
    """Read and parse an HTD file (CRLF or LF; UTF-8, cp1252 or latin-1)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlateFormatError(f"{path}: cannot read the HTD: {exc.strerror or exc}") from exc
    return parse_htd(_decode(data), path)
