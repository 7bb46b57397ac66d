"""Label tasks from every source, the queue order, leases and the review flow."""

import csv
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import ApplicationError
from inspection import services as inspection_services
from labeling import queue
from labeling.models import Annotation, AnnotationStatus, LabelTask, LabelTaskStatus
from labeling.services import (
    annotation_release,
    annotation_save,
    annotation_submit,
    review_accept,
    review_send_back,
    task_import,
    task_next,
)
from tests.factories import (
    DecisionFactory,
    DeploymentFactory,
    PredictionFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
)
from tests.labeling.conftest import capture_with_image

pytestmark = pytest.mark.django_db

BOX = {"shape": "box", "box": [2, 3, 20, 30], "defect_type": "scratch"}


@pytest.fixture
def line():
    return ProductionLineFactory(code="L1", automation_level="assisted")


@pytest.fixture
def lea():
    return UserFactory(username="lea", roles=["labeler"])


@pytest.fixture
def leo():
    return UserFactory(username="leo", roles=["labeler"])


@pytest.fixture
def rita():
    return UserFactory(username="rita", roles=["labeler", "supervisor"])


def pending(line, *, seed=0, model_verdict="uncertain", reason="uncertain", score=None):
    capture = capture_with_image(seed=seed, line=line)
    decision = DecisionFactory(capture=capture, model_verdict=model_verdict, reason=reason)
    if score is not None:
        prediction = PredictionFactory(
            capture=capture, role="production", score=score, regions=[{"box": [1, 1, 9, 9]}]
        )
        decision.acting_prediction = prediction
        decision.save()
    return capture


def test_override_task_keeps_the_inspectors_verdict_boxes_and_the_model_output(line):
    capture = pending(line, model_verdict="pass", reason="assisted", score=0.1)
    inspector = UserFactory(roles=["inspector"])
    inspection_services.verdict_record(
        capture_id=capture.pk,
        user=inspector,
        verdict="fail",
        regions=[
            {"box": [4, 5, 20, 22], "defect_type": "crack"},
            {"box": [1, 1, 9, 9], "defect_type": "scratch", "rejected": True},
        ],
    )
    task = LabelTask.objects.get()
    assert (task.source, task.pre_verdict, task.line, task.group) == (
        "override",
        "fail",
        line,
        f"capture:{capture.pk}",
    )
    assert task.model_score == 0.1 and task.model_regions[0]["box"] == [1, 1, 9, 9]
    annotation = task_next(user=UserFactory(roles=["labeler"]))
    # The pre-annotation: the inspector's label and boxes, without the region they rejected.
    assert annotation.label == "defect"
    assert annotation.regions == [{"shape": "box", "box": [4, 5, 20, 22], "defect_type": "crack"}]


def test_uncertain_capture_decided_by_a_human_becomes_a_task(line):
    capture = pending(line, score=0.5)
    inspection_services.verdict_record(
        capture_id=capture.pk, user=UserFactory(roles=["inspector"]), verdict="pass"
    )
    assert LabelTask.objects.get().source == "uncertain"


def test_shadow_disagreement_becomes_a_task_whichever_comes_first(line, fake_models):
    deployment = DeploymentFactory(line=line, role="shadow")
    fake_models.set_score(deployment.model_version, 0.95)  # the shadow says fail
    capture = pending(line, reason="shadow", model_verdict="")
    inspection_services.verdict_record(
        capture_id=capture.pk, user=UserFactory(roles=["inspector"]), verdict="pass"
    )
    assert not LabelTask.objects.exists()
    inspection_services.prediction_record_offline(capture_id=capture.pk, role="shadow")
    task = LabelTask.objects.get()
    assert (task.source, task.model_score) == ("shadow", 0.95)

    # The shadow came first, the human later: the verdict creates it.
    second = pending(line, seed=1, reason="shadow", model_verdict="")
    inspection_services.prediction_record_offline(capture_id=second.pk, role="shadow")
    assert LabelTask.objects.count() == 1
    inspection_services.verdict_record(
        capture_id=second.pk, user=UserFactory(roles=["inspector"]), verdict="pass"
    )
    assert LabelTask.objects.filter(source="shadow").count() == 2

    # Agreeing with the shadow teaches nothing new.
    third = pending(line, seed=2, reason="shadow", model_verdict="")
    inspection_services.prediction_record_offline(capture_id=third.pk, role="shadow")
    inspection_services.verdict_record(
        capture_id=third.pk, user=UserFactory(roles=["inspector"]), verdict="fail"
    )
    assert LabelTask.objects.count() == 2


def test_bulk_import_makes_tasks_and_reports_bad_files(tmp_path):
    (tmp_path / "images").mkdir()
    for index in range(3):
        (tmp_path / "images" / f"p{index}.png").write_bytes(
            image_bytes(40, 30, fmt="PNG", seed=index)
        )
    (tmp_path / "images" / "bad.jpg").write_bytes(b"\xff\xd8\xffgarbage")
    with (tmp_path / "manifest.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "label", "defect_type", "mask_file", "boxes"])
        writer.writerow(["images/p0.png", "defect", "scratch", "", "[[1, 2, 10, 12]]"])
        writer.writerow(["images/p1.png", "ok", "", "", ""])
        writer.writerow(["images/p2.png", "ok", "", "", ""])
        writer.writerow(["images/bad.jpg", "ok", "", "", ""])
    tasks, errors = task_import(path=tmp_path / "manifest.csv")
    assert len(tasks) == 3 and len(errors) == 1 and "bad.jpg" in errors[0]
    first = LabelTask.objects.get(source_detail="images/p0.png")
    assert (first.source, first.pre_verdict, first.width, first.height) == (
        "import",
        "fail",
        40,
        30,
    )
    assert first.pre_annotation[0]["box"] == [1.0, 2.0, 10.0, 12.0]


def test_queue_puts_disagreements_and_uncertain_scores_first(line):
    def task(source, score, seed):
        capture = capture_with_image(seed=seed, line=line)
        return LabelTask.objects.create(
            capture=capture,
            line=line,
            source=source,
            image=capture.image,
            model_score=score,
            priority=queue.task_priority(source=source, model_score=score),
        )

    audit = task("audit", 0.5, 1)
    sure_uncertain = task("uncertain", 0.35, 2)
    uncertain = task("uncertain", 0.52, 3)
    override = task("override", 0.05, 4)
    shadow = task("shadow", 0.9, 5)
    assert list(queue.task_queue()) == [shadow, override, uncertain, sure_uncertain, audit]
    assert list(queue.task_queue(source="audit")) == [audit]
    assert list(queue.task_queue(line="L2")) == []
    assert list(queue.task_queue(since=timezone.now() + timedelta(seconds=5))) == []


def test_two_labelers_never_get_the_same_task(line, lea, leo):
    first = pending(line, seed=1)
    second = pending(line, seed=2)
    for capture in (first, second):
        DecisionFactory._meta.model.objects.filter(capture=capture).update(
            status="decided", verdict="pass", decided_by="human"
        )
        LabelTask.objects.create(
            capture=capture, line=line, source="uncertain", image=capture.image
        )
    a, b = task_next(user=lea), task_next(user=leo)
    assert a.task_id != b.task_id
    assert task_next(user=UserFactory()) is None
    # Asking again gives the same work back (a reload), lease renewed.
    assert task_next(user=lea).pk == a.pk
    # Lea walks away: after her lease another labeler gets it, and her draft is superseded.
    Annotation.objects.filter(pk=a.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    c = task_next(user=UserFactory())
    assert c.task_id == a.task_id
    assert Annotation.objects.get(pk=a.pk).status == AnnotationStatus.SUPERSEDED


@pytest.mark.django_db(transaction=True)
def test_concurrent_next_task_calls_get_different_tasks(line, postgres):
    users = [UserFactory() for _ in range(4)]
    for seed in range(4):
        capture = capture_with_image(seed=seed, line=line)
        LabelTask.objects.create(
            capture=capture, line=line, source="uncertain", image=capture.image
        )
    barrier = threading.Barrier(4)
    got, failures = [], []

    def take(user):
        try:
            barrier.wait(5)
            annotation = task_next(user=user)
            got.append(annotation.task_id if annotation else None)
        except Exception as exc:  # surfaced below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert sorted(got) == sorted(LabelTask.objects.values_list("pk", flat=True))


def open_task(line, seed=0, required=1):
    capture = capture_with_image(seed=seed, line=line)
    return LabelTask.objects.create(
        capture=capture,
        line=line,
        source="override",
        image=capture.image,
        width=64,
        height=48,
        required_annotations=required,
    )


def test_autosave_revision_guard_and_submit(line, lea):
    open_task(line)
    annotation = task_next(user=lea)
    saved = annotation_save(
        annotation_id=annotation.pk, user=lea, label="defect", regions=[BOX], revision=0
    )
    assert saved.revision == 1
    with pytest.raises(ApplicationError) as error:  # a stale tab
        annotation_save(annotation_id=annotation.pk, user=lea, label="ok", revision=0)
    assert error.value.code == "stale_revision"
    with pytest.raises(ApplicationError) as error:
        annotation_save(annotation_id=annotation.pk, user=UserFactory(), label="ok")
    assert error.value.status == 403
    with pytest.raises(ApplicationError):
        annotation_save(
            annotation_id=annotation.pk,
            user=lea,
            regions=[{"shape": "polygon", "points": [[1, 1]]}],
        )
    annotation_submit(annotation_id=annotation.pk, user=lea)
    assert LabelTask.objects.get().status == LabelTaskStatus.REVIEW
    with pytest.raises(ApplicationError) as error:
        annotation_save(annotation_id=annotation.pk, user=lea, label="ok")
    assert error.value.code == "not_editable"


def test_review_send_back_then_accept(line, lea, rita):
    task = open_task(line)
    annotation = task_next(user=lea)
    annotation_submit(annotation_id=annotation.pk, user=lea, label="defect", regions=[BOX])
    with pytest.raises(ApplicationError) as error:
        review_accept(annotation_id=annotation.pk, reviewer=lea)
    assert error.value.code == "own_annotation"
    review_send_back(annotation_id=annotation.pk, reviewer=rita, note="the crack is longer")
    task.refresh_from_db()
    assert task.status == LabelTaskStatus.OPEN
    # The labeler gets it back first, with the note, and nobody else does.
    assert task_next(user=UserFactory()) is None
    again = task_next(user=lea)
    assert (again.pk, again.review_note, again.rework_count) == (
        annotation.pk,
        "the crack is longer",
        1,
    )
    annotation_submit(annotation_id=again.pk, user=lea, regions=[{**BOX, "box": [2, 3, 40, 30]}])
    review_accept(annotation_id=again.pk, reviewer=rita)
    task.refresh_from_db()
    assert (task.status, task.accepted_annotation_id) == (LabelTaskStatus.DONE, annotation.pk)
    assert task.reviewed_at is not None


def test_two_labelers_agreeing_are_accepted_and_conflicts_go_to_review(line, lea, leo):
    agreeing = open_task(line, seed=1, required=2)
    a = task_next(user=lea)
    b = task_next(user=leo)
    assert a.task_id == b.task_id == agreeing.pk
    assert task_next(user=UserFactory()) is None  # two hold it already
    annotation_submit(annotation_id=a.pk, user=lea, label="defect", regions=[BOX])
    assert LabelTask.objects.get(pk=agreeing.pk).status == LabelTaskStatus.OPEN
    annotation_submit(
        annotation_id=b.pk, user=leo, label="defect", regions=[{**BOX, "box": [3, 3, 20, 31]}]
    )
    agreeing.refresh_from_db()
    assert agreeing.status == LabelTaskStatus.DONE and agreeing.agreement["agreed"]
    assert agreeing.agreement["region_iou"] > 0.8

    conflict = open_task(line, seed=2, required=2)
    a = task_next(user=lea)
    b = task_next(user=leo)
    annotation_submit(annotation_id=a.pk, user=lea, label="defect", regions=[BOX])
    annotation_submit(annotation_id=b.pk, user=leo, label="ok", regions=[])
    conflict.refresh_from_db()
    assert conflict.status == LabelTaskStatus.REVIEW
    assert conflict.agreement["label_match"] is False


def test_skipping_an_untouched_task_frees_it(line, lea, leo):
    open_task(line)
    annotation = task_next(user=lea)
    annotation_release(annotation_id=annotation.pk, user=lea)
    assert task_next(user=leo) is not None
