"""Settings for rewardlab, read from the environment in this one place.

Every value has an embedded default that makes `make run` work on a laptop with nothing but
Python (SQLite and a filesystem Celery broker under `var/`); production points the same names at
PostgreSQL and Redis.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """Read a string setting from the environment."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean setting: 1/true/yes/on are true, 0/false/no/off are false."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false).")


def env_int(name: str, default: int) -> int:
    """Read an integer setting."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list setting."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [part.strip() for part in value.split(",") if part.strip()]


DEBUG = env_bool("DEBUG", False)
VAR_DIR = Path(env_str("REWARDLAB_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (export SECRET_KEY=... or DEBUG=1 for local use)."
        )
    SECRET_KEY = "insecure-local-development-key-never-use-in-production-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "annotation",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "rewardlab.urls"
WSGI_APPLICATION = "rewardlab.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'rewardlab.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # `make run`: web, worker and beat write to one file. Writers queue for up to 30 s instead of failing
    # with "database is locked" after sqlite3's 5 s (a snapshot or a small import holds the lock a
    # while; a longer import still makes them fail: use PostgreSQL for large files); BEGIN IMMEDIATE
    # takes the write lock up front, so a transaction never fails upgrading to it; WAL lets pages read
    # while someone writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL",
        **DATABASES["default"].get("OPTIONS", {}),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Sign-in throttling (django-axes, in the database so every web process counts the same failures): after
# LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is locked out for
# LOGIN_LOCKOUT_MINUTES, right password or not; a successful sign-in clears the count. The admin's
# login goes through the same check.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "common.pages.login_locked_out"
# Proxies of this site's own in front of the web process (a load balancer, nginx): with N, the client's
# address is the Nth from the right of X-Forwarded-For instead of the last proxy's (common.pages).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "common.pages.client_address"

# Mail, for password reset only: without EMAIL_HOST (or another EMAIL_BACKEND) the reset pages are not
# there, since the form would say "sent" while the send fails and is only logged.
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "rewardlab@localhost")
PASSWORD_RESET_ENABLED = bool(EMAIL_HOST) or EMAIL_BACKEND != "django.core.mail.backends.smtp.EmailBackend"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Trained reward models live outside MEDIA_ROOT: they are large and never served directly.
MODEL_ROOT = Path(env_str("MODEL_ROOT", str(VAR_DIR / "models")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# In development WhiteNoise serves straight from the source folders, so no collectstatic is needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
# The largest JSON body the API reads (DRF parses JSON from the stream, past DATA_UPLOAD_MAX_MEMORY_SIZE):
# a submit is a few hundred bytes, a score request with 256 long answers about a megabyte.
API_BODY_MAX_BYTES = env_int("API_BODY_MAX_BYTES", 2 * 1024 * 1024)

# Production hardening; `manage.py check --deploy` is clean when DEBUG is off.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    # JSON bodies are refused over API_BODY_MAX_BYTES; uploads come as multipart files (FILE_UPLOAD_*).
    "DEFAULT_PARSER_CLASSES": [
        "common.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Services raise domain errors (common.errors); this one handler turns them into statuses.
    "EXCEPTION_HANDLER": "common.api.exception_handler",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "rewardlab API",
    "DESCRIPTION": "Rank assistant answers, export preference datasets and serve reward-model scores.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.api.document_error_responses",
    ],
}

# Celery: the broker defaults to kombu's filesystem transport so that `make run` needs no Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_celery_queue_dir = VAR_DIR / "celery-broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict = (
    {
        "data_folder_in": str(_celery_queue_dir),
        "data_folder_out": str(_celery_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {
        # Longer than the longest training run, so a running task is never handed to a second worker.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 12 * 3600),
    }
)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
# Only the long training task goes to the `training` queue; the light training tasks (the retrain check,
# the heartbeat reaper) stay on the default queue so that they never wait behind a run.
CELERY_TASK_ROUTES = {
    "training.tasks.run_training": {"queue": "training"},
    "training.tasks.score_items": {"queue": "training"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request that enqueues work must fail fast with a clear error when the broker is down.
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("CELERY_BROKER_CONNECTION_TIMEOUT", 3)
CELERY_TASK_PUBLISH_RETRY = False

# Annotation.
# The most answers one item may have: imports refuse more, and a submitted ranking may name no more.
ITEM_MAX_ANSWERS = env_int("ITEM_MAX_ANSWERS", 64)
ASSIGNMENT_LEASE_SECONDS = env_int("ASSIGNMENT_LEASE_SECONDS", 30 * 60)
# The project-wide progress figure sums over all items, so each process reuses it this long (0: always fresh).
PROJECT_PROGRESS_CACHE_SECONDS = env_int("PROJECT_PROGRESS_CACHE_SECONDS", 5)
# Markdown rendering (turns, answers, guidelines) is bounded: a longer text, or one whose conversion takes
# more CPU than this, is shown as written with a note; so are an item's remaining texts once its texts took
# MARKDOWN_ITEM_MAX_CPU_MS together. Ordinary Markdown converts at ~1 ms per 1,000 characters; the
# measurements behind the defaults are in BENCHMARKS.md ("Rendering bounds").
MARKDOWN_MAX_CHARS = env_int("MARKDOWN_MAX_CHARS", 50_000)
MARKDOWN_MAX_CPU_MS = env_int("MARKDOWN_MAX_CPU_MS", 250)
MARKDOWN_ITEM_MAX_CPU_MS = env_int("MARKDOWN_ITEM_MAX_CPU_MS", 1000)
# Uploads larger than this are imported by a Celery worker: a web request would hold a web worker for minutes.
IMPORT_INLINE_MAX_BYTES = env_int("IMPORT_INLINE_MAX_BYTES", 10 * 1024 * 1024)
# A running import job without a heartbeat this long is failed: its worker died. It beats 12 times as often.
IMPORT_JOB_STALE_SECONDS = env_int("IMPORT_JOB_STALE_SECONDS", 120)
# A queued import job that no worker took this long is failed (and its upload deleted): its message was
# lost. Long enough for a queue of other large imports to drain first.
IMPORT_JOB_QUEUE_TIMEOUT_SECONDS = env_int("IMPORT_JOB_QUEUE_TIMEOUT_SECONDS", 6 * 3600)
# What one row of an imported file may hold (the answers of an item: ITEM_MAX_ANSWERS). A line is refused
# once this many bytes were read, so its memory stays bounded whatever it expands to (gzip); a JSON-array
# file is held to it row by row.
IMPORT_MAX_LINE_BYTES = env_int("IMPORT_MAX_LINE_BYTES", 16 * 1024 * 1024)
# JSON nesting: an Open-Assistant tree nests two levels per message, so this allows ~250-message threads;
# Python's own parser cannot go much past 900 in a web worker.
IMPORT_MAX_JSON_DEPTH = env_int("IMPORT_MAX_JSON_DEPTH", 512)
IMPORT_MAX_TURNS = env_int("IMPORT_MAX_TURNS", 200)
IMPORT_MAX_TURN_CHARS = env_int("IMPORT_MAX_TURN_CHARS", 200_000)
IMPORT_MAX_ANSWER_CHARS = env_int("IMPORT_MAX_ANSWER_CHARS", 200_000)
# A Parquet row group, uncompressed: pyarrow holds about that much while reading it, before any of its
# rows can be checked.
IMPORT_MAX_PARQUET_ROW_GROUP_BYTES = env_int("IMPORT_MAX_PARQUET_ROW_GROUP_BYTES", 256 * 1024 * 1024)

# Exports.
EXPORT_SNAPSHOT_RETENTION = env_int("EXPORT_SNAPSHOT_RETENTION", 48)

# Training.
TRAINING_DEFAULT_BASE_MODEL = env_str("TRAINING_DEFAULT_BASE_MODEL", "")
TRAINING_GPUS = env_int("TRAINING_GPUS", 0)
TRAINING_HEARTBEAT_SECONDS = env_int("TRAINING_HEARTBEAT_SECONDS", 5)
TRAINING_STALE_AFTER_SECONDS = env_int("TRAINING_STALE_AFTER_SECONDS", 120)
# How often each web worker looks for newly activated versions to load before a score request asks
# (0: load on the first request instead).
SCORING_PRELOAD_SECONDS = env_int("SCORING_PRELOAD_SECONDS", 10)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

for _directory in (VAR_DIR, MEDIA_ROOT, MODEL_ROOT):
    _directory.mkdir(parents=True, exist_ok=True)
if CELERY_BROKER_URL.startswith("filesystem"):
    # The folders named in the transport options above, so a new one is declared in one place.
    for _folder in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        Path(CELERY_BROKER_TRANSPORT_OPTIONS[_folder]).mkdir(parents=True, exist_ok=True)
