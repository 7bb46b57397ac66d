import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("inspection", "0004_decision_audit_review"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    # The models moved between apps; their tables keep their names, so only Django's state changes.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ProductionLine",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("code", models.SlugField(max_length=32, unique=True)),
                        ("name", models.CharField(max_length=120)),
                        (
                            "automation_level",
                            models.CharField(
                                choices=[
                                    ("manual", "Manual: a human decides every capture"),
                                    ("shadow", "Shadow: the model runs hidden, a human decides"),
                                    (
                                        "assisted",
                                        "Assisted: a human decides, seeing the model's output",
                                    ),
                                    ("partial", "Partial: the model decides when confident"),
                                    ("full", "Full: the model decides, a sample is audited"),
                                ],
                                default="manual",
                                max_length=16,
                            ),
                        ),
                        ("pass_threshold", models.FloatField(default=0.3)),
                        ("fail_threshold", models.FloatField(default=0.7)),
                        ("audit_percent", models.FloatField(default=2.0)),
                        ("min_shadow_captures", models.PositiveIntegerField(default=200)),
                        ("min_agreement_percent", models.FloatField(default=95.0)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "db_table": "inspection_productionline",
                        "ordering": ["code"],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("pass_threshold__gte", 0),
                                    ("fail_threshold__lte", 1),
                                    ("pass_threshold__lte", models.F("fail_threshold")),
                                ),
                                name="line_thresholds_ordered",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("audit_percent__gte", 0), ("audit_percent__lte", 100)
                                ),
                                name="line_audit_percent_range",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="LineSettingsChange",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("changed_at", models.DateTimeField(auto_now_add=True)),
                        ("changes", models.JSONField()),
                        (
                            "changed_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "line",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="changes",
                                to="core.productionline",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "inspection_linesettingschange",
                        "ordering": ["-changed_at", "-id"],
                    },
                ),
                migrations.CreateModel(
                    name="Station",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("name", models.CharField(max_length=64)),
                        ("token_hash", models.CharField(max_length=64, unique=True)),
                        ("token_prefix", models.CharField(max_length=8)),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("last_seen_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "line",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="stations",
                                to="core.productionline",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "inspection_station",
                        "ordering": ["line__code", "name"],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("line", "name"), name="station_name_unique_per_line"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        )
    ]
