import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("inspection", "0004_decision_audit_review"),
        ("labeling", "0003_line_in_core"),
        ("models_registry", "0004_line_in_core"),
    ]

    # The models moved between apps; their tables keep their names, so only Django's state changes.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="station",
                    name="line",
                ),
                migrations.AlterField(
                    model_name="capture",
                    name="line",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="captures",
                        to="core.productionline",
                    ),
                ),
                migrations.AlterField(
                    model_name="capture",
                    name="station",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="captures",
                        to="core.station",
                    ),
                ),
                migrations.DeleteModel(
                    name="LineSettingsChange",
                ),
                migrations.DeleteModel(
                    name="ProductionLine",
                ),
                migrations.DeleteModel(
                    name="Station",
                ),
            ],
            database_operations=[],
        )
    ]
