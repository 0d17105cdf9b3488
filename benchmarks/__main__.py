"""Run every ``benchmarks/bench_*.py``, print one table of ratios and write ``docs/benchmarks.md``.

Each module exposes ``run(workdir: Path) -> list[dict]`` with rows ``{"case", "baseline", "ratio",
"goal", "detail"}``; a ratio compares hcsfs with its baseline measured in the same run, so figures from
different machines stay comparable. ``python -m benchmarks NAME ...`` runs only the named modules.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
    if selected:
        names = [n for n in names if n in selected or n.removeprefix("bench_") in selected]
    return names


def _table(rows: list[dict]) -> str:
    lines = ["| case | baseline | ratio | goal | detail |", "| --- | --- | ---: | --- | --- |"]
    for row in rows:
        ratio = row.get("ratio")
        shown = f"{ratio:.2f}" if isinstance(ratio, (int, float)) else str(ratio)
        lines.append(f"| {row['case']} | {row.get('baseline', '')} | {shown} | {row.get('goal', '')} "
                     f"| {row.get('detail', '')} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    workdir = Path(os.environ.get("HCSFS_BENCH_DIR", ROOT / "bench-out"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    failed = []
    for name in _modules(argv):
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            new = module.run(workdir / name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        for row in new:
            print(f"   {row['case']}: {row.get('ratio')} (goal {row.get('goal', '-')})", flush=True)
        rows.extend(new)
    table = _table(rows)
    print("\n" + table)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# Benchmarks\n\nWritten by `make bench` on {when} ({platform.machine()}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}).\n"
              "Each ratio compares hcsfs with a baseline measured in the same run; the goal says "
              "which way is better.\n\n")
    if not argv:  # a partial run does not overwrite the full report
        from benchmarks.plot import plot_ratios

        plot_ratios(rows, ROOT / "docs" / "benchmarks.png")
        (ROOT / "docs" / "benchmarks.md").write_text(
            header + "![ratios against their goals](benchmarks.png)\n\n" + table + "\n")
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
