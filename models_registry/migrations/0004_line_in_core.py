import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("models_registry", "0003_dataset_version_lineage"),
    ]

    # The models moved between apps; their tables keep their names, so only Django's state changes.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="batchprediction",
                    name="line",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="core.productionline",
                    ),
                ),
                migrations.AlterField(
                    model_name="deployment",
                    name="line",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deployments",
                        to="core.productionline",
                    ),
                ),
                migrations.AlterField(
                    model_name="linetrainingpolicy",
                    name="line",
                    field=models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="training_policy",
                        to="core.productionline",
                    ),
                ),
                migrations.AlterField(
                    model_name="rolloutevent",
                    name="line",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="rollout_events",
                        to="core.productionline",
                    ),
                ),
                migrations.AlterField(
                    model_name="trainingrun",
                    name="line",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="training_runs",
                        to="core.productionline",
                    ),
                ),
            ],
            database_operations=[],
        )
    ]
