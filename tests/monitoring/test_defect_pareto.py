"""The yield signal's Pareto of the inspectors' defect types, grouped by the line's taxonomy:
its labels and colours, and a grey bar for a name no taxonomy knows."""

import pytest

from monitoring import charts, detectors, selectors
from tests.factories import ProductionLineFactory


def samples(styles):
    return detectors.YieldSamples(
        hours=["2026-12-01T00:00:00+00:00"],
        defects=[3],
        totals=[10],
        defect_types={"crack": 2, "blowhole": 1},
        defect_type_styles=styles,
    )


@pytest.mark.django_db
def test_the_pareto_shows_the_taxonomys_labels_and_colours():
    line = ProductionLineFactory(code="L1")
    styles = selectors.defect_type_styles(line=line)
    assert styles["crack"]["label"] == "Crack" and styles["crack"]["colour"] == "#ff3b30"
    pareto = detectors.yield_signal(samples(styles)).evidence["pareto"]
    entries = [(e["name"], e["label"], e["colour"], e["severity"]) for e in pareto["entries"]]
    assert entries == [
        ("crack", "Crack", "#ff3b30", "fail"),
        ("blowhole", "blowhole", detectors.UNKNOWN_TYPE_COLOUR, None),
    ]
    svg = charts.pareto_bars(pareto["entries"], title="Defect types")
    assert 'fill="#ff3b30"' in svg and ">Crack<" in svg and ">blowhole<" in svg


def test_a_bad_colour_never_reaches_the_svg():
    entries = [{"name": "x", "label": "<b>", "colour": '"/><script>', "count": 1,
                "share": 1.0, "cumulative_share": 1.0}]  # fmt: skip
    svg = charts.pareto_bars(entries, title="Defect types")
    assert "<script>" not in svg and "<b>" not in svg and 'class="chart-bar"' in svg
