import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("labeling", "0002_labeling_review_datasets"),
    ]

    # The models moved between apps; their tables keep their names, so only Django's state changes.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="labeltask",
                    name="line",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="label_tasks",
                        to="core.productionline",
                    ),
                ),
            ],
            database_operations=[],
        )
    ]
