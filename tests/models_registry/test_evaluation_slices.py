"""Evaluation slices read what labeling wrote: the line of each dataset item (a seam that once
looked groups up as bare capture ids, while labeling writes `capture:<pk>`)."""

import pytest

from labeling import selectors as labeling_selectors
from labeling.services import dataset_version_create
from models_registry.services.evaluation import _item_lines, evaluation_slices
from tests.factories import ProductionLineFactory
from tests.labeling.conftest import accept, decided_task

pytestmark = pytest.mark.django_db


def test_slices_by_line_name_the_line_each_capture_came_from():
    l1, l2 = ProductionLineFactory(code="L1"), ProductionLineFactory(code="L2")
    tasks = [decided_task(seed=i, line=l1 if i % 2 else l2) for i in range(8)]
    for task in tasks:
        accept(task, label="ok")
    version = dataset_version_create(name="lines", created_by=None)
    key = f"dataset:{version.pk}:test"
    items = labeling_selectors.dataset_version_items(dataset_version=version)  # every split
    assert len(items) == 8 and all(item.group.startswith("capture:") for item in items)

    lines = _item_lines(key, items)
    rows = [{"label": "ok", "score": 0.1} for _ in items]
    by_line = {
        row["value"]: row["n"] for row in evaluation_slices(items, rows, 0.7, lines=lines)["line"]
    }
    assert by_line == {"L1": 4, "L2": 4}


def test_items_of_another_version_do_not_lend_their_line():
    line = ProductionLineFactory(code="L1")
    accept(decided_task(seed=1, line=line), label="ok")
    first = dataset_version_create(name="a", created_by=None)
    groups = {
        item.group for item in labeling_selectors.dataset_version_items(dataset_version=first)
    }
    assert labeling_selectors.dataset_item_line_codes(dataset_version=first, groups=groups) == {
        next(iter(groups)): "L1"
    }
    assert (
        labeling_selectors.dataset_item_line_codes(dataset_version=first.pk + 999, groups=groups)
        == {}
    )
