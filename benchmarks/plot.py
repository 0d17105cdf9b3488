"""``docs/benchmarks.png``: every benchmark ratio against its goal, one bar per case.

Rows are those of ``docs/benchmarks.md``: ``case``, ``ratio`` (a number, or text when a case could
not run) and ``goal`` (``">= 0.8"``, ``"<= 2"``, ``"> 1"``, ``"< 0.5"``; empty when there is none).
Bars are green when the goal is met, red when not, grey without a goal or a number; the goal is drawn
as a black tick on the bar's row. The x axis is logarithmic so 0.1x and 10x sit equally far from 1x.
"""

from __future__ import annotations

import math
import operator
import re
from pathlib import Path

_GOAL = re.compile(r"^\s*(>=|<=|>|<|=)\s*([0-9.eE+-]+)\s*x?\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "=": operator.eq}


def parse_goal(goal: object) -> tuple[str, float] | None:
    """``">= 0.8"`` -> ``(">=", 0.8)``; None for an empty or unreadable goal."""
    match = _GOAL.match(str(goal or ""))
    if match is None:
        return None
    try:
        return match.group(1), float(match.group(2))
    except ValueError:
        return None


def goal_met(ratio: object, goal: object) -> bool | None:
    parsed = parse_goal(goal)
    if parsed is None or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        return None
    return bool(_OPS[parsed[0]](ratio, parsed[1]))


def plot_ratios(rows: list[dict], path: Path) -> None:
    """Write the chart of ``rows`` to ``path`` (PNG), creating its folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {True: "#2e8b57", False: "#c0392b", None: "#9e9e9e"}
    numbers = [r["ratio"] for r in rows if isinstance(r.get("ratio"), (int, float)) and r["ratio"] > 0]
    goals = [g[1] for g in (parse_goal(r.get("goal")) for r in rows) if g is not None and g[1] > 0]
    low = min(numbers + goals + [1.0]) / 2
    high = max(numbers + goals + [1.0]) * 2
    height = max(2.0, 0.38 * len(rows) + 1.2)
    figure, axes = plt.subplots(figsize=(9, height), dpi=110)
    for index, row in enumerate(rows):
        ratio, goal = row.get("ratio"), row.get("goal")
        drawable = isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0
        width = ratio if drawable else low
        axes.barh(index, width - low, left=low, color=colours[goal_met(ratio, goal)], height=0.6)
        label = f"{ratio:.2f}" if drawable else str(ratio)
        parsed = parse_goal(goal)
        right = max(width, parsed[1] if parsed is not None and parsed[1] > 0 else width)
        axes.text(right * 1.08, index, f"{label}  (goal {goal})" if goal else label, va="center",
                  fontsize=8)
        if parsed is not None and parsed[1] > 0:
            axes.plot([parsed[1], parsed[1]], [index - 0.4, index + 0.4], color="black", linewidth=2)
    axes.set_xscale("log")
    axes.set_xlim(low, high * 4)
    axes.axvline(1.0, color="#555555", linewidth=0.8, linestyle=":")
    axes.set_yticks(range(len(rows)), [str(r.get("case", "")) for r in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("ratio (hcsfs vs baseline, same run)  -  black tick: goal")
    axes.set_title("hcsfs benchmarks: ratios against their goals")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
