"""The one email builder: every email Paperboy sends is made here.

A message is a template pair, ``templates/emails/<name>.txt`` and
``<name>.html``, rendered with the same context. The HTML gets its CSS
inlined by css-inline (``@media`` rules, such as dark mode, are kept in a
style tag). Whenever the context has an ``unsubscribe_url`` the builder adds
``List-Unsubscribe`` (URL and mailto), ``List-Unsubscribe-Post`` (RFC 8058
one-click) and ``List-Id``, so no email type can forget them.
"""

from functools import lru_cache

import css_inline
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


def list_headers(unsubscribe_url):
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>, <mailto:{settings.EMAIL_UNSUBSCRIBE_MAILTO}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": settings.EMAIL_LIST_ID,
    }


def render_bodies(name, context):
    """Render the text and the inlined HTML body of email ``name``."""
    text = render_to_string(f"emails/{name}.txt", context)
    html = inline_css(render_to_string(f"emails/{name}.html", context))
    return text, html


def build_email(name, context, to, subject, *, headers=None, bodies=None):
    """Build (but do not send) the email ``name`` for one recipient."""
    text, html = bodies or render_bodies(name, context)
    all_headers = {"Message-ID": make_msgid(domain=settings.EMAIL_MESSAGE_ID_DOMAIN)}
    if context.get("unsubscribe_url"):
        all_headers.update(list_headers(context["unsubscribe_url"]))
    all_headers.update(headers or {})
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),  # no newline can reach the header
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=all_headers,
    )
    message.attach_alternative(html, "text/html")
    return message


def send_email(name, context, to, subject, **kwargs):
    message = build_email(name, context, to, subject, **kwargs)
    message.send()
    return message
