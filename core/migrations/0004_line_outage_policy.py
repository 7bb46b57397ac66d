from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_image_retention"),
    ]

    operations = [
        migrations.AddField(
            model_name="productionline",
            name="outage_policy",
            field=models.CharField(
                choices=[
                    ("hold", "Hold: the station holds the phone until the server answers"),
                    ("reject", "Reject: the phone goes to rework"),
                    (
                        "edge",
                        "Edge: the station's copy of the production model decides (unsure: hold)",
                    ),
                ],
                default="hold",
                max_length=8,
            ),
        ),
    ]
