"""factory_boy factories and small builders shared by the Django tests."""

import io
import uuid

import factory
import numpy as np
from django.contrib.auth.models import Group, User
from django.utils import timezone
from PIL import Image

from core.authentication import token_generate, token_hash
from core.models import AutomationLevel, ProductionLine, Station
from inspection import policy
from inspection.models import Capture, Decision, DecisionStatus, Prediction
from models_registry.models import Deployment, ModelVersion


def image_bytes(width: int = 256, height: int = 144, *, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A small photo-like image, encoded."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for role in extracted or ():
            self.groups.add(Group.objects.get_or_create(name=role)[0])
        if create:
            self.save()

    @factory.post_generation
    def lines(self, create, extracted, **kwargs):
        # An inspector sees only the lines assigned to them: UserFactory(roles=[...], lines=[L1])
        for line in extracted or ():
            line.inspectors.add(self)


class ProductionLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProductionLine
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"T{n}")
    name = factory.LazyAttribute(lambda o: f"Line {o.code}")
    automation_level = AutomationLevel.PARTIAL
    pass_threshold = 0.3
    fail_threshold = 0.7
    audit_percent = 0.0


class StationFactory(factory.django.DjangoModelFactory):
    """A station; use `station_with_token` to also get its plain token (only the hash is stored)."""

    class Meta:
        model = Station
        exclude = ("token",)

    line = factory.SubFactory(ProductionLineFactory)
    name = factory.Sequence(lambda n: f"S{n}")
    token = factory.LazyFunction(token_generate)
    token_hash = factory.LazyAttribute(lambda o: token_hash(o.token))
    token_prefix = factory.LazyAttribute(lambda o: o.token[:8])


def station_with_token(**kwargs) -> Station:
    token = token_generate()
    station = StationFactory(token=token, **kwargs)
    station.token = token
    return station


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    name = factory.Sequence(lambda n: f"model-{n}")
    version = factory.Sequence(lambda n: n + 1)  # unique per name, whatever the name
    sha256 = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    artifact = factory.LazyAttribute(lambda o: f"models/{o.sha256}.pt")
    metadata = factory.LazyFunction(dict)


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    line = factory.SubFactory(ProductionLineFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    role = "production"
    canary_percent = 0.0


class CaptureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Capture

    station = factory.SubFactory(StationFactory)
    line = factory.SelfAttribute("station.line")
    idempotency_key = factory.Sequence(lambda n: f"key-{n}")
    image = "captures/00/none.jpg"
    image_sha256 = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    image_bytes = 1000
    image_format = "jpg"
    width = 256
    height = 144
    received_at = factory.LazyFunction(timezone.now)


class DecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Decision

    capture = factory.SubFactory(CaptureFactory)
    line = factory.LazyAttribute(lambda o: o.capture.line)
    status = DecisionStatus.PENDING
    reason = "uncertain"
    model_verdict = "uncertain"
    # What the policy stores with each reason (inspection.policy.decide).
    model_shown = factory.LazyAttribute(lambda o: o.reason in policy.MODEL_SHOWN_REASONS)


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prediction

    capture = factory.SubFactory(CaptureFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    role = "production"
    score = 0.5
    verdict = factory.LazyAttribute(
        lambda o: "fail" if o.score >= 0.7 else "pass" if o.score < 0.3 else "uncertain"
    )
    regions = factory.LazyFunction(list)
    latency_ms = 1.0
