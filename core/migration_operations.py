"""Migration operations for tables that hold millions of rows."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations


class _ConcurrentlyOnPostgreSQL:
    """The CONCURRENTLY operation on PostgreSQL, the `plain` one elsewhere (SQLite)."""

    plain: type

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexConcurrentlyWherePossible(_ConcurrentlyOnPostgreSQL, AddIndexConcurrently):
    """`CREATE INDEX CONCURRENTLY` on PostgreSQL: building an index on millions of captures or
    decisions takes a while, and a plain CREATE INDEX blocks every insert (stations posting)
    until it is done. Elsewhere (SQLite) a plain index. The migration must say `atomic = False`.
    """

    plain = migrations.AddIndex


class RemoveIndexConcurrentlyWherePossible(_ConcurrentlyOnPostgreSQL, RemoveIndexConcurrently):
    """`DROP INDEX CONCURRENTLY` on PostgreSQL (no lock on the table's writers), else a plain
    DROP INDEX. The migration must say `atomic = False`."""

    plain = migrations.RemoveIndex
