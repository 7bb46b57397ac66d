"""Defect taxonomies: the default one holds the four types the code knew (scratch, crack, stain,
other, with the colours and hotkeys of the annotation page), so existing data keeps its types."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

DEFAULT_TYPES = [
    # name, label, colour, hotkey
    ("scratch", "Scratch", "#ffcc00", "1"),
    ("crack", "Crack", "#ff3b30", "2"),
    ("stain", "Stain", "#bf5af2", "3"),
    ("other", "Other", "#8e8e93", "4"),
]


def default_taxonomy_create(apps, schema_editor):
    Taxonomy = apps.get_model("core", "Taxonomy")
    DefectType = apps.get_model("core", "DefectType")
    taxonomy, _ = Taxonomy.objects.get_or_create(
        name="default", defaults={"label": "Default", "is_default": True}
    )
    for order, (name, label, colour, hotkey) in enumerate(DEFAULT_TYPES):
        DefectType.objects.get_or_create(
            taxonomy=taxonomy,
            name=name,
            defaults={
                "label": label,
                "colour": colour,
                "hotkey": hotkey,
                "severity": "fail",
                "order": order,
            },
        )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0005_line_edge_audit_percent"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Taxonomy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.SlugField(max_length=32, unique=True)),
                ("label", models.CharField(max_length=120)),
                ("is_default", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["-is_default", "name"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("is_default", True)),
                        fields=("is_default",),
                        name="taxonomy_one_default",
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="productionline",
            name="taxonomy",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lines",
                to="core.taxonomy",
            ),
        ),
        migrations.CreateModel(
            name="TaxonomyChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("defect_type", models.CharField(blank=True, max_length=32)),
                ("action", models.CharField(max_length=16)),
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
                    "taxonomy",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="changes",
                        to="core.taxonomy",
                    ),
                ),
            ],
            options={
                "ordering": ["-changed_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="DefectType",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.SlugField(max_length=32)),
                ("label", models.CharField(max_length=60)),
                ("colour", models.CharField(max_length=7)),
                ("hotkey", models.CharField(blank=True, max_length=1)),
                (
                    "severity",
                    models.CharField(
                        choices=[
                            ("fail", "Fail: the phone fails"),
                            ("minor", "Minor: recorded, the phone still passes"),
                        ],
                        default="fail",
                        max_length=8,
                    ),
                ),
                ("order", models.PositiveSmallIntegerField(default=0)),
                ("is_active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "taxonomy",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="defect_types",
                        to="core.taxonomy",
                    ),
                ),
            ],
            options={
                "ordering": ["taxonomy", "order", "name"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("taxonomy", "name"), name="defect_type_name_unique_per_taxonomy"
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(
                            ("is_active", True), models.Q(("hotkey", ""), _negated=True)
                        ),
                        fields=("taxonomy", "hotkey"),
                        name="defect_type_hotkey_unique_per_taxonomy",
                    ),
                ],
            },
        ),
        migrations.RunPython(default_taxonomy_create, migrations.RunPython.noop),
    ]
