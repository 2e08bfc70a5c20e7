"""System checks for settings the digest and its pages depend on."""

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.checks import Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from config.kept_days import below_the_floor

from .esp import anymail_esp


@register()
def webhook_secret_set_for_esp(app_configs, **kwargs):
    if anymail_esp() not in ("", "test") and not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        return [
            Warning(
                "An ESP is configured but WEBHOOK_SECRET is not: its tracking webhooks "
                "(bounces, complaints) will be refused.",
                hint="Set WEBHOOK_SECRET to user:password and give the ESP the webhook URL with it.",
                id="digest.W001",
            )
        ]
    return []


@register()
def esp_batch_template_set(app_configs, **kwargs):
    if anymail_esp() in ("postmark", "amazon_ses") and not settings.DIGEST_ESP_TEMPLATE_ID:
        return [
            Warning(
                "Without DIGEST_ESP_TEMPLATE_ID this ESP gets one API call per digest, made one at a time: "
                "a few digests a second per send process.",
                hint="Create a template with subject {{{subject}}}, text {{{text}}} and HTML "
                "{{{html}}} (all three in triple braces), and set DIGEST_ESP_TEMPLATE_ID to its id or alias.",
                id="digest.W002",
            )
        ]
    return []


@register()
def postmark_digest_stream_set(app_configs, **kwargs):
    if anymail_esp() == "postmark" and not settings.POSTMARK_DIGEST_STREAM:
        return [
            Warning(
                "Postmark is configured but POSTMARK_DIGEST_STREAM is not: digests would go out "
                "through the server's transactional stream, which Postmark keeps for one-to-one email.",
                hint="Create a broadcast message stream and set POSTMARK_DIGEST_STREAM to its id.",
                id="digest.W003",
            )
        ]
    return []


@register(Tags.staticfiles, deploy=True)
def static_files_manifest_present(app_configs, **kwargs):
    """With a manifest storage every page's ``{% static %}`` raises until collectstatic has written it."""
    backend = import_string(settings.STORAGES["staticfiles"]["BACKEND"])
    if not issubclass(backend, ManifestFilesMixin):
        return []
    try:
        present = staticfiles_storage.manifest_storage.exists(backend.manifest_name)
    except ImproperlyConfigured:  # no STATIC_ROOT to look in
        present = False
    if present:
        return []
    return [
        Warning(
            f"The static files manifest ({backend.manifest_name}) is missing from STATIC_ROOT "
            f"({settings.STATIC_ROOT}): every HTML page will answer 500 until it is written.",
            hint="Run manage.py collectstatic with the settings the web process has.",
            id="digest.W004",
        )
    ]


@register(deploy=True)
def site_url_is_https(app_configs, **kwargs):
    """RFC 8058 one-click unsubscribe needs an HTTPS link in ``List-Unsubscribe``, built from SITE_URL."""
    if settings.SITE_URL.lower().startswith("https://"):
        return []
    return [
        Warning(
            f"SITE_URL ({settings.SITE_URL}) is not an https:// URL: the List-Unsubscribe link of every "
            "email is not the HTTPS URI one-click unsubscribe requires (RFC 8058), so mailbox providers "
            "such as Gmail and Yahoo do not offer it, and every link in the emails is unencrypted.",
            hint="Set SITE_URL to the site's https:// address.",
            id="digest.W005",
        )
    ]


@register()
def delivery_retention_long_enough(app_configs, **kwargs):
    from .retention import MIN_RETENTION_DAYS

    return below_the_floor(
        "DELIVERY_RETENTION_DAYS", settings.DELIVERY_RETENTION_DAYS, MIN_RETENTION_DAYS, kept="digests",
        since="the dashboard, a send (no paper twice) and resends read the last weeks' rows",
        keep_all="keep every digest", check_id="digest.W006",
    )


@register()
def same_day_hours_in_a_day(app_configs, **kwargs):
    hours = settings.DIGEST_SAME_DAY_HOURS
    if 0 <= hours <= 24:
        return []
    return [
        Warning(
            f"DIGEST_SAME_DAY_HOURS is {hours}: it counts the hours a daily job may come after a "
            "reader's send hour and still send them the edition that day.",
            hint="Set it between 0 and 24 (24: every reader gets each edition on its date).",
            id="digest.W007",
        )
    ]
