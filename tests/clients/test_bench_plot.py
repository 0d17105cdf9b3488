"""benchmarks/plot.py: goals parsed and judged, and a PNG written for mixed rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from benchmarks.plot import goal_met, parse_goal, plot_ratios


@pytest.mark.parametrize(("goal", "parsed"), [(">= 0.8", (">=", 0.8)), ("<=2", ("<=", 2.0)),
                                             ("> 1x", (">", 1.0)), ("", None), ("fast", None), (None, None)])
def test_parse_goal(goal: object, parsed: tuple[str, float] | None) -> None:
    assert parse_goal(goal) == parsed


def test_goal_met() -> None:
    assert goal_met(0.93, ">= 0.8") is True
    assert goal_met(0.5, ">= 0.8") is False
    assert goal_met(2.0, "<= 2") is True
    assert goal_met("skipped", "<= 2") is None
    assert goal_met(float("nan"), "<= 2") is None
    assert goal_met(3.0, "") is None


def test_plot_writes_a_png(tmp_path: Path) -> None:
    rows = [{"case": "passthrough", "ratio": 0.93, "goal": ">= 0.8"},
            {"case": "encoded", "ratio": 0.55, "goal": ">= 0.8"},
            {"case": "listing", "ratio": 1.7, "goal": "<= 2"},
            {"case": "zarr", "ratio": "failed", "goal": "<= 2"},
            {"case": "no goal", "ratio": 3.2}]
    path = tmp_path / "docs" / "benchmarks.png"
    plot_ratios(rows, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 500
