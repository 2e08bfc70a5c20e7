"""Hostile paper titles, abstracts, authors and organisations are escaped everywhere
they are shown: the signup sample, the edition pages, the email (HTML, text,
subject), view in browser, the vote page, the private feed and the admin.

The papers come in the way real ones do: a Hugging Face response, parsed and
stored by the source, then an edition is built and sent.
"""

import json
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from django.utils.html import escape
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from lxml import html as lxml_html

from digest.models import Delivery, Edition, Feedback
from digest.sending import send_edition_to
from papers.models import Paper
from papers.services import fetch_from_source
from subscriptions import csv_io
from subscriptions.tokens import FEED, FEEDBACK, VIEW, make_token
from tests.digest.builders import built_edition
from tests.factories import PaperFactory, SubscriberFactory

from .strategies import HARDENING, HOSTILE_STRINGS

pytestmark = pytest.mark.django_db

TITLE = '<script>alert("title")</script> Attention is all you need'
ABSTRACT = '"><img src=x onerror=alert("abstract")> We study attention.'
AUTHOR = '<b onmouseover=alert("author")>Eve</b>'
ORGANIZATION = "</td><svg/onload=alert('org')>"
SUMMARY = "<iframe src=javascript:alert('summary')></iframe> A summary."
RAW_MARKUP = ["<script>alert", "<img src=x", "<b onmouseover", "<svg/onload", "<iframe src"]


@pytest.fixture
def hostile_edition(tmp_path):
    """One hostile paper among ordinary ones, ingested from a Hugging Face response."""
    items = [
        {
            "paper": {
                "id": "2601.00001",
                "title": TITLE,
                "summary": ABSTRACT,
                "ai_summary": SUMMARY,
                "authors": [{"name": AUTHOR}, {"name": "Alan Turing"}],
                "organization": {"fullname": ORGANIZATION},
                "upvotes": 10_000,
                "githubRepo": "javascript:alert('repo')",
            },
            "numComments": 3,
        }
    ]
    path = tmp_path / "daily_papers.json"
    path.write_text(json.dumps(items))
    fetch_from_source("hf", from_file=str(path))
    paper = Paper.objects.get(arxiv_id="2601.00001")
    assert paper.title == TITLE and paper.code_url == ""  # stored as data, the bad URL dropped
    edition = built_edition()
    assert edition.entries.filter(paper=paper).exists()
    return edition, paper


@pytest.fixture
def reader(hostile_edition):
    edition, paper = hostile_edition
    subscriber = SubscriberFactory(email="reader@example.org", interests="attention")
    send_edition_to(edition, [subscriber.pk])
    assert Delivery.objects.get(subscriber=subscriber).status == "sent"
    Feedback.objects.create(subscriber=subscriber, paper=paper, vote=1)
    return subscriber


def injected_markup(markup):
    """Elements and attributes a hostile text would have created, had it not been escaped."""
    tree = lxml_html.fromstring(markup)
    found = [f"<{e.tag}>" for e in tree.iter("iframe", "object", "embed")]
    found += ["<script> without src" for e in tree.iter("script") if not e.get("src")]
    for element in tree.iter():
        if isinstance(element.tag, str):
            found += [f"{element.tag} {name}" for name in element.attrib if name.startswith("on")]
    return found


def assert_escaped(markup, label, expect_title=True):
    text = markup.decode() if isinstance(markup, bytes) else markup
    for raw in RAW_MARKUP:
        assert raw not in text, f"{label}: unescaped {raw!r}"
    assert injected_markup(text) == [], label
    if expect_title:
        shown = " ".join(lxml_html.fromstring(text).text_content().split())
        assert TITLE in shown, f"{label}: the title is not shown as text"


def test_the_signup_sample_and_edition_pages_escape_hostile_papers(client, hostile_edition):
    edition, _ = hostile_edition
    for path in ["/", f"/digest/{edition.cadence}/{edition.date:%Y-%m-%d}/"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_escaped(response.content, path)


def test_the_email_escapes_hostile_papers_in_html_and_keeps_headers_single_line(reader):
    message = mail.outbox[-1]
    html = message.alternatives[0][0]

    assert_escaped(html, "email html")
    assert "\n" not in message.subject and "\r" not in message.subject
    assert TITLE[:40] in message.body  # the text part is plain text: shown as typed
    headers = message.message().as_string().split("\n\n", 1)[0]
    assert "onerror" not in headers


def test_view_in_browser_and_the_vote_page_escape_hostile_papers(client, reader, hostile_edition):
    edition, paper = hostile_edition
    view = client.get(f"/d/{make_token(reader, VIEW, e=edition.pk)}/")
    vote = client.get(f"/vote/{make_token(reader, FEEDBACK, e=edition.pk)}/{paper.pk}/up/")

    assert view.status_code == vote.status_code == 200
    assert_escaped(view.content, "view in browser")
    assert_escaped(vote.content, "vote page")


def test_the_private_feed_is_well_formed_and_its_html_content_is_escaped(client, reader):
    response = client.get(f"/feed/{make_token(reader, FEED)}/")

    assert response.status_code == 200
    feed = etree.fromstring(response.content)  # well-formed XML
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = feed.findall("a:entry", ns)
    assert entries
    for entry in entries:
        for element in entry.iter():
            assert not str(element.tag).endswith(("script", "img", "svg", "iframe"))
        content = "".join(
            e.text or "" for e in entry if str(e.tag).endswith(("content", "summary"))
        )
        assert_escaped(content, "feed entry html", expect_title=False)  # what a reader renders
        assert escape(TITLE) in content or escape(TITLE) in unescape(content)


def test_the_admin_escapes_hostile_papers_and_subscriber_fields(client, reader, hostile_edition):
    edition, paper = hostile_edition
    reader.interests = '<script>alert("interests")</script>'
    reader.consent_note = '"><img src=x onerror=alert("note")>'
    reader.save()
    operator = get_user_model().objects.create_superuser("operator", "op@example.org", "pw-12345678")
    client.force_login(operator)
    delivery = Delivery.objects.get(subscriber=reader)
    pages = {
        reverse("admin:digest_edition_change", args=[edition.pk]): True,
        reverse("admin:digest_feedback_changelist"): True,
        reverse("admin:digest_feedback_changelist") + "?q=attention": True,
        reverse("paperboy_dashboard"): True,
        reverse("admin:digest_delivery_email", args=[delivery.pk]): True,
        reverse("admin:digest_delivery_preview", args=[reader.pk]): True,
        reverse("admin:subscriptions_subscriber_change", args=[reader.pk]): False,
        reverse("admin:subscriptions_subscriber_changelist"): False,
        reverse("admin:papers_paper_changelist"): True,
        reverse("admin:papers_paper_changelist") + "?q=eve": True,
        reverse("admin:papers_paper_change", args=[paper.pk]): True,
        reverse("admin:papers_author_change", args=[paper.authors.get(name=AUTHOR).pk]): True,
        reverse("admin:papers_papersignal_changelist"): True,
    }
    for path, shows_title in pages.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert_escaped(response.content, path, expect_title=shows_title)
        assert "alert(\"interests\")</script>" not in response.content.decode(), path


def test_the_csv_export_defuses_spreadsheet_formulas():
    subscriber = SubscriberFactory(
        interests='=HYPERLINK("http://evil.example","click")', consent_note="+cmd|' /C calc'!A0"
    )
    row = dict(zip(csv_io.EXPORT_COLUMNS, csv_io.export_row(subscriber), strict=True))
    assert row["interests"].startswith("'=") and row["consent_note"].startswith("'+")


@HARDENING
@given(title=st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(min_size=1, max_size=80)))
def test_any_title_is_shown_as_text_on_the_edition_page(client, title):
    """Whatever a source stores as a title (sources drop NUL and lone surrogates), the
    public page shows it as text and it creates no element."""
    title = "".join(ch for ch in title if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)
    title = " ".join(title.split()) or "untitled"
    paper = PaperFactory(title=title, upvotes=10**6)
    edition = Edition.objects.filter(cadence="daily").first() or built_edition()
    edition.entries.update_or_create(paper=paper, defaults={"rank": 0, "trending_score": 1.0})

    response = client.get(f"/digest/daily/{edition.date:%Y-%m-%d}/")

    assert response.status_code == 200
    assert injected_markup(response.content) == []
    shown = " ".join(lxml_html.fromstring(response.content).text_content().split())
    assert " ".join(title.split()) in shown
