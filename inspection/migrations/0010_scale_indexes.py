# Indexes and planner statistics for millions of captures (bench/scale.py measured the reads
# they serve; the README's Benchmark section has the figures).

import django.db.models.functions.comparison
from django.db import migrations, models

from core.migration_operations import (
    AddIndexConcurrentlyWherePossible,
    RemoveIndexConcurrentlyWherePossible,
)

# Which lines have judged decisions (overrode_model set) and human ones is not independent of
# the line: a partial or full line has almost none. Without these statistics PostgreSQL
# assumed every line had its share and scanned the newest decisions of all lines to find a
# partial line's judged ones (monitoring's concept drift: 600 ms -> 16 ms).
STATISTICS = (
    "CREATE STATISTICS IF NOT EXISTS decision_line_judged (mcv) "
    "ON line_id, overrode_model, decided_by FROM inspection_decision"
)


def statistics_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(STATISTICS)
        schema_editor.execute("ANALYZE inspection_decision")


def statistics_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP STATISTICS IF EXISTS decision_line_judged")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; stations keep posting meanwhile.
    atomic = False

    dependencies = [
        ("inspection", "0009_image_retention"),
    ]

    operations = [
        # decision_recent (decided_at alone) is replaced by one that starts with the line.
        AddIndexConcurrentlyWherePossible(
            model_name="decision",
            index=models.Index(fields=["line", "-decided_at"], name="decision_line_recent"),
        ),
        RemoveIndexConcurrentlyWherePossible(model_name="decision", name="decision_recent"),
        AddIndexConcurrentlyWherePossible(
            model_name="decision",
            index=models.Index(
                condition=models.Q(("decided_by", "human")),
                fields=["decided_by_user", "decided_at"],
                name="decision_human_by_user",
            ),
        ),
        AddIndexConcurrentlyWherePossible(
            model_name="decision",
            index=models.Index(
                models.F("line"),
                models.OrderBy(
                    django.db.models.functions.comparison.Coalesce("audited_at", "decided_at"),
                    descending=True,
                ),
                condition=models.Q(("overrode_model__isnull", False)),
                name="decision_judged_recent",
            ),
        ),
        AddIndexConcurrentlyWherePossible(
            model_name="prediction",
            index=models.Index(
                condition=models.Q(("role", "shadow")),
                fields=["model_version", "-created_at"],
                name="prediction_shadow_recent",
            ),
        ),
        migrations.RunPython(statistics_create, statistics_drop, elidable=True),
    ]
