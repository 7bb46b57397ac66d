import pytest

from labeling.services import task_create_from_inspection
from tests.factories import DecisionFactory

pytestmark = pytest.mark.django_db


def test_task_carries_the_inspectors_verdict_and_boxes_once():
    decision = DecisionFactory(
        status="decided", verdict="fail", decided_by="human", regions=[{"box": [1, 2, 3, 4]}]
    )
    task = task_create_from_inspection(capture=decision.capture, reason="override")
    assert (task.source, task.pre_verdict, task.pre_annotation) == (
        "override",
        "fail",
        [{"box": [1, 2, 3, 4]}],
    )
    assert task_create_from_inspection(capture=decision.capture, reason="override") == task
