"""The digest email: both parts, list headers, escaping, size."""

import pytest

from digest.sending import send_edition_to
from tests.digest.builders import built_edition, papers_on_topics
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

HOSTILE_TITLE = '<script>alert("x")</script> & <b>Bold</b> claims'


def sent_digest(mailoutbox, **subscriber_fields):
    edition = built_edition(papers=papers_on_topics())
    subscriber = SubscriberFactory(**subscriber_fields)
    send_edition_to(edition, [subscriber.pk])
    assert len(mailoutbox) == 1
    return mailoutbox[0], subscriber


def html_part(message):
    return next(body for body, mime in message.alternatives if mime == "text/html")


def test_digest_has_list_unsubscribe_one_click_and_list_id_headers(mailoutbox, settings):
    message, _ = sent_digest(mailoutbox, interests="")
    headers = message.message()
    unsubscribe = headers["List-Unsubscribe"]
    assert unsubscribe.startswith(f"<{settings.SITE_URL}/unsubscribe/")
    assert f"<mailto:{settings.EMAIL_UNSUBSCRIBE_MAILTO}>" in unsubscribe
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == settings.EMAIL_LIST_ID
    assert headers["Message-ID"].endswith(f"@{settings.EMAIL_MESSAGE_ID_DOMAIN}>")


def test_digest_has_a_text_and_an_inlined_html_part(mailoutbox):
    message, subscriber = sent_digest(mailoutbox, interests="diffusion models")
    html = html_part(message)
    assert "Denoising diffusion models" in message.body
    assert "matches your interests: diffusion models" in message.body
    assert "<table" not in message.body
    assert 'style="' in html  # CSS inlined by the library
    assert "@media (prefers-color-scheme: dark)" in html  # dark mode kept
    assert "/preferences/" in html and "/unsubscribe/" in html and "/vote/" in html


def test_hostile_titles_are_escaped_in_html_and_plain_in_text(mailoutbox):
    PaperFactory(title=HOSTILE_TITLE, upvotes=10_000)
    message, _ = sent_digest(mailoutbox, interests="")
    html = html_part(message)
    assert "<script>" not in html
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;b&gt;Bold&lt;/b&gt;' in html
    assert HOSTILE_TITLE in message.body
    assert "\n" not in message.subject


def test_html_stays_under_gmail_clipping_with_twenty_long_papers(mailoutbox):
    for i in range(20):
        PaperFactory(title=f"A very long title about learning {i} " * 4, abstract="Words here. " * 300,
                     author_names=[f"Author {n}" for n in range(40)], upvotes=100 - i)
    message, _ = sent_digest(mailoutbox, interests="", max_papers=20)
    assert len(html_part(message).encode()) < 100 * 1024
    assert message.body.count("More like this:") == 20
