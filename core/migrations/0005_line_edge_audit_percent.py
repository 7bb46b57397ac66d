from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0004_line_outage_policy"),
    ]

    operations = [
        migrations.AddField(
            model_name="productionline",
            name="edge_audit_percent",
            field=models.FloatField(default=100.0),
        ),
        migrations.AddConstraint(
            model_name="productionline",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("edge_audit_percent__gte", 0), ("edge_audit_percent__lte", 100)
                ),
                name="line_edge_audit_percent_range",
            ),
        ),
    ]
