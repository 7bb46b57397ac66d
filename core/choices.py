"""Enumerations shared by the apps and by the pure automation policy (importable without the
app registry: nothing here touches the database)."""

from django.db import models


class AutomationLevel(models.TextChoices):
    """How much the model decides on a line, in rising order (see shared/ARCHITECTURE.md)."""

    MANUAL = "manual", "Manual: a human decides every capture"
    SHADOW = "shadow", "Shadow: the model runs hidden, a human decides"
    ASSISTED = "assisted", "Assisted: a human decides, seeing the model's output"
    PARTIAL = "partial", "Partial: the model decides when confident"
    FULL = "full", "Full: the model decides, a sample is audited"


class Verdict(models.TextChoices):
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"


class OutagePolicy(models.TextChoices):
    """What a line's stations do with a phone while the server cannot be reached."""

    HOLD = "hold", "Hold: the station holds the phone until the server answers"
    REJECT = "reject", "Reject: the phone goes to rework"
    EDGE = "edge", "Edge: the station's copy of the production model decides (unsure: hold)"


class DefectSeverity(models.TextChoices):
    """What a defect type means for the phone that has it."""

    FAIL = "fail", "Fail: the phone fails"
    MINOR = "minor", "Minor: recorded, the phone still passes"
