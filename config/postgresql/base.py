"""Django's PostgreSQL backend, whose pool checks a connection before handing it out only when
it has not been handed out for a while.

Django's `CONN_HEALTH_CHECKS` with a pool has psycopg_pool run an empty query on every
connection it hands out: one more round trip at each request before its first query (~0.3 ms
of a station's ~20 ms capture, measured with bench/serving.py). Like HikariCP's
`aliveBypassWindowMs` (500 ms), a connection handed out less than `RECENT_SECONDS` ago goes out
unchecked: it has just worked. One idle for longer (the database restarted in a quiet spell, a
firewall that dropped the connection) is checked, and replaced if the check fails. Django gives
the pool its check itself (`check=` when it makes the pool), so the check is made here, as each
connection is taken from the pool, and `CONN_HEALTH_CHECKS` stays off.
"""

from time import monotonic

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

RECENT_SECONDS = 0.5


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        for _ in range(pool.max_size):  # at most every pooled connection is found broken
            handed_out_at = getattr(connection, "_handed_out_at", None)
            if handed_out_at is not None and monotonic() - handed_out_at < RECENT_SECONDS:
                break
            try:
                ConnectionPool.check_connection(connection)
                break
            except psycopg.Error:
                pool.putconn(connection)  # broken: the pool drops it and opens another
                connection = super().get_new_connection(conn_params)
        connection._handed_out_at = monotonic()
        return connection
