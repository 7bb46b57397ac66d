"""The capture path's write: capture, predictions and decision in one statement on PostgreSQL,
the same rows the ORM writes."""

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inspection.models import Capture, Decision, Prediction
from inspection.services.captures import _capture_rows_insert_orm, capture_rows_insert
from tests.factories import ModelVersionFactory, ProductionLineFactory, StationFactory

pytestmark = pytest.mark.django_db


NOW = timezone.now()


def _rows(station, versions, *, roles, acting, edge=False, now=NOW):
    capture = Capture(
        id=uuid.uuid4(),
        line=station.line,
        station=station,
        idempotency_key=uuid.uuid4().hex,
        image="captures/ab/abc.jpg",
        image_sha256="ab" * 32,
        image_bytes=61_234,
        image_format="jpg",
        width=1024,
        height=576,
        image_stats={"brightness": 81.5, "contrast": 30.25},
        metadata={"serial": "SN1", "nested": {"a": [1, 2]}},
        captured_at=now - timedelta(seconds=3),
        received_at=now,
    )
    predictions = [
        Prediction(
            capture=capture,
            model_version=versions[role],
            role=role,
            score=0.25 + index / 10,
            verdict="uncertain",
            regions=[{"box": [1, 2, 30, 40], "polygon": [[1, 2], [30, 2]], "score": 0.7}],
            embedding=[0.125, -1.5, 3.0],
            latency_ms=12.5,
        )
        for index, role in enumerate(roles)
    ]
    decision = Decision(
        capture=capture,
        line=station.line,
        status="decided",
        verdict="fail",
        decided_by="edge" if edge else "model",
        decided_at=now,
        reason="confident",
        detail="canary: broken",
        acting_prediction=next((p for p in predictions if p.role == acting), None),
        model_verdict="fail" if acting else "",
        model_shown=True,
        edge_verdict="fail" if edge else "",
        edge_score=0.93 if edge else None,
        edge_model_version=versions["production"] if edge else None,
        edge_model_sha256="cd" * 32 if edge else "",
        edge_decided_at=now - timedelta(seconds=1) if edge else None,
    )
    return capture, predictions, decision


def _stored(capture: Capture) -> dict:
    """Every column of the three rows as read back, ids and per-row keys left out."""
    stored = Capture.objects.get(pk=capture.pk)
    decision = Decision.objects.get(capture=stored)
    predictions = Prediction.objects.filter(capture=stored).order_by("role")
    acting = decision.acting_prediction
    ignore = {"id", "capture", "idempotency_key", "created_at"}
    return {
        "capture": {k: v for k, v in model_to_dict(stored).items() if k not in ignore},
        "predictions": [
            {k: v for k, v in model_to_dict(p).items() if k not in ignore} for p in predictions
        ],
        "decision": {
            k: v
            for k, v in model_to_dict(decision).items()
            if k not in {*ignore, "acting_prediction"}
        },
        "acting_role": acting.role if acting else None,
    }


@pytest.mark.parametrize(
    ("roles", "acting", "edge"),
    [
        (["production"], "production", False),
        (["production", "canary"], "canary", False),
        ([], None, False),  # manual: no model runs
        (["production"], None, True),  # decided at the edge; production read for the record
    ],
)
def test_one_statement_writes_what_the_orm_writes(postgres, roles, acting, edge):
    station = StationFactory(line=ProductionLineFactory(code="L1"), name="S1")
    versions = {"production": ModelVersionFactory(), "canary": ModelVersionFactory()}
    fast = _rows(station, versions, roles=roles, acting=acting, edge=edge)
    capture_rows_insert(capture=fast[0], predictions=fast[1], decision=fast[2])
    orm = _rows(station, versions, roles=roles, acting=acting, edge=edge)
    _capture_rows_insert_orm(capture=orm[0], predictions=orm[1], decision=orm[2])
    written = _stored(fast[0])
    assert written == _stored(orm[0])
    assert written["capture"]["metadata"] == {"serial": "SN1", "nested": {"a": [1, 2]}}
    # The objects carry their new ids, as save() leaves them.
    capture, predictions, decision = fast
    assert Decision.objects.get(pk=decision.pk).capture_id == capture.pk
    assert {p.pk for p in predictions} == set(
        Prediction.objects.filter(capture=capture).values_list("pk", flat=True)
    )
    assert decision.acting_prediction_id == (
        decision.acting_prediction.pk if decision.acting_prediction else None
    )
    assert not capture._state.adding and not decision._state.adding


def test_a_second_capture_with_the_same_key_writes_nothing():
    station = StationFactory(line=ProductionLineFactory(code="L1"), name="S1")
    versions = {"production": ModelVersionFactory()}
    first = _rows(station, versions, roles=["production"], acting="production")
    capture_rows_insert(capture=first[0], predictions=first[1], decision=first[2])
    again = _rows(station, versions, roles=["production"], acting="production")
    again[0].idempotency_key = first[0].idempotency_key
    with pytest.raises(IntegrityError), transaction.atomic():
        capture_rows_insert(capture=again[0], predictions=again[1], decision=again[2])
    assert Capture.objects.count() == Decision.objects.count() == Prediction.objects.count() == 1


def test_the_statement_is_prepared_on_its_connection_after_a_few_captures(postgres):
    """Its parameters are sent apart from its text, which stays the same from capture to
    capture: psycopg prepares it on the connection (`prepare_threshold`), and PostgreSQL no
    longer parses and plans it at each capture."""
    station = StationFactory(line=ProductionLineFactory(code="L1"), name="S1")
    versions = {"production": ModelVersionFactory()}
    for _ in range(6):
        rows = _rows(station, versions, roles=["production"], acting="production")
        capture_rows_insert(capture=rows[0], predictions=rows[1], decision=rows[2])
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert len([text for text in prepared if text.startswith("WITH capture AS (INSERT")]) == 1
    assert Capture.objects.count() == Decision.objects.count() == Prediction.objects.count() == 6


def test_the_statement_is_logged_when_queries_are(postgres):
    """With DEBUG's query log on (or a test counting queries), the statement goes through
    Django's debug cursor: logged once, with PostgreSQL's own placeholders, and written."""
    station = StationFactory(line=ProductionLineFactory(code="L1"), name="S1")
    versions = {"production": ModelVersionFactory(), "canary": ModelVersionFactory()}
    rows = _rows(station, versions, roles=["production", "canary"], acting="canary")
    with CaptureQueriesContext(connection) as queries:
        capture_rows_insert(capture=rows[0], predictions=rows[1], decision=rows[2])
    logged = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("WITH capture")]
    assert len(logged) == 1
    assert "$1" in logged[0] and "%s" not in logged[0]
    assert Prediction.objects.filter(capture=rows[0]).count() == 2
    assert Decision.objects.get(capture=rows[0]).acting_prediction.role == "canary"
