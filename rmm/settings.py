"""Settings, read from the environment with strict parsing (see ``rmm/env.py``).

| variable | default | meaning |
|---|---|---|
| DATABASE_URL | embedded PostgreSQL in var/ | postgres://user:pass@host:5432/dbname |
| EMBEDDED_POSTGRES_DIR | var/postgres | the embedded PostgreSQL's cluster, when DATABASE_URL is unset |
| STATIC_ROOT | var/static | where the admin's and API docs' static files are collected (rmm/static_check.py) |
| DATABASE_POOL_MAX_SIZE | 10 | most PostgreSQL connections one server process holds (its heartbeat writer included) |
| DATABASE_POOL_TIMEOUT_SECONDS | 5 | how long a request waits for a free connection before it gets 503 |
| SECRET_KEY | a fixed development key when DEBUG is on; required otherwise | signs sessions, HMACs enrollment keys |
| DEBUG | false | Django debug pages |
| ALLOWED_HOSTS | localhost,127.0.0.1,[::1] (any host when DEBUG) | comma-separated |
| BEHIND_TLS_PROXY | false | a TLS proxy sets X-Forwarded-Proto on every request: believe it, redirect HTTP, send HSTS |
| SECURE_SSL_REDIRECT | BEHIND_TLS_PROXY | redirect plain-HTTP requests to HTTPS |
| SECURE_HSTS_SECONDS | 31536000 behind TLS, else 0 | HSTS max-age (0: no header); lower it for a first roll-out |
| SECURE_HSTS_INCLUDE_SUBDOMAINS | true | HSTS covers the server host's own subdomains too |
| SECURE_HSTS_PRELOAD | false | add `preload` (for a domain you submit to the browsers' preload list) |
| TELEMETRY_RETENTION_DAYS | 30 | telemetry partitions older than this are dropped |
| TELEMETRY_PARTITIONS_AHEAD_DAYS | 7 | daily partitions kept ready ahead of today |
| DEVICE_OFFLINE_AFTER_SECONDS | 300 | a device not seen for this long is marked offline |
| AGENT_TOKEN_MAX_AGE_DAYS | 30 | the heartbeat advises rotation of older agent tokens |
| AGENT_HEARTBEAT_INTERVAL_SECONDS | 60 | `heartbeatIntervalSeconds` of the agent config object |
| AGENT_METRICS_INTERVAL_SECONDS | 30 | `metricsCollectionIntervalSeconds` of the agent config object |
| AGENT_MTLS_MODE | off | client-certificate headers (from TRUSTED_PROXIES only): off, audit (logged), enforce (403) |
| AGENT_GROUP_COMMIT | true | heartbeats of one server process are written together, one transaction per batch |
| AGENT_GROUP_COMMIT_MAX_BATCH | 256 | most heartbeats one group-commit transaction takes |
| AGENT_GROUP_COMMIT_LINGER_MS | 5 | how long the group-commit writer waits for more heartbeats before writing |
| AGENT_GROUP_COMMIT_TIMEOUT_MS | 5000 | lock and statement timeout of the writer: a slower batch fails, 503 |
| COMMAND_DEFAULT_EXPIRY_SECONDS | 86400 | a queued command not claimed within this expires (default expiry) |
| COMMAND_SENT_TIMEOUT_SECONDS | 3600 | a sent command with no result nor timeoutSeconds times out after this |
| COMMAND_TIMEOUT_GRACE_SECONDS | 300 | added to a script's own timeoutSeconds before the server times it out |
| GROUP_RULE_TIMEOUT_MS | 10000 | statement timeout of one dynamic group's rule evaluation (preview, refresh) |
| GROUP_TIME_SWEEP_SECONDS | 60 | how often groups with time-based conditions (lastSeenAt, metrics …) are re-evaluated |
| GROUP_RECONCILE_SECONDS | 3600 | how often every dynamic group is re-evaluated from scratch (a safety net) |
| ALERT_EVALUATION_SECONDS | 60 | how often every enabled alert rule is evaluated (job evaluate_alerts) |
| ALERT_EVALUATION_PAUSE_PERCENT | 300 | pause after each step of a pass, in % of its time (0: none), up to 1/3 of it |
| ALERT_DIGEST_THRESHOLD | 10 | one pass opening more alerts of one rule in one site: one digest instead |
| NOTIFY_MAX_PER_CHANNEL_PER_MINUTE | 60 | notifications per channel per minute; the overflow: one digest next minute |
| WEBHOOK_ALLOW_HTTP | false | webhook channels may use plain http:// URLs (otherwise https only) |
| WEBHOOK_ALLOW_PRIVATE_ADDRESSES | false | webhooks may be delivered to loopback, link-local and private addresses |
| SCRIPT_SCHEDULE_SECONDS | 15 | how often due script schedules fire (job fire_script_schedules); at most 60 |
| EMAIL_URL | console:// if DEBUG, else smtp://localhost:25 | smtp://user:pass@host:port (?tls=1: STARTTLS), smtps://… |
| DEFAULT_FROM_EMAIL | rmm@localhost | the From of the e-mails the server sends (alert notifications) |
| RMM_BASE_URL | http://localhost:8000 | the server's address as technicians reach it: links in notifications |
| SCHEDULER_ENABLED | true | the server runs its periodic jobs itself (jobs/); off when cron runs the commands instead |
| SCHEDULER_INTERVALS | (each job's own) | `name=seconds,…` changes jobs' cadences, e.g. `mark_offline=30` |
| TRUSTED_PROXIES | (none) | proxies whose X-Forwarded-For and client-certificate headers are believed |
| LOGIN_TOKEN_HOURS | 12 | lifetime of the token the login endpoint issues |
| THROTTLE_WINDOW_SECONDS | 900 | the sliding window in which the throttles below count (accounts/throttle.py) |
| LOGIN_MAX_FAILURES | 10 | sign-in failures of one email from one address before 429; past it from any address: delay |
| LOGIN_MAX_FAILURES_PER_ADDRESS | 50 | failed sign-ins from one address (any email) before 429 |
| LOGIN_DELAY_BASE_MS / LOGIN_DELAY_MAX_MS | 1000 / 30000 | that delay: base, doubled per further failure, at most max |
| MFA_MAX_FAILURES | 5 | wrong second-factor codes of one user (login, mfa/enable, mfa/disable, …) before 429 |
| ENROLLMENT_MAX_FAILURES_PER_ADDRESS | 20 | refused enrollment keys from one address before refusals are 429 |
| AGENT_TOKEN_MAX_FAILURES_PER_ADDRESS | 100 | refused agent tokens from one address before refusals are 429 |
| API_TOKEN_MAX_FAILURES_PER_ADDRESS | 50 | refused API tokens (rmmu_, rmms_) from one address before refusals are 429 |
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from rmm import embedded_pg
from rmm.env import env_bool, env_choice, env_int, env_list, env_seconds_map, env_str, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"  # noqa: S105
_secret_key = env_str("SECRET_KEY")
if _secret_key is None:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DEBUG=1 for development "
            "(`make run` writes DEBUG=1 to .env, which manage.py reads)."
        )
    _secret_key = _DEV_SECRET_KEY
elif len(_secret_key) < 32:
    raise ImproperlyConfigured("SECRET_KEY is shorter than 32 characters; use a long random string.")
# Always a string from here on (the type checker reads each setting's type from its first assignment).
SECRET_KEY = _secret_key

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"] if DEBUG else ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CSRF_FAILURE_VIEW = "rmm.errors.csrf_failure"  # JSON in the error shape under /api/, Django's page elsewhere
# Reverse proxies whose X-Forwarded-For (and mTLS headers) are believed: addresses or networks.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
try:
    TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network(item, strict=False) for item in TRUSTED_PROXIES]
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES has an invalid address or network: {exc}") from None
# HTTPS (README "Production"): behind a proxy that terminates TLS, Django learns the scheme from X-Forwarded-Proto,
# which that proxy must set (overwrite) on every request; plain HTTP is then redirected and browsers are told to
# come back over HTTPS only (HSTS). Each of the three can also be set on its own (e.g. TLS terminated elsewhere).
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", 365 * 24 * 3600 if BEHIND_TLS_PROXY else 0, minimum=0, maximum=2 * 365 * 24 * 3600
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# Domain settings (spec: agent-api.md "Device status over time", data-model.md device_telemetry).
TELEMETRY_RETENTION_DAYS = env_int("TELEMETRY_RETENTION_DAYS", 30, minimum=1, maximum=3650)
TELEMETRY_PARTITIONS_AHEAD_DAYS = env_int("TELEMETRY_PARTITIONS_AHEAD_DAYS", 7, minimum=1, maximum=90)
DEVICE_OFFLINE_AFTER_SECONDS = env_int("DEVICE_OFFLINE_AFTER_SECONDS", 300, minimum=30)
AGENT_TOKEN_MAX_AGE_DAYS = env_int("AGENT_TOKEN_MAX_AGE_DAYS", 30, minimum=1)
# Agents (agent-api.md): the config object handed out at enrollment, client certificates, group commit.
AGENT_HEARTBEAT_INTERVAL_SECONDS = env_int("AGENT_HEARTBEAT_INTERVAL_SECONDS", 60, minimum=5, maximum=3600)
AGENT_METRICS_INTERVAL_SECONDS = env_int("AGENT_METRICS_INTERVAL_SECONDS", 30, minimum=5, maximum=3600)
AGENT_MTLS_MODE = env_choice("AGENT_MTLS_MODE", "off", ("off", "audit", "enforce"))
AGENT_GROUP_COMMIT = env_bool("AGENT_GROUP_COMMIT", True)
AGENT_GROUP_COMMIT_MAX_BATCH = env_int("AGENT_GROUP_COMMIT_MAX_BATCH", 256, minimum=1, maximum=5000)
AGENT_GROUP_COMMIT_LINGER_MS = env_int("AGENT_GROUP_COMMIT_LINGER_MS", 5, minimum=0, maximum=100)
# Bounds how long a heartbeat waits for its batch's outcome (devices/agent_api/group_commit.py): well under the 30 s an
# agent waits for an answer, so an answer always reports what was stored.
AGENT_GROUP_COMMIT_TIMEOUT_MS = env_int("AGENT_GROUP_COMMIT_TIMEOUT_MS", 5000, minimum=100, maximum=10_000)
# Commands: how long a queued command waits for its agent, and when a delivered one without a result times out.
COMMAND_DEFAULT_EXPIRY_SECONDS = env_int("COMMAND_DEFAULT_EXPIRY_SECONDS", 24 * 3600, minimum=60)
COMMAND_SENT_TIMEOUT_SECONDS = env_int("COMMAND_SENT_TIMEOUT_SECONDS", 3600, minimum=60)
COMMAND_TIMEOUT_GRACE_SECONDS = env_int("COMMAND_TIMEOUT_GRACE_SECONDS", 300, minimum=0)
# Dynamic groups: a rule's statement timeout, and how often time-based and all groups are re-evaluated.
GROUP_RULE_TIMEOUT_MS = env_int("GROUP_RULE_TIMEOUT_MS", 10_000, minimum=100, maximum=600_000)
GROUP_TIME_SWEEP_SECONDS = env_int("GROUP_TIME_SWEEP_SECONDS", 60, minimum=10)
GROUP_RECONCILE_SECONDS = env_int("GROUP_RECONCILE_SECONDS", 3600, minimum=60)
# Alerts (alerts/; docs/alerts.md): storm control and where webhooks may be delivered.
ALERT_EVALUATION_SECONDS = env_int("ALERT_EVALUATION_SECONDS", 60, minimum=10, maximum=3600)
ALERT_EVALUATION_PAUSE_PERCENT = env_int("ALERT_EVALUATION_PAUSE_PERCENT", 300, minimum=0, maximum=10_000)
ALERT_DIGEST_THRESHOLD = env_int("ALERT_DIGEST_THRESHOLD", 10, minimum=1, maximum=10_000)
NOTIFY_MAX_PER_CHANNEL_PER_MINUTE = env_int("NOTIFY_MAX_PER_CHANNEL_PER_MINUTE", 60, minimum=1, maximum=100_000)
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", False)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
# Script schedules (scripts/services/schedules.py): how often due ones are looked for; at most a minute, so every
# slot of a cron expression fires within its minute.
SCRIPT_SCHEDULE_SECONDS = env_int("SCRIPT_SCHEDULE_SECONDS", 15, minimum=1, maximum=60)
# Where technicians reach this server: the links in notifications (a device's admin page) start with it.
RMM_BASE_URL = (env_str("RMM_BASE_URL") or "http://localhost:8000").rstrip("/")
if urlsplit(RMM_BASE_URL).scheme not in {"http", "https"} or not urlsplit(RMM_BASE_URL).hostname:
    raise ImproperlyConfigured(
        f"RMM_BASE_URL={RMM_BASE_URL!r} is not an http(s):// address, e.g. https://rmm.example.com"
    )
# The scheduler (jobs/): the periodic jobs run inside the server, each by one process at a time across all servers.
SCHEDULER_ENABLED = env_bool("SCHEDULER_ENABLED", True)
SCHEDULER_INTERVALS = env_seconds_map("SCHEDULER_INTERVALS")
# People: the lifetime of the API token POST /api/v1/auth/login issues.
LOGIN_TOKEN_HOURS = env_int("LOGIN_TOKEN_HOURS", 12, minimum=1, maximum=24 * 90)
# Throttles on failed credentials (technician-api.md "Authentication"; accounts/throttle.py), in one sliding window.
THROTTLE_WINDOW_SECONDS = env_int("THROTTLE_WINDOW_SECONDS", 15 * 60, minimum=60, maximum=24 * 3600)
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 10, minimum=1, maximum=1000)
LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 50, minimum=1, maximum=10_000)
LOGIN_DELAY_BASE_MS = env_int("LOGIN_DELAY_BASE_MS", 1000, minimum=1, maximum=60_000)
LOGIN_DELAY_MAX_MS = env_int("LOGIN_DELAY_MAX_MS", 30_000, minimum=1, maximum=300_000)
MFA_MAX_FAILURES = env_int("MFA_MAX_FAILURES", 5, minimum=1, maximum=1000)
ENROLLMENT_MAX_FAILURES_PER_ADDRESS = env_int("ENROLLMENT_MAX_FAILURES_PER_ADDRESS", 20, minimum=1, maximum=100_000)
AGENT_TOKEN_MAX_FAILURES_PER_ADDRESS = env_int("AGENT_TOKEN_MAX_FAILURES_PER_ADDRESS", 100, minimum=1, maximum=100_000)
API_TOKEN_MAX_FAILURES_PER_ADDRESS = env_int("API_TOKEN_MAX_FAILURES_PER_ADDRESS", 50, minimum=1, maximum=100_000)

# This project's apps of one domain each (jobs, the scheduler, comes before staticfiles below). The tests that must
# cover every app of ours (admin registrations, packaging, request parsing) read this list.
DOMAIN_APPS = ["orgs", "accounts", "devices", "alerts", "scripts"]

INSTALLED_APPS = [
    "rmm.admin.RmmAdminConfig",  # django.contrib.admin with our AdminSite (rmm/admin.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "jobs",  # before staticfiles: its runserver (which also starts the scheduler) takes the place of theirs
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "guardian",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: deployments may have no internet access
    *DOMAIN_APPS,
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "rmm.csp.ContentSecurityPolicyMiddleware",  # on HTML pages only (the admin, /api/docs/); see rmm/csp.py
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "rmm.messages_middleware.MessageMiddleware",  # Django's, storage made only when used (see there)
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The agents' requests (/api/v1/agents/…) pass only these (rmm.wsgi.AgentHandler): the others act on browsers'
# requests alone (sessions, CSRF, users, messages, static files, the CSP of HTML pages).
AGENT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Scripts from this server only; why each other directive is as it is: rmm/csp.py.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

ROOT_URLCONF = "rmm.urls"
WSGI_APPLICATION = "rmm.wsgi.application"
ASGI_APPLICATION = "rmm.asgi.application"

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

_database_url = env_str("DATABASE_URL")
if _database_url is None:
    # Started by the first connection (rmm.database), so commands that need no database never start it.
    _embedded_dir = Path(env_str("EMBEDDED_POSTGRES_DIR") or BASE_DIR / "var" / "postgres").resolve()
    DATABASES = {"default": embedded_pg.database_settings(_embedded_dir)}
else:
    DATABASES = {"default": parse_database_url("DATABASE_URL", _database_url)}
# A bounded pool per server process (rmm/database/): under gevent every concurrent request used to open and keep a
# connection of its own, until PostgreSQL refused them all ("too many clients"). Requests take a connection from
# the pool and give it back when they end (CONN_MAX_AGE 0); past DATABASE_POOL_MAX_SIZE they wait up to
# DATABASE_POOL_TIMEOUT_SECONDS, then get 503. The heartbeat's group-commit writer keeps one of them.
DATABASES["default"]["ENGINE"] = "rmm.database"
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["OPTIONS"]["pool"] = {
    "min_size": 1,
    "max_size": env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=2, maximum=1000),
    "timeout": env_int("DATABASE_POOL_TIMEOUT_SECONDS", 5, minimum=1, maximum=60),
}
if env_str("DATABASE_CONN_MAX_AGE") is not None:
    raise ImproperlyConfigured(
        "DATABASE_CONN_MAX_AGE is no longer read: connections are pooled (DATABASE_POOL_MAX_SIZE, "
        "DATABASE_POOL_TIMEOUT_SECONDS); remove it."
    )


def _email_settings(name: str, url: str) -> dict:
    """``EMAIL_URL`` as Django's e-mail settings: ``console://``, ``smtp://user:password@host:port`` (port 25;
    ``?tls=1`` for STARTTLS, then port 587) or ``smtps://…`` (TLS from the first byte, port 465)."""
    parts = urlsplit(url)
    if parts.scheme == "console":
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if parts.scheme not in {"smtp", "smtps"}:
        raise ImproperlyConfigured(
            f"{name} must be smtp://user:password@host:port, smtps://… or console:// (got scheme {parts.scheme!r})."
        )
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - {"tls", "timeout"})
    if unknown:
        raise ImproperlyConfigured(f"{name} has unknown options: {', '.join(unknown)} (known: tls, timeout).")
    tls = query.get("tls", "0").lower()
    if tls not in {"0", "1", "true", "false"}:
        raise ImproperlyConfigured(f"{name}: tls={tls!r} is not 1 or 0.")
    use_tls = parts.scheme == "smtp" and tls in {"1", "true"}
    timeout = query.get("timeout", "10")
    if not timeout.isdigit() or not 1 <= int(timeout) <= 300:
        raise ImproperlyConfigured(f"{name}: timeout={timeout!r} is not a whole number of seconds from 1 to 300.")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port.") from None
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name} has no host (smtp://user:password@HOST:port).")
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port or (465 if parts.scheme == "smtps" else 587 if use_tls else 25),
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": use_tls,
        "EMAIL_USE_SSL": parts.scheme == "smtps",
        "EMAIL_TIMEOUT": int(timeout),
    }


# E-mail (alert notifications): one URL names the backend and the server. Unset, development prints mails on the
# console and production hands them to the local MTA (smtp://localhost:25), as Django itself would.
_email = _email_settings("EMAIL_URL", env_str("EMAIL_URL") or ("console://" if DEBUG else "smtp://localhost:25"))
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = _email.get("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "rmm@localhost"
if "@" not in DEFAULT_FROM_EMAIL:
    raise ImproperlyConfigured(f"DEFAULT_FROM_EMAIL={DEFAULT_FROM_EMAIL!r} is not an e-mail address.")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FIXTURE_DIRS = [BASE_DIR / "fixtures"]  # `manage.py loaddata default_roles`

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# The email is unique case-insensitively (a unique index on lower(email)), which this check cannot see.
# HSTS preload (security.W021) is a commitment of the whole registered domain, made by submitting it to the
# browsers' list; the header alone preloads nothing. SECURE_HSTS_PRELOAD=1 for those who do.
SILENCED_SYSTEM_CHECKS = ["auth.W004", "security.W021"]

# django-guardian: no anonymous user row; anonymous requests never hold object grants.
ANONYMOUS_USER_NAME = None

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The console's own styles and script (rmm/static/console/); the apps' static files come from their folders.
STATICFILES_DIRS = [BASE_DIR / "rmm" / "static"]
# Collected by gunicorn's start when missing or older than the sources (rmm/static_check.py), or by collectstatic.
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "var" / "static").resolve()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1024)

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header is what makes "not signed in" a 401 rather than a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "rmm.errors.exception_handler",
    # DRF's JSON renderer and parser, with what the API must survive (rmm/inputs.py): an answer quoting a lone
    # surrogate from the request, a body nested thousands of levels deep (400, not a RecursionError).
    "DEFAULT_RENDERER_CLASSES": ["rmm.inputs.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rmm.inputs.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "rmm.openapi.ApiSchema",
}

# The OpenAPI document of the technician API (/api/schema/, browsable at /api/docs/); rmm/openapi.py adds the
# error answers and the authentication schemes. The agent protocol is plain Django views and is not in it.
SPECTACULAR_SETTINGS = {
    "TITLE": "RMM technician API",
    "VERSION": "1",
    "DESCRIPTION": (
        "The API behind any UI, script or integration. JSON is camelCase; paths have no trailing slash.\n\n"
        "Scripts authenticate with `Authorization: Bearer rmmu_…`, a personal API token from "
        "`POST /api/v1/auth/login` or `POST /api/v1/api-tokens`; browsers with the admin's session cookie "
        "(CSRF enforced on writes).\n\n"
        'Every error has one shape: `{"error": "stable_snake_case_code", "message": "For people.", '
        '"fields": {"field": ["problem"]}}` — all three keys always present, `fields` empty except on a 400 '
        "that names request fields. An object outside your reach answers 404 `not_found`, as if it did not "
        "exist; one in reach whose action your role lacks answers 403 `permission_denied`.\n\n"
        'Long lists are keyset-paginated: `{"results": [...], "next": cursor or null}`; pass `next` back as '
        "`cursor` for the following page."
    ),
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    # The document is no secret (the code is open source): tooling fetches it without credentials.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Tags start collapsed: with every operation expanded (the default), Swagger UI stopped rendering after the
    # first few of the ~140 operations (seen in Chromium once the scripts API was added), and a list of tags is the
    # better table of contents anyway.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "docExpansion": "none"},
    "PREPROCESSING_HOOKS": ["rmm.openapi.without_trailing_slash"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "rmm.openapi.agent_hot_path"],
    "ENUM_NAME_OVERRIDES": {
        "UserStatusEnum": "accounts.models.User.Status",
        "DeviceStatusEnum": "devices.models.device.DeviceStatus",
        # A script's os_types are the devices' OS types: one enum, not OsTypeEnum and OsTypesEnum.
        "OsTypeEnum": "devices.models.device.DeviceOsType",
    },
    "GET_LIB_DOC_EXCLUDES": "rmm.openapi.lib_doc_excludes",
}

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", _LOG_LEVELS)},
    "loggers": {"embedded_postgres": {"level": "WARNING"}},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
