"""Enumerations of the capture flow that the pure policy shares with the models."""

from django.db import models


class DecisionReason(models.TextChoices):
    """Why the policy routed a capture the way it did (inspection.policy.decide)."""

    MANUAL = "manual", "The line is manual"
    SHADOW = "shadow", "The model ran hidden; a human decides"
    ASSISTED = "assisted", "A human decides with the model's help"
    CONFIDENT = "confident", "The model was sure enough to decide"
    UNCERTAIN = "uncertain", "Between the thresholds: a human decides"
    FULL = "full", "Full automation: the model decides"
    NO_MODEL = "no_model", "No usable model: a human decides"
    EDGE = "edge", "The station's edge model decided during an outage"
