"""The PostgreSQL database a benchmark loads: its own (the name says "bench"), created when
missing, so no benchmark ever empties or fills the development or test database."""

from __future__ import annotations

from typing import Any


def bench_database(*, script: str, needs: str, any_name: bool = False) -> tuple[str, dict]:
    """(name, psycopg connection keywords) of Django's default database, after checking it is
    PostgreSQL and (unless `any_name`) one whose name contains "bench"; else SystemExit with
    `needs`, what the script does to it."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if "postgresql" not in database["ENGINE"]:
        raise SystemExit(f"{script} needs DATABASE_URL=postgres://.../bench_... (PostgreSQL)")
    name = database["NAME"]
    if "bench" not in name and not any_name:
        raise SystemExit(
            f"{script} {needs} {name!r}: give it a database of its own whose name contains 'bench'"
        )
    keys = ("HOST", "PORT", "USER", "PASSWORD")
    server = {key.lower(): database.get(key) for key in keys if database.get(key)}
    return name, server


def database_create_missing(name: str, server: dict[str, Any], log) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            log(f"creating database {name}")
            admin.execute(f'CREATE DATABASE "{name}"')


def database_drop(name: str, server: dict[str, Any]) -> None:
    """Drop the benchmark's database (Django's connections must be closed first)."""
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
