"""System checks for settings the digest depends on."""

from django.conf import settings
from django.core.checks import Warning, register

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
                "Without DIGEST_ESP_TEMPLATE_ID this ESP gets one API call per digest.",
                hint="Create a template with subject {{subject}}, text {{{text}}} and HTML "
                "{{{html}}}, and set DIGEST_ESP_TEMPLATE_ID to its id or alias.",
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
