"""Paperboy settings: every value comes from the environment, with safe local defaults.

Unset variables give the embedded setup: SQLite under var/, Celery tasks run
in-process, email written as .eml files to var/outbox/. See the README's
configuration table for each variable.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))  # local state: SQLite, outbox

# --- Core -----------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="") or (
    "insecure-local-development-key-change-me" if DEBUG else ""
)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "anymail",
    "django_ratelimit",
    "papers",
    "subscriptions",
    "digest",
]

MIDDLEWARE = [
    "config.head_requests.head_without_body",  # outermost: after Content-Length is set
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'paperboy.sqlite3'}"),
}
if not env("DATABASE_URL", default=""):
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded SQLite file lives here
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Time -----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")  # the edition clock
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------
STATIC_URL = "/static/"
# collectstatic's target; whitenoise serves it in production. In DEBUG, files come
# straight from the apps (whitenoise's finders), so no collected copy is needed.
STATIC_ROOT = env("STATIC_ROOT", default=None if DEBUG else str(VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env(
            "STATICFILES_STORAGE",
            default="django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}

# --- Redis, cache and Celery ---------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL  # embedded default: tasks run in-process
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 60 * 60}
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ROUTES = {
    "papers.tasks.*": {"queue": "fetch"},
    "digest.tasks.send_*": {"queue": "send"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # workers log through LOGGING below, like the web
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
BEAT_INTERVAL_SECONDS = env.float("BEAT_INTERVAL_SECONDS", default=0)  # >0: every beat job every N s (staging, tests)
DAILY_JOB_HOUR = env.int("DAILY_JOB_HOUR", default=6)  # local hour of the fetch + edition step
# A reader whose send hour comes more than this many hours before the daily job (far east of
# the edition clock: 07:00 in Tokyo is 22:00 UTC the day before) gets each edition at their
# hour the next day, in their morning, rather than when it is built (digest/scheduling.py).
DIGEST_SAME_DAY_HOURS = env.int("DIGEST_SAME_DAY_HOURS", default=6)

# --- Email ----------------------------------------------------------------
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Paperboy <digest@paperboy.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_LIST_ID = env("EMAIL_LIST_ID", default="Paperboy digest <digest.paperboy.localhost>")
EMAIL_MESSAGE_ID_DOMAIN = env("EMAIL_MESSAGE_ID_DOMAIN", default="paperboy.localhost")
EMAIL_UNSUBSCRIBE_MAILTO = env("EMAIL_UNSUBSCRIBE_MAILTO", default="unsubscribe@paperboy.localhost")
EMAIL_POSTAL_ADDRESS = env("EMAIL_POSTAL_ADDRESS", default="Paperboy, 1 Example Street, Cambridge")
CONTACT_EMAIL = env("CONTACT_EMAIL", default="hello@paperboy.localhost")
OUTBOX_DIR = Path(env("OUTBOX_DIR", default=str(VAR_DIR / "outbox")))

ESP = env("ESP", default="")
EMAIL_URL = env("EMAIL_URL", default="")
ESP_TIMEOUT_SECONDS = env.float("ESP_TIMEOUT_SECONDS", default=30.0)
ANYMAIL = {
    "MAILGUN_API_KEY": env("MAILGUN_API_KEY", default=""),
    "MAILGUN_SENDER_DOMAIN": env("MAILGUN_SENDER_DOMAIN", default=""),
    "MAILGUN_API_URL": env("MAILGUN_API_URL", default="https://api.mailgun.net/v3"),
    "MAILGUN_WEBHOOK_SIGNING_KEY": env("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
    "POSTMARK_SERVER_TOKEN": env("POSTMARK_SERVER_TOKEN", default=""),
    "POSTMARK_API_URL": env("POSTMARK_API_URL", default="https://api.postmarkapp.com/"),
    # One attempt per call: botocore would otherwise send a call again after a timeout or a dropped
    # connection, when SES may have taken it already (a second digest to every reader of the batch).
    # The delivery ledger decides what is sent again.
    "AMAZON_SES_CLIENT_PARAMS": {
        "region_name": env("AWS_REGION", default="us-east-1"),
        "config": {"retries": {"total_max_attempts": 1}, "connect_timeout": ESP_TIMEOUT_SECONDS,
                   "read_timeout": ESP_TIMEOUT_SECONDS},
    },
    "WEBHOOK_SECRET": env("WEBHOOK_SECRET", default=""),
    "REQUESTS_TIMEOUT": ESP_TIMEOUT_SECONDS,
}
# Left empty, anymail would check each Mailgun event's signature against an empty key (the
# signing key falls back to the API key), which anyone can compute; unset, Mailgun's webhooks
# are refused (a 400) until a key is given, and sending through Mailgun says the key is missing.
for _key in ("MAILGUN_WEBHOOK_SIGNING_KEY", "MAILGUN_API_KEY"):
    if not ANYMAIL[_key]:
        del ANYMAIL[_key]
if ESP:
    EMAIL_BACKEND = f"anymail.backends.{ESP}.EmailBackend"
elif EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env("EMAIL_BACKEND", default="digest.outbox.OutboxEmailBackend")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Seconds before each new try of a confirmation or "already subscribed" email the mail system
# deferred (a 4xx, an ESP's 429 or 5xx, no connection), each at most 600 (the address's slot);
# after the last, the reader may ask again.
ACCOUNT_EMAIL_RETRY_DELAYS = env.list("ACCOUNT_EMAIL_RETRY_DELAYS", cast=int, default=[60, 300, 600])
# Days a signup nobody confirmed is kept (subscriptions/retention.py): older pending readers
# who never confirmed are deleted each night. 0 keeps them; set, it is at least 8.
UNCONFIRMED_SIGNUP_DAYS = env.int("UNCONFIRMED_SIGNUP_DAYS", default=30)

# --- Paper sources --------------------------------------------------------
CONTACT_FOR_USER_AGENT = env("SOURCE_CONTACT_EMAIL", default=CONTACT_EMAIL)
HTTP_USER_AGENT = f"Paperboy/0.1 (+{SITE_URL}; mailto:{CONTACT_FOR_USER_AGENT})"
PAPER_SOURCES = env.list("PAPER_SOURCES", default=["bundled"])
HF_API_URL = env("HF_API_URL", default="https://huggingface.co/api/daily_papers")
HF_PAPERS_PAGE_URL = env("HF_PAPERS_PAGE_URL", default="https://huggingface.co/papers")
ARXIV_API_URL = env("ARXIV_API_URL", default="https://export.arxiv.org/api/query")
ARXIV_RSS_URL = env("ARXIV_RSS_URL", default="https://rss.arxiv.org/rss/")
ARXIV_CATEGORIES = env.list("ARXIV_CATEGORIES", default=["cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML"])
ARXIV_MIN_INTERVAL_SECONDS = env.float("ARXIV_MIN_INTERVAL_SECONDS", default=3.0)
HTTP_TIMEOUT_SECONDS = env.float("HTTP_TIMEOUT_SECONDS", default=20.0)
HTTP_RETRIES = env.int("HTTP_RETRIES", default=3)  # per request, for 429/5xx, resets, timeouts
HTTP_BACKOFF_SECONDS = env.float("HTTP_BACKOFF_SECONDS", default=1.0)  # doubles on each retry
HTTP_MAX_RETRY_AFTER_SECONDS = env.float("HTTP_MAX_RETRY_AFTER_SECONDS", default=60.0)
HTTP_MAX_RESPONSE_BYTES = env.int("HTTP_MAX_RESPONSE_BYTES", default=64 * 1024 * 1024)  # per answer, decompressed
ARXIV_PAGE_SIZE = env.int("ARXIV_PAGE_SIZE", default=500)
ARXIV_MAX_RESULTS = env.int("ARXIV_MAX_RESULTS", default=2000)  # per fetch, newest first

# --- Digest ---------------------------------------------------------------
# Readers per send task. A task reads and ranks them 1,000 at a time (flat memory) and keeps its ESP
# calls in flight from one block to the next: it waits for its last answer once, so larger tasks
# lose less time to that wait. Only pending rows are sent, so a retried task costs one read.
DIGEST_SEND_BATCH_SIZE = env.int("DIGEST_SEND_BATCH_SIZE", default=5000)
# The smallest send task. A tick's first task and its last few are cut down towards it: the first
# so that idle workers start before a whole task's rows are inserted, the last ones so that the
# workers finish the tick together instead of one sending a last full task while the others idle.
DIGEST_SEND_MIN_BATCH_SIZE = env.int("DIGEST_SEND_MIN_BATCH_SIZE", default=500)
DIGEST_SENDING_STALE_MINUTES = env.int("DIGEST_SENDING_STALE_MINUTES", default=30)
# An operator's pause of all digest sending (manage.py sending, the admin's sending switch) fails
# the deep health check once it has lasted this long: a pause forgotten costs the readers a day.
DIGEST_PAUSE_ALERT_HOURS = env.float("DIGEST_PAUSE_ALERT_HOURS", default=3)
# Claim each ESP batch call with one row (digest.calls) instead of a new version of each reader's
# delivery row: a row per call of 250 readers beside the sending thread, not a row per reader. The
# calls' outcomes are copied onto the rows by the beat's sweep and by ESP webhooks.
DIGEST_CLAIMS_PER_CALL = env.bool("DIGEST_CLAIMS_PER_CALL", default=True)
# The operator dashboard's figures are shown to every staff view for this many seconds, then
# while a worker computes them again (0: computed on every view); a view can ask for them now.
DASHBOARD_CACHE_SECONDS = env.int("DASHBOARD_CACHE_SECONDS", default=60)
# Applied ESP webhook events older than this are deleted each night (the dashboard reads a week of clicks;
# ESPs retry an event for hours, not weeks, so a repeat is still recognised).
WEBHOOK_EVENT_RETENTION_DAYS = env.int("WEBHOOK_EVENT_RETENTION_DAYS", default=30)
# Days the delivery ledger keeps each digest (who got which papers, its outcome) after its
# edition's date: older final rows are deleted each night (digest/retention.py). 0 keeps them
# all; set, it is at least 60.
DELIVERY_RETENTION_DAYS = env.int("DELIVERY_RETENTION_DAYS", default=0)
DIGEST_RETRY_BASE_SECONDS = env.float("DIGEST_RETRY_BASE_SECONDS", default=30)  # first send retry after ~this (±50 %), doubling
DIGEST_RELEVANCE_WEIGHT = env.float("DIGEST_RELEVANCE_WEIGHT", default=0.7)
DIGEST_EMBEDDER = env("DIGEST_EMBEDDER", default="digest.embedding.TfidfEmbedder")
DIGEST_SENTENCE_MODEL = env("DIGEST_SENTENCE_MODEL", default="all-MiniLM-L6-v2")
# Recipients per ESP batch call (0: the ESP's own limit). Below a task's block of readers so that
# its calls pipeline: the next batch is ranked and rendered while the ESP answers the previous one.
# Each call has a fixed cost (a claim, a record, a request): 250 sent 9% more than 125 per worker.
DIGEST_ESP_BATCH_LIMIT = env.int("DIGEST_ESP_BATCH_LIMIT", default=250)
# ESP calls a send task keeps in progress at once: a real ESP takes a tenth of a second or more to
# answer a batch, which with one call at a time would set the pace of sending. Two calls of 250
# carry as many readers as four of 125 did.
DIGEST_ESP_CALLS_IN_FLIGHT = env.int("DIGEST_ESP_CALLS_IN_FLIGHT", default=2)
DIGEST_ESP_BATCH_MAX_BYTES = env.int("DIGEST_ESP_BATCH_MAX_BYTES", default=10 * 1024 * 1024)
DIGEST_ESP_TEMPLATE_ID = env("DIGEST_ESP_TEMPLATE_ID", default="")  # Postmark/SES batch template
# Postmark's broadcast stream for digests (bulk mail is not allowed on a transactional stream);
# confirmations and other one-to-one emails stay in the server's default stream.
POSTMARK_DIGEST_STREAM = env("POSTMARK_DIGEST_STREAM", default="")

# --- Security -------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REDIRECT_EXEMPT = [r"^healthz(/deep)?$"]  # load balancers probe over plain HTTP
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=256 * 1024)
RATELIMIT_USE_CACHE = "default"
RATELIMIT_VIEW = "subscriptions.views.rate_limited"
MIDDLEWARE.append("django_ratelimit.middleware.RatelimitMiddleware")  # RATELIMIT_VIEW answers 429
RATELIMIT_IP_META_KEY = "subscriptions.ratelimits.client_ip"
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)  # proxies appending X-Forwarded-For
SUBSCRIBE_RATE_PER_IP = env("SUBSCRIBE_RATE_PER_IP", default="20/10m")
SUBSCRIBE_RATE_PER_EMAIL = env("SUBSCRIBE_RATE_PER_EMAIL", default="5/h")
CSRF_FAILURE_VIEW = "subscriptions.views.csrf_failure"
# W001 ("not officially supported") names Django's own RedisCache: its add (SET NX) and
# incr (INCRBY) are atomic, which is all django-ratelimit needs; tested under load.
SILENCED_SYSTEM_CHECKS = (
    ["django_ratelimit.W001"] if REDIS_URL else ["django_ratelimit.E003", "django_ratelimit.W001"]
)
ADMIN_LOGIN_RATE_PER_IP = env("ADMIN_LOGIN_RATE_PER_IP", default="10/10m")  # config/admin_login.py
ADMIN_LOGIN_RATE_PER_USERNAME = env("ADMIN_LOGIN_RATE_PER_USERNAME", default="5/10m")
# Content-Security-Policy (django-csp 4): scripts, styles and images from this site only,
# no inline code, no framing. The admin works under it (Django 5.2's admin has no inline
# scripts); config/csp.py allows inline styles on the "view in browser" email page alone.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "config.csp.CSPMiddleware"
)

# --- Logging --------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="line")  # "json": one JSON object per line (see config/logging.py)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_emails": {"()": "config.logging.RedactEmailsFilter"}},
    "formatters": {
        "line": {"()": "config.logging.LineFormatter"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact_emails"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django's own handlers (its console one under DEBUG, the dev server's) would print these
        # records a second time, in another format and past the redacting filter.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
    },
}
