"""The public archive and edition pages, "view in browser" and the private Atom feed."""

import json
import re
from datetime import date
from xml.etree import ElementTree

import pytest

from digest.models import Delivery, EditionPaper
from digest.sending import send_edition_to
from digest.services import block_paper, unblock_paper
from papers.models import Paper
from papers.services import fetch_from_source
from subscriptions import tokens
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

ATOM = "{http://www.w3.org/2005/Atom}"
HOSTILE_TITLE = "<img src=x onerror=alert(1)> Attention"


def edition_path(edition):
    return f"/digest/{edition.cadence}/{edition.date.isoformat()}/"


@pytest.fixture
def sent(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="")
    send_edition_to(edition, [subscriber.pk])
    return subscriber, Delivery.objects.get(), mailoutbox[0]


def test_the_edition_page_lists_its_papers_in_rank_order(client):
    edition = built_edition()
    response = client.get(edition_path(edition))
    html = response.content.decode()
    titles = [e.paper.title for e in edition.entries.order_by("rank")]
    assert response.status_code == 200
    assert [html.index(t) for t in titles] == sorted(html.index(t) for t in titles)
    assert "trending:" in html


def test_pulled_and_blocked_papers_leave_the_edition_page(client):
    edition = built_edition()
    first, second = (e.paper for e in edition.entries.order_by("rank")[:2])
    EditionPaper.objects.filter(edition=edition, paper=first).update(pulled=True)
    block_paper(second, reason="retracted")
    html = client.get(edition_path(edition)).content.decode()
    assert first.title not in html and second.title not in html


def test_a_paper_unblocked_is_back_on_the_edition_page(client):
    edition = built_edition()
    top = edition.entries.get(rank=1).paper
    blocked = block_paper(top, reason="looked retracted")
    while_blocked = client.get(edition_path(edition)).content.decode()

    unblock_paper(blocked)

    assert top.title not in while_blocked and top.title in client.get(edition_path(edition)).content.decode()


def test_the_edition_page_escapes_titles(client):
    edition = built_edition()
    paper = edition.entries.first().paper
    paper.title = HOSTILE_TITLE
    paper.save()
    html = client.get(edition_path(edition)).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("path", ["/digest/monthly/2026-11-20/", "/digest/daily/2026-13-45/", "/digest/daily/1999-01-01/"])
def test_unknown_editions_are_not_found(client, path):
    built_edition()
    assert client.get(path).status_code == 404


def test_the_links_to_the_previous_and_next_editions_say_what_they_lead_to(client):
    """Read alone, in a screen reader's list of links, "← 6 Dec" would be a bare date."""
    first = built_edition(day=date(2026, 3, 2))
    built_edition(day=date(2026, 3, 3))
    built_edition(day=date(2026, 3, 4))
    html = client.get("/digest/daily/2026-03-03/").content.decode()
    links = dict(re.findall(r'<a class="button button--quiet" href="([^"]+)" rel="(?:prev|next)">(.*?)</a>', html))
    assert links == {
        edition_path(first): '<span aria-hidden="true">←</span> Previous edition, 2 Mar',
        "/digest/daily/2026-03-04/": 'Next edition, 4 Mar <span aria-hidden="true">→</span>',
    }


def test_the_archive_links_every_edition(client):
    daily, weekly = built_edition("daily"), built_edition("weekly", papers=[])
    html = client.get("/digest/").content.decode()
    assert edition_path(daily) in html and edition_path(weekly) in html


def test_view_in_browser_shows_the_digest_as_sent(client, sent):
    subscriber, delivery, message = sent
    view_url = re.search(r"View in your browser: (\S+)", message.body).group(1)
    response = client.get(view_url.split("127.0.0.1:8000", 1)[1])
    html = response.content.decode()
    assert response.status_code == 200 and response["X-Robots-Tag"] == "noindex"
    assert subscriber.email in html
    assert delivery.why_lines()
    for reason in delivery.why_lines().values():
        assert reason in html


def test_view_in_browser_shows_a_digest_recorded_with_a_why_line_per_paper_id(client, sent):
    """Rows written before the ledger kept each why-line once still show their why-lines."""
    subscriber, delivery, message = sent
    older = {str(pid): f"older why-line {number}" for number, pid in enumerate(delivery.paper_ids)}
    Delivery.objects.filter(pk=delivery.pk).update(reasons=older)
    view_url = re.search(r"View in your browser: (\S+)", message.body).group(1)
    html = client.get(view_url.split("127.0.0.1:8000", 1)[1]).content.decode()
    assert older and all(line in html for line in older.values())


def test_view_in_browser_refuses_forged_and_unsent_digests(client, sent):
    subscriber, delivery, _ = sent
    assert client.get("/d/not-a-real-token-at-all/").status_code == 400
    other = SubscriberFactory()
    assert client.get(f"/d/{tokens.make_token(other, tokens.VIEW, e=delivery.edition_id)}/").status_code == 404


def test_the_private_feed_has_one_entry_per_sent_digest(client, sent):
    subscriber, delivery, message = sent
    feed_url = re.search(r"Your private feed: (\S+)", message.body).group(1)
    response = client.get(feed_url.split("127.0.0.1:8000", 1)[1])

    assert response.status_code == 200 and response["Content-Type"].startswith("application/atom+xml")
    assert response["X-Robots-Tag"] == "noindex"
    feed = ElementTree.fromstring(response.content)
    (entry,) = feed.findall(f"{ATOM}entry")
    assert entry.find(f"{ATOM}title").text == message.subject
    assert entry.find(f"{ATOM}link").get("href").endswith(edition_path(delivery.edition))
    summary = entry.find(f"{ATOM}summary").text
    assert all(reason in summary for reason in delivery.why_lines().values())
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_nothing_a_feed_links_to_carries_a_link_that_acts_for_its_reader(client, sent):
    """A feed URL is often handed to a hosted feed reader. Its entries linked to the email in the
    browser, which carries the reader's address and a working preferences link: whoever held the
    feed could move or delete the subscription."""
    subscriber, _, _ = sent
    feed = client.get(f"/feed/{tokens.make_token(subscriber, tokens.FEED)}/").content.decode()
    linked = [client.get(url.split("127.0.0.1:8000", 1)[1]) for url in re.findall(r'href="(http://127\.0\.0\.1:8000/[^"]*)"', feed)]
    pages = "".join(page.content.decode() for page in linked)

    assert linked and {page.status_code for page in linked} == {200}
    assert "/preferences/" not in pages and "/unsubscribe/" not in pages and subscriber.email not in pages


def test_the_email_in_the_browser_and_a_vote_page_are_kept_by_no_shared_cache(client, sent):
    subscriber, delivery, message = sent
    view_url = re.search(r"View in your browser: (\S+)", message.body).group(1)
    vote_url = re.search(r"More like this: (\S+)", message.body).group(1)
    for url in (view_url, vote_url):
        response = client.get(url.split("127.0.0.1:8000", 1)[1])
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_a_feed_entrys_paper_without_a_page_of_its_own_links_to_the_edition(client, sent, settings):
    subscriber, delivery, _ = sent
    Paper.objects.filter(pk__in=delivery.paper_ids).update(hf_url="", arxiv_url="")
    response = client.get(f"/feed/{tokens.make_token(subscriber, tokens.FEED)}/")
    (entry,) = ElementTree.fromstring(response.content).findall(f"{ATOM}entry")
    summary = entry.find(f"{ATOM}summary").text
    edition_url = f"{settings.SITE_URL}{edition_path(delivery.edition)}"
    assert 'href=""' not in summary
    assert summary.count(f'href="{edition_url}"') == len(delivery.paper_ids)


def test_the_feed_refuses_a_forged_token_and_lists_nothing_unsent(client):
    subscriber = SubscriberFactory()
    assert client.get("/feed/forged-token-value/").status_code == 404
    response = client.get(f"/feed/{tokens.make_token(subscriber, tokens.FEED)}/")
    assert response.status_code == 200
    assert ElementTree.fromstring(response.content).findall(f"{ATOM}entry") == []


def test_the_feed_stays_well_formed_for_a_fetched_title_holding_a_character_xml_forbids(
    client, mailoutbox, tmp_path
):
    item = {
        "paper": {"id": "2601.00001", "title": "Attention \uffff is all you need", "summary": "We study attention.",
                  "authors": [{"name": "Ada"}], "upvotes": 10_000},
        "numComments": 3,
    }
    path = tmp_path / "daily_papers.json"
    path.write_text(json.dumps([item]))
    fetch_from_source("hf", from_file=str(path))
    reader = SubscriberFactory(interests="attention")
    send_edition_to(built_edition(), [reader.pk])

    response = client.get(f"/feed/{tokens.make_token(reader, tokens.FEED)}/")

    (entry,) = ElementTree.fromstring(response.content).findall(f"{ATOM}entry")
    assert "Attention \ufffd is all you need" in entry.find(f"{ATOM}summary").text


@pytest.mark.parametrize("edition_id", [{"x": 1}, [1], "1; DROP TABLE", 2**70, 0, -3, True])
def test_view_in_browser_refuses_a_signed_token_with_a_malformed_edition(client, sent, edition_id):
    subscriber, _, _ = sent
    assert client.get(f"/d/{tokens.make_token(subscriber, tokens.VIEW, e=edition_id)}/").status_code == 400
