# Decisions made by a station's edge model during an outage, uploaded with the capture.

import django.db.models.deletion
from django.db import migrations, models

from core.migration_operations import AddIndexConcurrentlyWherePossible


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; stations keep posting meanwhile.
    atomic = False

    dependencies = [
        ("inspection", "0010_scale_indexes"),
        ("models_registry", "0005_model_version_edge_export"),
    ]

    operations = [
        migrations.AlterField(
            model_name="decision",
            name="decided_by",
            field=models.CharField(
                blank=True,
                choices=[("model", "Model"), ("human", "Human"), ("edge", "Edge model")],
                max_length=8,
            ),
        ),
        migrations.AlterField(
            model_name="decision",
            name="reason",
            field=models.CharField(
                choices=[
                    ("manual", "The line is manual"),
                    ("shadow", "The model ran hidden; a human decides"),
                    ("assisted", "A human decides with the model's help"),
                    ("confident", "The model was sure enough to decide"),
                    ("uncertain", "Between the thresholds: a human decides"),
                    ("full", "Full automation: the model decides"),
                    ("no_model", "No usable model: a human decides"),
                    ("edge", "The station's edge model decided during an outage"),
                ],
                max_length=24,
            ),
        ),
        migrations.AddField(
            model_name="decision",
            name="edge_verdict",
            field=models.CharField(
                blank=True, choices=[("pass", "Pass"), ("fail", "Fail")], max_length=8
            ),
        ),
        migrations.AddField(
            model_name="decision",
            name="edge_score",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="decision",
            name="edge_model_version",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="models_registry.modelversion",
            ),
        ),
        migrations.AddField(
            model_name="decision",
            name="edge_model_sha256",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="decision",
            name="edge_decided_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        AddIndexConcurrentlyWherePossible(
            model_name="decision",
            index=models.Index(
                condition=models.Q(("edge_model_version__isnull", False)),
                fields=["edge_model_version"],
                name="decision_edge_model",
            ),
        ),
    ]
