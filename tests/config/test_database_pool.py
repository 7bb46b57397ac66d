"""The PostgreSQL pool checks a connection before handing it out only when it has not been
handed out for a while (config/postgresql/base.py): no round trip at each request, and a
connection that broke while idle is replaced, not handed to a request."""

import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from config.postgresql import base as backend
from inspection.models import Capture

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def checks(postgres, monkeypatch) -> list:
    """The health checks the pool's connections get, as they get them."""
    assert connection.pool is not None, "the pool is on by default (DB_POOL)"
    made = []
    original = ConnectionPool.check_connection

    def check(conn):
        made.append(conn.info.backend_pid)
        original(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(check))
    connection.close()
    yield made
    connection.close()


def backend_pid() -> int:
    connection.ensure_connection()
    return connection.connection.info.backend_pid


def test_a_connection_handed_out_a_moment_ago_goes_out_unchecked(checks, monkeypatch):
    monkeypatch.setattr(backend, "RECENT_SECONDS", 60.0)  # "a moment": this whole test
    handed_out = []
    for _ in range(10):  # as ten requests one after another
        handed_out.append(backend_pid())
        connection.close()  # back to the pool, as at the end of a request
    assert len(set(handed_out)) < len(handed_out)  # the pool handed some out again
    assert all(checks.count(pid) <= 1 for pid in handed_out)  # at most the first time
    before = len(checks)
    monkeypatch.setattr(backend, "RECENT_SECONDS", 0.0)  # now each has been idle "a while"
    for _ in range(3):
        backend_pid()
        connection.close()
    assert len(checks) == before + 3


def test_connections_that_broke_while_idle_are_replaced_before_a_request_gets_one(
    checks, monkeypatch
):
    # Every idle connection breaks (the pool hands its idle connections out in turn, so which
    # one a request gets depends on the tests before).
    with connection.pool.connection() as other:
        # Django's connection is another one while `other` is out, and back in the pool, idle:
        # with a pool of one, `other` would be that one, and nothing idle would break.
        backend_pid()
        connection.close()
        broken = [
            pid
            for (pid,) in other.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle' AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
        other.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [broken])
    assert broken
    monkeypatch.setattr(backend, "RECENT_SECONDS", 0.0)
    assert Capture.objects.count() == 0  # the request's query works
    assert connection.connection.info.backend_pid not in broken
    assert checks and checks[0] in broken  # found broken by its check, not by the query
