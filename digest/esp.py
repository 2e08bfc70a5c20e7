"""What the configured email backend can do: one API call per batch, or one message each.

Every digest is personalised in full (papers, why-lines, links), so a batch
cannot share a body. Where the ESP substitutes per-recipient variables into
the message itself (Mailgun's ``%recipient.KEY%``), a batch message carries
each recipient's rendered subject, text and HTML in ``merge_data`` and the
body is just the placeholder. Postmark and Amazon SES only merge into a
stored template: with settings.DIGEST_ESP_TEMPLATE_ID naming a template
whose subject is ``{{subject}}``, text ``{{{text}}}`` and HTML ``{{{html}}}``
they batch the same way; without it they get one message per recipient,
as do SMTP, the embedded outbox and any other backend.

A batch stops at the ESP's recipient limit (settings.DIGEST_ESP_BATCH_LIMIT
may lower it) and before its payload passes settings.DIGEST_ESP_BATCH_MAX_BYTES.
"""

import json
from dataclasses import dataclass, replace

from anymail.backends.mailgun import EmailBackend as MailgunBackend
from anymail.backends.mailgun import MailgunPayload
from anymail.exceptions import AnymailSerializationError
from django.conf import settings
from django.core.mail import get_connection
from urllib3 import encode_multipart_formdata

from .emails import MergeFields

ANYMAIL_BACKENDS = "anymail.backends."
ON_THE_FLY = MergeFields(subject="%recipient.subject%", text="%recipient.text%", html="%recipient.html%")


@dataclass(frozen=True)
class BatchStyle:
    max_recipients: int
    fields: MergeFields = MergeFields()
    needs_template: bool = False


BATCH_STYLES = {
    "mailgun": BatchStyle(1000, ON_THE_FLY),
    "postmark": BatchStyle(500, needs_template=True),
    "amazon_ses": BatchStyle(50, needs_template=True),
    # anymail's test backend records what it is given: it stands in for Mailgun in the tests.
    "test": BatchStyle(1000, ON_THE_FLY),
}


def anymail_esp(backend_path=None):
    """``mailgun`` for ``anymail.backends.mailgun.EmailBackend``; "" for a non-anymail backend."""
    path = backend_path or settings.EMAIL_BACKEND
    if not path.startswith(ANYMAIL_BACKENDS):
        return ""
    return path[len(ANYMAIL_BACKENDS):].split(".")[0]


def batch_style():
    """How to batch with the configured backend, or None to send one message per recipient."""
    style = BATCH_STYLES.get(anymail_esp())
    if style is None:
        return None
    if style.needs_template:
        if not settings.DIGEST_ESP_TEMPLATE_ID:
            return None
        style = replace(style, fields=MergeFields(template_id=settings.DIGEST_ESP_TEMPLATE_ID))
    if settings.DIGEST_ESP_BATCH_LIMIT:
        style = replace(style, max_recipients=min(style.max_recipients, settings.DIGEST_ESP_BATCH_LIMIT))
    return style


def part_size(part):
    return len(part.html.encode()) + len(part.text.encode()) + len(part.subject.encode())


def batches(items, max_recipients, part_of=lambda item: item):
    """Split ``items`` into lists of at most ``max_recipients`` and DIGEST_ESP_BATCH_MAX_BYTES."""
    batch, size = [], 0
    for item in items:
        item_size = part_size(part_of(item))
        if batch and (len(batch) >= max_recipients or size + item_size > settings.DIGEST_ESP_BATCH_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


# --- Mailgun batch calls as multipart/form-data ---------------------------------
#
# anymail posts Mailgun's form URL-encoded unless there are attachments. A batch
# carries megabytes of HTML in ``recipient-variables``, and URL-encoding that
# in Python costs more than rendering the digests; multipart/form-data (which
# Mailgun accepts for the same fields) copies the bytes as they are.

MAILGUN_BACKEND = "anymail.backends.mailgun.EmailBackend"


class MultipartMailgunPayload(MailgunPayload):
    def serialize_json(self, data):
        """As anymail's, but UTF-8 as it is: multipart carries it, and ``\\uXXXX`` escapes
        would triple the size of every non-ASCII character in a batch's bodies."""
        try:
            return json.dumps(data, default=self._json_default, ensure_ascii=False)
        except TypeError as err:
            raise AnymailSerializationError(
                orig_err=err, email_message=self.message, backend=self.backend, payload=self
            ) from None

    def get_request_params(self, api_url):
        params = super().get_request_params(api_url)
        if params.get("files"):
            return params  # attachments: anymail already sends multipart
        fields = []
        for name, values in params["data"].items():
            for value in values if isinstance(values, (list, tuple)) else [values]:
                fields.append((name, value))
        body, content_type = encode_multipart_formdata(fields)
        params.update(data=body, files=None, headers={**(params.get("headers") or {}), "Content-Type": content_type})
        return params


class MultipartMailgunBackend(MailgunBackend):
    """anymail's Mailgun backend, sending every call as multipart/form-data."""

    def build_message_payload(self, message, defaults):
        return MultipartMailgunPayload(message, defaults, self)


def batch_connection():
    """The connection for batch calls: Mailgun's as multipart, any other backend as configured."""
    if settings.EMAIL_BACKEND == MAILGUN_BACKEND:
        return get_connection(f"{__name__}.MultipartMailgunBackend")
    return get_connection()
