"""What the network sources ask for: URLs, parameters, pages, headers, pacing."""

import re
from datetime import date

import pytest
import responses

from papers.models import FetchRun
from papers.services import fetch_from_source
from papers.sources.http import HttpClient, Throttle

pytestmark = pytest.mark.django_db
HF_API = "https://huggingface.test/api/daily_papers"
ARXIV_API = "https://export.arxiv.test/api/query"


@pytest.fixture(autouse=True)
def _test_urls(settings):
    settings.HF_API_URL = HF_API
    settings.ARXIV_API_URL = ARXIV_API
    settings.HF_PAPERS_PAGE_URL = "https://huggingface.test/papers"
    settings.ARXIV_RSS_URL = "https://rss.arxiv.test/rss/"


@responses.activate
def test_hf_fetch_sends_date_and_a_user_agent_naming_paperboy(fixture_bytes, settings):
    responses.get(HF_API, body=fixture_bytes("hf", "daily_papers.json"))
    report = fetch_from_source("hf", date=date(2025, 1, 16))
    request = responses.calls[0].request
    assert "date=2025-01-16" in request.url and "limit=100" in request.url
    assert request.headers["User-Agent"] == settings.HTTP_USER_AGENT
    assert "Paperboy" in settings.HTTP_USER_AGENT and "mailto:" in settings.HTTP_USER_AGENT
    assert report.created == 5


@responses.activate
def test_html_page_for_a_date(fixture_bytes):
    responses.get(
        "https://huggingface.test/papers/date/2025-01-16",
        body=fixture_bytes("hf", "papers_page.html"),
    )
    assert fetch_from_source("hf-html", date=date(2025, 1, 16)).created == 3


@responses.activate
def test_arxiv_pages_through_results_with_the_query(fixture_bytes, settings):
    settings.ARXIV_PAGE_SIZE = 2
    responses.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_1.xml"))
    responses.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_2.xml"))
    report = fetch_from_source("arxiv", categories=["cs.CL", "cs.LG"])
    assert report.created == 3
    first, second = (call.request.url for call in responses.calls)
    assert "search_query=cat%3Acs.CL+OR+cat%3Acs.LG" in first
    assert "sortBy=submittedDate" in first and "sortOrder=descending" in first
    assert "start=0" in first and "max_results=2" in first and "start=2" in second


def empty_page(fixture_bytes, name):
    return re.sub(rb"<entry>.*?</entry>", b"", fixture_bytes("arxiv", name), flags=re.S)


@responses.activate
def test_arxiv_asks_again_for_a_page_the_api_answered_empty(fixture_bytes, settings):
    settings.ARXIV_PAGE_SIZE = 2
    responses.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_1.xml"))
    responses.get(ARXIV_API, body=empty_page(fixture_bytes, "api_paged_2.xml"))
    responses.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_2.xml"))
    assert fetch_from_source("arxiv").created == 3
    assert ["start=2" in call.request.url for call in responses.calls] == [False, True, True]


@responses.activate
def test_arxiv_keeps_what_it_read_when_a_page_comes_back_empty_twice(fixture_bytes, settings, caplog):
    settings.ARXIV_PAGE_SIZE = 2
    responses.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_1.xml"))
    responses.get(ARXIV_API, body=empty_page(fixture_bytes, "api_paged_2.xml"))
    assert fetch_from_source("arxiv").created == 2
    assert len(responses.calls) == 3
    assert "arxiv: the page from 2 of 3 results came back empty twice; keeping the 2 read" in caplog.text


@responses.activate
def test_arxiv_stops_at_max_results(fixture_bytes, settings):
    settings.ARXIV_PAGE_SIZE = 2
    settings.ARXIV_MAX_RESULTS = 2
    responses.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_1.xml"))
    assert fetch_from_source("arxiv").created == 2
    assert len(responses.calls) == 1


@responses.activate
def test_rss_url_names_the_categories(fixture_bytes):
    responses.get(
        "https://rss.arxiv.test/rss/cs.LG+cs.CL", body=fixture_bytes("arxiv", "rss_weekend.xml")
    )
    report = fetch_from_source("arxiv-rss", categories=["cs.LG", "cs.CL"])
    assert report.created == 0 and FetchRun.objects.get().status == "ok"


def test_arxiv_calls_are_spaced_by_the_configured_interval(fixture_bytes, settings, monkeypatch):
    """The 3-second rule, checked with a fake clock instead of real waiting."""
    settings.ARXIV_MIN_INTERVAL_SECONDS = 3
    settings.ARXIV_PAGE_SIZE = 2
    naps = []
    monkeypatch.setattr("papers.sources.http.time.sleep", naps.append)
    monkeypatch.setattr("papers.sources.http.time.monotonic", lambda: 100.0)
    with responses.RequestsMock() as mocked:
        mocked.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_1.xml"))
        mocked.get(ARXIV_API, body=fixture_bytes("arxiv", "api_paged_2.xml"))
        fetch_from_source("arxiv")
    assert naps == [3.0]


def test_throttle_only_waits_for_what_is_left_of_the_interval():
    now, naps = [10.0], []
    throttle = Throttle(3, clock=lambda: now[0], sleep=naps.append)
    throttle.wait()
    now[0] = 11.0
    throttle.wait()
    now[0] = 20.0
    throttle.wait()
    assert naps == [2.0]


def test_every_request_has_a_timeout(settings):
    settings.HTTP_TIMEOUT_SECONDS = 7
    client = HttpClient("hf")
    with responses.RequestsMock() as mocked:
        mocked.get(HF_API, body="[]")
        client.get(HF_API)
        assert mocked.calls[0].request.req_kwargs["timeout"] == 7


def hf_items(first, count):
    """``count`` items as the API lists them: an id, a title and the upvote count every paper has."""
    return [
        {"paper": {"id": f"2501.{n:05d}", "title": f"Paper {n}", "upvotes": n % 7}}
        for n in range(first, first + count)
    ]


@responses.activate
def test_hf_pages_until_a_short_page():
    responses.get(HF_API, json=hf_items(0, 100))
    responses.get(HF_API, json=hf_items(100, 3))
    assert fetch_from_source("hf").created == 103
    assert ["p=0" in responses.calls[0].request.url, "p=1" in responses.calls[1].request.url] == [
        True,
        True,
    ]


@responses.activate
def test_hf_stops_when_paging_is_ignored():
    responses.get(HF_API, json=hf_items(0, 100))  # every page the same
    assert fetch_from_source("hf").created == 100
    assert len(responses.calls) == 2


@responses.activate
def test_a_page_repeated_by_an_api_ignoring_paging_is_not_counted_as_duplicates():
    responses.get(HF_API, json=hf_items(0, 100))  # every page the same
    report = fetch_from_source("hf")
    assert (report.fetched, report.skipped) == (100, [])
    assert FetchRun.objects.get().skipped == 0


@responses.activate
def test_a_later_page_of_unusable_items_is_reported_as_skipped_and_ends_paging():
    responses.get(HF_API, json=hf_items(0, 100))
    responses.get(HF_API, json=[{"paper": {"id": f"2502.{n:05d}"}} for n in range(100)])  # no titles
    report = fetch_from_source("hf")
    assert (report.created, len(report.skipped)) == (100, 100)
    assert len(responses.calls) == 2
