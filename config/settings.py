"""All settings, read from the environment in this one module (.env.example lists every variable).

With nothing set, the platform runs on one machine: SQLite, a filesystem Celery broker and an
in-memory channel layer. `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis.
"""

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

INSECURE_DEV_SECRET_KEY = "insecure-dev-key-never-use-in-production"  # noqa: S105


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env(name)
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate: requests per second, minute, hour or day (`1200/min`)."""
    value = env(name) or default
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name} must be a rate like 1200/min, got {value!r}")
    return value


DEBUG = env_bool("DEBUG", False)
# The web and worker processes call `check_production_settings()` at start-up, so a deployment
# with DEBUG off and no SECRET_KEY fails loudly there; tests and management commands run with
# the dev key.
SECRET_KEY = env("SECRET_KEY") or INSECURE_DEV_SECRET_KEY
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")


def check_production_settings() -> None:
    """Refuse to start a server without the values production needs."""
    if not DEBUG and SECRET_KEY == INSECURE_DEV_SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment, or DEBUG=1 for local use."
        )


INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files (factories are offline)
    "channels",
    "axes",  # login lockout after repeated failures (AXES_* below)
    "core",
    "inspection",
    "labeling",
    "models_registry",
    "monitoring",
]

MIDDLEWARE = [
    # First: every response, redirects and errors included, carries the request id.
    "core.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A view whose database cannot be reached answers 503 with Retry-After, not 500.
    "core.middleware.DatabaseUnavailableMiddleware",
    # Last: turns a login refused by the lockout into its 429 page (AXES_* below).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.navigation",
            ],
        },
    },
]

# Database: a SQLite file by default, PostgreSQL (or what dj-database-url reads) from DATABASE_URL.
VAR_DIR = Path(env("VAR_DIR") or BASE_DIR / "var")
DATABASE_URL = env("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0), conn_health_checks=True
    )
}
is_postgresql = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if is_postgresql and env_bool("DB_POOL", True):
    # Under ASGI each request's sync code runs in a thread of its own, so persistent
    # per-thread connections (CONN_MAX_AGE) would pile up; a pool shares a few instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Django's backend with the pool's health check made only for a connection not handed out
    # in the last half second (config/postgresql/base.py), instead of at every request.
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DB_POOL_MAX_SIZE", 8),
        "timeout": 10,
    }
if is_postgresql:
    # Parallel workers per query (PostgreSQL's default is 2). Every query here is short, and
    # starting the workers cost more than they saved: 5-8 ms on each of the monitoring job's
    # judged-decision reads, which find a few rows (line_check 203 -> 129 ms p50 on a million
    # captures); the web and worker processes already keep the cores busy.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c max_parallel_workers_per_gather={env_int('DB_PARALLEL_WORKERS', 0)}"
    )
    # Statements sent with their parameters apart (the capture's rows, inspection/services/
    # captures.py) are prepared on a connection after 5 runs: PostgreSQL stops parsing and
    # planning them each time. Django's own queries bind their parameters into the text and are
    # never prepared. Off (0) behind PgBouncer in transaction mode older than 1.21.
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = (
        5 if env_bool("DB_PREPARED_STATEMENTS", True) else None
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        # A fresh checkout has no var/ yet: SQLite cannot create a file in a missing folder.
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web server, the worker and the simulated station share the demo file.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT") or VAR_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

# Files (core/blobs.py): capture images, heatmaps, imported images and masks ("default"), model
# artifacts and evaluation overlays ("models"). On the local disk under MEDIA_ROOT and
# MODELS_ROOT; with AWS_STORAGE_BUCKET_NAME set, in that bucket of any S3-compatible store
# (AWS, MinIO, Ceph: AWS_S3_ENDPOINT_URL), under the prefixes media/ and models/, shared by every
# web and worker machine. Files a process needs on its own disk (artifacts it serves, images a
# training run reads) are then copied once into BLOB_CACHE_ROOT, by their content-addressed name.
MEDIA_ROOT = Path(env("MEDIA_ROOT") or BASE_DIR / "media")
MEDIA_URL = "/media/"
MODELS_ROOT = Path(env("MODELS_ROOT") or BASE_DIR / "artifacts")
BLOB_CACHE_ROOT = Path(env("BLOB_CACHE_ROOT") or VAR_DIR / "blob-cache")
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME")
if AWS_STORAGE_BUCKET_NAME:
    from botocore.config import Config as BotoConfig

    # As django-storages reads them; boto3 also finds credentials in its usual places.
    AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL") or None
    AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME") or None
    AWS_ACCESS_KEY_ID = env("AWS_ACCESS_KEY_ID") or None
    AWS_SECRET_ACCESS_KEY = env("AWS_SECRET_ACCESS_KEY") or None
    AWS_S3_FILE_OVERWRITE = True  # content-addressed names: the same name, the same bytes
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = False  # files reach people only through our views
    # Short timeouts and few retries: a station waits on the write of its image, and an object
    # store that is down must become a clear 503 in seconds, not a minute of retries.
    AWS_S3_CLIENT_CONFIG = BotoConfig(
        s3={"addressing_style": env("AWS_S3_ADDRESSING_STYLE") or None},  # "path": most MinIOs
        signature_version="s3v4",
        connect_timeout=float(env("AWS_S3_CONNECT_TIMEOUT") or 2),
        read_timeout=float(env("AWS_S3_READ_TIMEOUT") or 20),
        retries={"max_attempts": 3, "mode": "standard"},
    )
    _BLOB_STORAGES = {
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"location": "media"}},
        "models": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"location": "models"}},
    }
else:
    _BLOB_STORAGES = {
        "default": {"BACKEND": "core.storage.LocalBlobStorage"},
        "models": {
            "BACKEND": "core.storage.LocalBlobStorage",
            "OPTIONS": {"root_setting": "MODELS_ROOT"},
        },
    }
STORAGES = {
    **_BLOB_STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Limits on what a station may send; both are checked before anything is stored.
CAPTURE_MAX_BYTES = env_int("CAPTURE_MAX_BYTES", 20 * 1024 * 1024)
# Pixels are checked from the image header, before decoding: 16 MP is more than stations send.
CAPTURE_MAX_PIXELS = env_int("CAPTURE_MAX_PIXELS", 16_000_000)
# A capture's metadata (a JSON object): serialized size and nesting depth.
CAPTURE_METADATA_MAX_BYTES = env_int("CAPTURE_METADATA_MAX_BYTES", 16 * 1024)
CAPTURE_METADATA_MAX_DEPTH = env_int("CAPTURE_METADATA_MAX_DEPTH", 5)
# Request bodies are cut off before Django reads them (core/asgi_limits.py): a capture may be
# CAPTURE_MAX_BYTES plus this much multipart envelope and fields, a dataset import
# IMPORT_MAX_BYTES, anything else REQUEST_MAX_BYTES.
CAPTURE_FORM_OVERHEAD_BYTES = env_int("CAPTURE_FORM_OVERHEAD_BYTES", 64 * 1024)
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 2 * 1024 * 1024 * 1024)
REQUEST_MAX_BYTES = env_int("REQUEST_MAX_BYTES", 2 * 1024 * 1024)
# A dataset import archive (a zip): at most this many entries and this many bytes unpacked (a
# zip bomb is refused before anything is extracted), and how long its worker may take.
DATASET_IMPORT_MAX_FILES = env_int("DATASET_IMPORT_MAX_FILES", 50_000)
DATASET_IMPORT_MAX_UNCOMPRESSED_BYTES = env_int(
    "DATASET_IMPORT_MAX_UNCOMPRESSED_BYTES", 4 * 1024 * 1024 * 1024
)
DATASET_IMPORT_SOFT_TIME_LIMIT = env_int("DATASET_IMPORT_SOFT_TIME_LIMIT", 3600)
# Django's spool: bodies and uploads up to this stay in memory, larger ones go to a temp file.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 4 * 1024 * 1024)
# Form fields other than files, and JSON bodies; more answers 413 / 400, never 500.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 1000)
# Threads each process gives the model (one per worker keeps 2 cores shared between 2 workers).
SERVING_THREADS = env_int("SERVING_THREADS", 1)
# Images in inference at once per process (each costs memory in proportion to its pixels), and
# how long a capture waits for a slot before the station gets 503 with Retry-After.
SERVING_MAX_CONCURRENT = env_int("SERVING_MAX_CONCURRENT", 2)
SERVING_QUEUE_TIMEOUT_SECONDS = float(env("SERVING_QUEUE_TIMEOUT_SECONDS") or 10)
# Where served models run: `auto` (CUDA when the process has it, else the CPU), `cpu`, `cuda`.
SERVING_DEVICE = env("SERVING_DEVICE") or "auto"
# Threads per web process for the station's capture POST (core/asgi_threads.py); captures
# beyond them wait on the event loop, not in a thread.
CAPTURE_THREADS = env_int("CAPTURE_THREADS", 4)
# Decode a capture's image in another thread while the framework authenticates and parses its
# request (for stations already known to the process), instead of after.
CAPTURE_DECODE_EARLY = env_bool("CAPTURE_DECODE_EARLY", True)
# How long each web process keeps a line's deployments (0: read them for every capture).
SERVING_DEPLOYMENT_CACHE_SECONDS = float(env("SERVING_DEPLOYMENT_CACHE_SECONDS") or 2)
# How long each web process keeps a station found by its token, with its line's settings (0:
# read them for every request). A disabled or rotated token, and a line's new level or
# thresholds, reach every capture within this time.
STATION_AUTH_CACHE_SECONDS = float(env("STATION_AUTH_CACHE_SECONDS") or 2)
# How long a broken artifact is remembered before serving tries to load it again.
SERVING_ERROR_RETRY_SECONDS = env_int("SERVING_ERROR_RETRY_SECONDS", 30)

# Redis (broker and channel layer) when REDIS_URL is set; embedded one-machine defaults otherwise.
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env("CHANNELS_PREFIX", "inspection")},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    # A publish (on commit, in a web request) gives up within about 1 s when Redis is down or
    # frozen: 1 s to connect or to answer, no retry of kombu's own (redis-py reconnects a
    # stale connection itself); core/queueing.py logs it and the request still succeeds.
    # The visibility timeout is set below, from the tasks' time limits.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"socket_connect_timeout": 1, "socket_timeout": 1}
else:
    # In memory: events reach only websockets served by the same web process (one process
    # in the demo). Run several web processes only with REDIS_URL.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_FOLDER = Path(env("CELERY_BROKER_FOLDER") or VAR_DIR / "celery-broker")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_FOLDER / "queue"),
        "data_folder_out": str(CELERY_BROKER_FOLDER / "queue"),
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        "store_processed": False,
    }

# The shared cache: the API throttles' counters (core/throttling.py), so that every web process
# counts against the same buckets. On Redis when REDIS_URL is set, under a key prefix of its own
# (the channel layer and Celery keep theirs); 0.5 s to connect or to answer, so a Redis outage
# never holds a request for long (the throttles then let requests through). One machine: memory.
CACHE_KEY_PREFIX = env("CACHE_KEY_PREFIX", "inspection-cache")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }

# Queue names can be changed (tests give each run its own on a shared Redis).
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_DEFAULT_QUEUE", "default")
TRAINING_QUEUE = env("CELERY_TRAINING_QUEUE", "training")
CELERY_TASK_ROUTES = {
    "models_registry.training_run_execute": {"queue": TRAINING_QUEUE},
    # The edge model's ONNX export: CPU-heavy for a few seconds, kept off the default queue.
    "models_registry.edge_export_execute": {"queue": TRAINING_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 0}
# A task whose worker process died is handed to another worker: every task is idempotent (the
# jobs run only while queued, a shadow prediction or a webhook delivery already recorded is
# not redone, the beat checks look at the state now).
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# Model registry jobs (training, evaluation, batch prediction): time limits, heartbeat, reaper.
TRAINING_SOFT_TIME_LIMIT = env_int("TRAINING_SOFT_TIME_LIMIT", 3 * 3600)
TRAINING_THREADS = env_int("TRAINING_THREADS", 0)  # 0: torch's default
CELERY_TASK_ANNOTATIONS = {
    name: {
        "soft_time_limit": TRAINING_SOFT_TIME_LIMIT,
        "time_limit": TRAINING_SOFT_TIME_LIMIT + 300,
    }
    for name in (
        "models_registry.training_run_execute",
        "models_registry.evaluation_run_execute",
        "models_registry.batch_predict_execute",
    )
}
CELERY_TASK_ANNOTATIONS["labeling.dataset_import_execute"] = {
    "soft_time_limit": DATASET_IMPORT_SOFT_TIME_LIMIT,
    "time_limit": DATASET_IMPORT_SOFT_TIME_LIMIT + 60,
}
# Every other task has its limits on its decorator (a test checks that none is without).
if REDIS_URL:
    # Redis hands an unacknowledged message to another worker after this long (its worker
    # died): longer than any task may run, or a long training run would be delivered twice.
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = (
        max(TRAINING_SOFT_TIME_LIMIT + 300, DATASET_IMPORT_SOFT_TIME_LIMIT + 60) + 600
    )
# A running job writes a heartbeat this often; one silent for JOB_STALE_SECONDS is "worker lost".
JOB_HEARTBEAT_SECONDS = float(env("JOB_HEARTBEAT_SECONDS") or 10)
JOB_STALE_SECONDS = float(env("JOB_STALE_SECONDS") or 120)
JOB_CANCEL_POLL_SECONDS = float(env("JOB_CANCEL_POLL_SECONDS") or 1)
# The promotion gate: a candidate may trail production on the benchmark by at most this much.
REGISTRY_GATE_MARGIN = float(env("REGISTRY_GATE_MARGIN") or 0.02)
CODE_VERSION = env("CODE_VERSION")  # the trainer's commit, when the image has no .git
CELERY_BEAT_SCHEDULE = {
    "registry-canary-check": {"task": "models_registry.canary_check", "schedule": 60.0},
    "registry-jobs-reap": {"task": "models_registry.jobs_reap", "schedule": 60.0},
    "registry-auto-retrain": {"task": "models_registry.auto_retrain_check", "schedule": 600.0},
    "monitoring-lines-check": {"task": "monitoring.lines_check", "schedule": 60.0},
    "inspection-retention": {"task": "inspection.retention_apply", "schedule": 3600.0},
}

# API throttles (core/throttling.py): requests per station (by token), per logged-in user and,
# for the few operations open without login, per client address; over it, 429 with Retry-After.
# Far above real use: a station posts about a capture a second and waits on each pending one, so
# 1200/min is ten times a busy station and lets a station's offline buffer drain at 20/s; an
# inspector deciding as fast as a person can makes a few calls a second at most.
THROTTLE_STATION_RATE = env_rate("THROTTLE_STATION_RATE", "1200/min")
THROTTLE_USER_RATE = env_rate("THROTTLE_USER_RATE", "600/min")
THROTTLE_ANON_RATE = env_rate("THROTTLE_ANON_RATE", "120/min")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.StationTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.StationThrottle",
        "core.throttling.UserThrottle",
        "core.throttling.AnonymousThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "station": THROTTLE_STATION_RATE,
        "user": THROTTLE_USER_RATE,
        "anon": THROTTLE_ANON_RATE,
    },
    "DEFAULT_SCHEMA_CLASS": "core.api_schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Inspection platform API",
    "DESCRIPTION": "Station capture API and inspector/supervisor endpoints.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api_schema.common_errors_hook",
    ],
}

# Logs: one JSON object a line by default with DEBUG off (what a log shipper reads), plain
# text with DEBUG on; LOG_FORMAT=json|plain chooses. Each line carries the request id of the
# HTTP request or Celery task it belongs to (core/request_id.py, core/logs.py).
LOG_LEVEL = (env("LOG_LEVEL") or "INFO").upper()
LOG_FORMAT = (env("LOG_FORMAT") or ("plain" if DEBUG else "json")).lower()
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {"()": "core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # uvicorn's own lines (start-up, access log) in the same format, not its default one.
        "uvicorn": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.error": {"level": LOG_LEVEL},
        "uvicorn.access": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

# Security. DEBUG=0 assumes HTTPS behind a proxy that sets X-Forwarded-Proto: secure cookies,
# HSTS and a redirect to https. HTTPS=0 runs plain HTTP (a test rig, a closed network) with the
# rest of the production settings. The probes and the scraper may use plain HTTP inside the
# operator's network, so they are not redirected.
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Our pages load scripts and styles from our static files only (core/csp.py).
CONTENT_SECURITY_POLICY = env("CONTENT_SECURITY_POLICY") or (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Pages that ship their own <style> blocks (Django's admin, Swagger UI): inline styles allowed.
CONTENT_SECURITY_POLICY_INLINE_STYLE_PATHS = ["/admin/", "/api/docs/"]

# Reverse proxies in front of the web process that each append the address they saw to
# X-Forwarded-For (nginx: `proxy_add_x_forwarded_for`): the throttles and the login lockout then
# take the client's address from there (core/throttling.client_ip). 0: REMOTE_ADDR, which behind
# a proxy is the proxy's, shared by every client.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# Login lockout (django-axes; failures are kept in the database, so it needs no Redis): after
# AXES_FAILURE_LIMIT wrong passwords for one username from one client address, that pair is
# refused for AXES_COOLOFF_MINUTES, even with the right password: 429 with Retry-After and a page
# that says so (core/throttling.login_lockout_response). By the pair, not by username alone
# (anyone could then lock any inspector out from anywhere) nor by address alone (a factory's
# inspectors often share one: a NAT, a shared terminal, the proxy). A successful login clears
# the count. An admin unlocks sooner: admin > Axes > Access attempts (delete the row), or
# `python manage.py axes_reset_username NAME`.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 15)
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured("AXES_FAILURE_LIMIT and AXES_COOLOFF_MINUTES must be at least 1")
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_RESET_ON_SUCCESS = True
# A refused attempt starts the cool-off again, so the lockout page's Retry-After (the whole
# cool-off) is exact.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_LOCKOUT_CALLABLE = "core.throttling.login_lockout_response"
AXES_CLIENT_IP_CALLABLE = "core.throttling.client_ip"

# Operations: /healthz, /readyz (config/health.py) and /metrics (config/metrics.py).
HEALTH_CHECK_TIMEOUT_SECONDS = float(env("HEALTH_CHECK_TIMEOUT_SECONDS") or 2)
# Set: /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = env("METRICS_TOKEN")
# Set (CIDRs, e.g. 10.0.0.0/8,127.0.0.1/32): only these client addresses may read /metrics.
try:
    METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(cidr, strict=False)
        for cidr in env_list("METRICS_ALLOWED_NETWORKS", "")
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {exc}") from exc


# Monitoring: alerts link to the pages at PUBLIC_URL; email through Django's backend (SMTP when
# EMAIL_HOST is set, else the console: alerts are printed by the worker).
PUBLIC_URL = env("PUBLIC_URL", "http://127.0.0.1:8000")
EMAIL_HOST = env("EMAIL_HOST")
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "inspection@localhost")
