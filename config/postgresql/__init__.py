"""Django's PostgreSQL backend with a pool that checks only the connections idle for a while
(`DATABASES["default"]["ENGINE"] = "config.postgresql"`, set by config/settings.py)."""
