"""``check --deploy`` warnings for settings that fail silently in production.

Each has a working default for the demo (tasks in-process, email to the local outbox,
``paperboy.localhost`` addresses), so nothing breaks when it is left out: only the
email never leaves, or the beat's jobs run nowhere.
"""

from django.conf import settings
from django.core.checks import Warning, register
from django.utils.module_loading import import_string

IDENTITY_SETTINGS = (
    "DEFAULT_FROM_EMAIL", "EMAIL_LIST_ID", "EMAIL_MESSAGE_ID_DOMAIN", "EMAIL_UNSUBSCRIBE_MAILTO",
    "EMAIL_POSTAL_ADDRESS", "CONTACT_EMAIL",
)
PLACEHOLDERS = ("paperboy.localhost", "1 Example Street")


@register(deploy=True)
def redis_url_set(app_configs, **kwargs):
    if settings.REDIS_URL:
        return []
    return [
        Warning(
            "REDIS_URL is not set: Celery tasks run inside the web process, a worker would wait on an "
            "in-memory broker no other process sees, and rate limits count per process.",
            hint="Set REDIS_URL for every process (web, worker, beat).",
            id="config.W001",
        )
    ]


@register(deploy=True)
def email_transport_set(app_configs, **kwargs):
    if settings.ESP or settings.EMAIL_URL:
        return []
    return [
        Warning(
            f"Neither ESP nor EMAIL_URL is set: every email is written to {settings.OUTBOX_DIR}, not sent.",
            hint="Set ESP and its API key (docs/deploy.md, section 3), or EMAIL_URL for an SMTP relay.",
            id="config.W002",
        )
    ]


@register(deploy=True)
def sender_identity_set(app_configs, **kwargs):
    placeholders = [
        name for name in IDENTITY_SETTINGS if any(mark in getattr(settings, name) for mark in PLACEHOLDERS)
    ]
    if not placeholders:
        return []
    return [
        Warning(
            f"{', '.join(placeholders)} still hold the demo's placeholder addresses.",
            hint="Set them to the sending domain's addresses and the organisation's postal address "
            "(docs/deploy.md, section 3).",
            id="config.W003",
        )
    ]


ESP_CREDENTIALS = {
    "mailgun": ("MAILGUN_API_KEY", "MAILGUN_SENDER_DOMAIN"),
    "postmark": ("POSTMARK_SERVER_TOKEN",),
}


@register(deploy=True)
def esp_usable(app_configs, **kwargs):
    """The ESP named is one anymail has, with its credentials: a typo in ESP would fail every send
    with an ImportError, an empty API key every call with a 401. Amazon SES's credentials come
    from boto3's own chain (environment, files, an instance role) and are not looked up here."""
    if not settings.ESP:
        return []
    try:
        import_string(settings.EMAIL_BACKEND)
    except ImportError:
        return [
            Warning(
                f"ESP={settings.ESP!r} names no email service django-anymail knows: every email would fail.",
                hint="Use anymail's name for it: mailgun, postmark or amazon_ses (docs/deploy.md, section 3).",
                id="config.W004",
            )
        ]
    missing = [name for name in ESP_CREDENTIALS.get(settings.ESP, ()) if not settings.ANYMAIL.get(name)]
    if not missing:
        return []
    return [
        Warning(
            f"ESP={settings.ESP} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty: "
            "the ESP would refuse every email.",
            hint="Set them from the ESP's account (docs/deploy.md, section 3).",
            id="config.W005",
        )
    ]
