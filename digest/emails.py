"""The one email builder: every email Paperboy sends is made here.

A message is a template pair, ``templates/emails/<name>.txt`` and
``<name>.html``, rendered with the same context. The HTML gets its CSS
inlined by css-inline (``@media`` rules, such as dark mode, are kept in a
style tag). Whenever the context has an ``unsubscribe_url`` the builder adds
``List-Unsubscribe`` (URL and mailto), ``List-Unsubscribe-Post`` (RFC 8058
one-click) and ``List-Id``, so no email type can forget them; a batch
message (``build_batch_email``) gets them per recipient through anymail's
``merge_headers``.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import css_inline
from anymail.message import AnymailMessage
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import make_msgid
from django.template.loader import render_to_string


@lru_cache(maxsize=1)
def _inliner():
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def inline_css(html):
    return _inliner().inline(html)


def absolute_url(path):
    return f"{settings.SITE_URL}{path}"


def new_message_id():
    return make_msgid(domain=settings.EMAIL_MESSAGE_ID_DOMAIN)


def list_unsubscribe(unsubscribe_url):
    return f"<{unsubscribe_url}>, <mailto:{settings.EMAIL_UNSUBSCRIBE_MAILTO}>"


def list_headers(unsubscribe_url):
    return {
        "List-Unsubscribe": list_unsubscribe(unsubscribe_url),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": settings.EMAIL_LIST_ID,
    }


def render_bodies(name, context):
    """Render the text and the inlined HTML body of email ``name``."""
    text = render_to_string(f"emails/{name}.txt", context)
    html = inline_css(render_to_string(f"emails/{name}.html", context))
    return text, html


def one_line(subject):
    return " ".join(subject.split())  # no newline can reach the header


def build_email(name, context, to, subject, *, headers=None, bodies=None, metadata=None, esp_extra=None):
    """Build (but do not send) the email ``name`` for one recipient.

    ``metadata`` travels with the message through anymail ESPs and comes back
    in their webhook events; ``esp_extra`` carries ESP-specific options (anymail's
    ``esp_extra``, such as Postmark's message stream).
    """
    text, html = bodies or render_bodies(name, context)
    all_headers = {"Message-ID": new_message_id()}
    if context.get("unsubscribe_url"):
        all_headers.update(list_headers(context["unsubscribe_url"]))
    all_headers.update(headers or {})
    message = EmailMultiAlternatives(
        subject=one_line(subject),
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=all_headers,
    )
    message.attach_alternative(html, "text/html")
    if metadata:
        message.metadata = metadata
    if esp_extra:
        message.esp_extra = esp_extra
    return message


class BatchPart(NamedTuple):
    """One recipient's fully rendered email inside a batch message (a tuple: one per reader)."""

    to: str
    subject: str
    text: str
    html: str
    context: dict
    metadata: dict


@dataclass(frozen=True)
class MergeFields:
    """Where an ESP puts each recipient's subject and bodies: placeholders, or a stored template."""

    subject: str = ""
    text: str = ""
    html: str = ""
    template_id: str = ""


def build_batch_email(parts, fields, esp_extra=None):
    """One anymail batch message for many recipients, each with their own email.

    Every recipient's subject and bodies go in ``merge_data`` (keys
    ``subject``, ``text`` and ``html``), which the ESP substitutes into the
    placeholders of ``fields`` or into its stored template. The per-recipient
    headers (Message-ID, List-Unsubscribe) go in ``merge_headers``; the shared
    list headers on the message.
    """
    message = AnymailMessage(
        subject=fields.subject,
        body=fields.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[part.to for part in parts],
    )
    if fields.html:
        message.attach_alternative(fields.html, "text/html")
    if fields.template_id:
        message.template_id = fields.template_id
    message.merge_data = {
        part.to: {"subject": one_line(part.subject), "text": part.text, "html": part.html}
        for part in parts
    }
    message.merge_headers = {part.to: personal_headers(part.context) for part in parts}
    message.merge_metadata = {part.to: part.metadata for part in parts}
    if any(part.context.get("unsubscribe_url") for part in parts):
        message.extra_headers = {
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": settings.EMAIL_LIST_ID,
        }
    if esp_extra:
        message.esp_extra = esp_extra
    return message


def personal_headers(context):
    headers = {"Message-ID": new_message_id()}
    if context.get("unsubscribe_url"):
        headers["List-Unsubscribe"] = list_unsubscribe(context["unsubscribe_url"])
    return headers


def send_email(name, context, to, subject, *, connection=None, **kwargs):
    """Build and send one email, over ``connection`` when the caller sends many."""
    message = build_email(name, context, to, subject, **kwargs)
    message.connection = connection
    message.send()
    return message
