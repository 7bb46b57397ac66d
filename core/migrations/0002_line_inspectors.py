from django.conf import settings
from django.db import migrations, models


def assign_existing_inspectors(apps, schema_editor):
    """Before assignments existed every inspector saw every line: keep it so on upgrade, until a
    supervisor narrows it."""
    ProductionLine = apps.get_model("core", "ProductionLine")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    inspectors = list(User.objects.filter(groups__name="inspector").distinct())
    for line in ProductionLine.objects.all():
        line.inspectors.add(*inspectors)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="productionline",
            name="inspectors",
            field=models.ManyToManyField(
                blank=True, related_name="assigned_lines", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.RunPython(assign_existing_inspectors, migrations.RunPython.noop),
    ]
