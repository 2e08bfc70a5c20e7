"""Network faults: each is one clear line naming the source, and nothing is written."""

import gzip

import pytest
import responses
from django.core.management import CommandError, call_command

from papers.models import FetchRun, Paper
from papers.services import fetch_from_source
from papers.sources.base import SourceError

from .local_http import ScriptedServer, reply, reset_halfway, stall

pytestmark = pytest.mark.django_db
HF_API = "https://huggingface.test/api/daily_papers"
ARXIV_API = "https://export.arxiv.test/api/query"


@pytest.fixture(autouse=True)
def _test_urls(settings):
    settings.HF_API_URL = HF_API
    settings.ARXIV_API_URL = ARXIV_API
    settings.HF_PAPERS_PAGE_URL = "https://huggingface.test/papers"
    settings.ARXIV_RSS_URL = "https://rss.arxiv.test/rss/"
    settings.HTTP_RETRIES = 2


def failure_of(name, **kwargs):
    with pytest.raises(SourceError) as caught:
        fetch_from_source(name, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    assert Paper.objects.count() == 0
    run = FetchRun.objects.get()
    assert (run.source, run.status, run.error) == (name, "failed", message)
    return message


@responses.activate
@pytest.mark.parametrize("status", [404, 403])
def test_client_errors_fail_at_once(status):
    responses.get(HF_API, status=status)
    assert f"HTTP {status}" in failure_of("hf")
    assert len(responses.calls) == 1  # a 4xx is not retried


@responses.activate
def test_server_errors_are_retried_then_fail_with_the_status():
    responses.get(HF_API, status=503)
    message = failure_of("hf")
    assert "HTTP 503" in message and HF_API in message
    assert len(responses.calls) == 3  # first try + HTTP_RETRIES


@responses.activate
def test_a_transient_server_error_is_retried_and_the_batch_lands(fixture_bytes):
    responses.get(HF_API, status=502)
    responses.get(HF_API, body=fixture_bytes("hf", "daily_papers.json"))
    assert fetch_from_source("hf").created == 5
    assert FetchRun.objects.get().status == "ok"


@responses.activate
def test_rate_limit_persisting_names_the_retry_after():
    responses.get(HF_API, status=429, headers={"Retry-After": "120"})
    message = failure_of("hf")
    assert "rate limited (HTTP 429" in message and "retry after 120 s" in message


@responses.activate
def test_rate_limit_with_a_retry_after_date_names_the_date_not_seconds():
    responses.get(HF_API, status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert failure_of("hf").endswith("; the server asks to retry after Wed, 21 Oct 2015 07:28:00 GMT")


def test_rate_limit_waits_for_retry_after_capped(fixture_bytes, settings):
    """A real socket: urllib3 honours Retry-After (capped by settings) before the retry."""
    settings.HTTP_MAX_RETRY_AFTER_SECONDS = 0.3
    script = [
        reply(429, headers={"Retry-After": "3600"}),
        reply(200, fixture_bytes("hf", "daily_papers.json")),
    ]
    with ScriptedServer(script) as server:
        settings.HF_API_URL = server.url + "/api/daily_papers"
        import time

        started = time.monotonic()
        report = fetch_from_source("hf")
        elapsed = time.monotonic() - started
    assert report.created == 5 and len(server.requests) == 2
    assert 0.3 <= elapsed < 3


def test_an_unreadable_retry_after_falls_back_to_the_usual_backoff(fixture_bytes, settings):
    script = [
        reply(503, headers={"Retry-After": "soon"}),
        reply(200, fixture_bytes("hf", "daily_papers.json")),
    ]
    with ScriptedServer(script) as server:
        settings.HF_API_URL = server.url + "/api/daily_papers"
        report = fetch_from_source("hf")
    assert report.created == 5 and len(server.requests) == 2


def test_retries_back_off_from_the_first_one_and_double_each_time(fixture_bytes, settings, monkeypatch):
    """``HTTP_BACKOFF_SECONDS`` is the first wait: urllib3 2 waits nothing before the first retry."""
    settings.HTTP_BACKOFF_SECONDS, settings.HTTP_RETRIES = 1, 3
    naps = []
    monkeypatch.setattr("time.sleep", naps.append)
    script = [reply(503), reply(502), reply(500), reply(200, fixture_bytes("hf", "daily_papers.json"))]
    with ScriptedServer(script) as server:
        settings.HF_API_URL = server.url + "/api/daily_papers"
        report = fetch_from_source("hf")
    assert report.created == 5 and len(server.requests) == 4
    assert naps == [1, 2, 4]


def test_a_retried_arxiv_call_waits_at_least_the_arxiv_interval(fixture_bytes, settings, monkeypatch):
    """arXiv asks for 3 s between calls, a retry after a 503 or a timeout included."""
    settings.ARXIV_MIN_INTERVAL_SECONDS, settings.HTTP_BACKOFF_SECONDS = 3, 1
    naps = []
    monkeypatch.setattr("time.sleep", naps.append)
    with ScriptedServer([reply(503), reply(200, fixture_bytes("arxiv", "api_page.xml"))]) as server:
        settings.ARXIV_API_URL = server.url + "/api/query"
        report = fetch_from_source("arxiv")
    assert report.created == 3 and len(server.requests) == 2
    assert naps == [3]


@responses.activate
def test_error_object_instead_of_a_list_fails_whole(fixture_bytes):
    responses.get(HF_API, body=fixture_bytes("hf", "error_object.json"), status=200)
    assert failure_of("hf") == "hf: API error: Invalid date: 2025-13-01"


@responses.activate
def test_an_html_error_page_with_status_200_is_named_as_such_not_as_truncated_json():
    page = b"<!DOCTYPE html><html><body><h1>We'll be right back</h1></body></html>"
    responses.get(HF_API, body=page, status=200, content_type="text/html")
    assert failure_of("hf") == "hf: expected JSON, got an HTML or XML page (an error page?)"


@responses.activate
def test_truncated_json_fails_whole(fixture_bytes):
    responses.get(HF_API, body=fixture_bytes("hf", "daily_papers_truncated.json"))
    assert "invalid JSON" in failure_of("hf")


@responses.activate
def test_html_page_without_data_fails(fixture_bytes):
    responses.get(
        "https://huggingface.test/papers", body=fixture_bytes("hf", "papers_page_without_data.html")
    )
    assert "no DailyPapers data" in failure_of("hf-html")


def test_timeout_is_retried_then_reported(settings):
    settings.HTTP_TIMEOUT_SECONDS = 0.2
    settings.HTTP_RETRIES = 1
    with ScriptedServer([stall(1.0)]) as server:
        settings.HF_API_URL = server.url + "/api/daily_papers"
        message = failure_of("hf")
    assert "timed out after 0.2 s" in message
    assert len(server.requests) == 2


def test_connection_reset_halfway_through_a_page_writes_nothing(fixture_bytes, settings):
    """Page 1 of the arXiv answer arrives, page 2 is cut off every time: no paper is stored."""
    settings.ARXIV_PAGE_SIZE = 2
    settings.HTTP_RETRIES = 1
    page_1, page_2 = (
        fixture_bytes("arxiv", "api_paged_1.xml"),
        fixture_bytes("arxiv", "api_paged_2.xml"),
    )
    with ScriptedServer([reply(200, page_1), reset_halfway(page_2)]) as server:
        settings.ARXIV_API_URL = server.url + "/api/query"
        message = failure_of("arxiv")
    assert "connection broken while reading the response" in message
    assert len(server.requests) == 3  # page 1, page 2, page 2 again


def test_a_reset_once_is_retried_and_the_batch_lands(fixture_bytes, settings):
    settings.ARXIV_PAGE_SIZE = 2
    page_1, page_2 = (
        fixture_bytes("arxiv", "api_paged_1.xml"),
        fixture_bytes("arxiv", "api_paged_2.xml"),
    )
    script = [reply(200, page_1), reset_halfway(page_2), reply(200, page_2)]
    with ScriptedServer(script) as server:
        settings.ARXIV_API_URL = server.url + "/api/query"
        assert fetch_from_source("arxiv").created == 3


def test_connection_refused_is_reported(settings):
    settings.HTTP_RETRIES = 0
    with ScriptedServer([reply()]) as server:
        url = server.url
    settings.HF_API_URL = url + "/api/daily_papers"  # the server is gone
    assert "connection failed" in failure_of("hf")


def test_rss_refuses_a_date():
    from datetime import date

    assert "--date is not supported" in failure_of("arxiv-rss", date=date(2025, 1, 1))


@responses.activate
def test_command_exits_non_zero_with_one_line(capsys):
    responses.get(HF_API, status=500)
    with pytest.raises(CommandError) as caught:
        call_command("fetch_papers", "--source", "hf")
    assert str(caught.value).startswith("hf: HTTP 500")


def test_an_answer_declared_larger_than_the_limit_is_refused_unread(settings, fixture_bytes):
    settings.HTTP_MAX_RESPONSE_BYTES = 1000
    body = fixture_bytes("hf", "daily_papers.json")
    with ScriptedServer([reply(200, body)]) as server:
        settings.HF_API_URL = server.url + "/api/daily_papers"
        message = failure_of("hf")
    assert f"the response is larger than 1,000 bytes ({len(body):,} bytes declared or more;" in message
    assert len(server.requests) == 1  # not retried


@responses.activate
def test_a_content_length_of_digits_python_cannot_read_is_left_to_the_body(fixture_bytes):
    """"²" is a digit to str.isdigit(), not to int(): the body is read and checked as it comes."""
    responses.get(HF_API, body=fixture_bytes("hf", "daily_papers.json"), headers={"Content-Length": "\u00b2"})
    assert fetch_from_source("hf").created == 5


def test_a_compressed_answer_is_refused_once_it_unpacks_past_the_limit(settings):
    settings.HTTP_MAX_RESPONSE_BYTES = 1_000_000
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")  # 5 MB of JSON in about 5 KB
    with ScriptedServer([reply(200, bomb, {"Content-Encoding": "gzip"})]) as server:
        settings.HF_API_URL = server.url + "/api/daily_papers"
        message = failure_of("hf")
    assert len(bomb) < 10_000 and "the response is larger than 1,000,000 bytes" in message


def test_an_answer_within_the_limit_lands(settings, fixture_bytes):
    body = fixture_bytes("hf", "daily_papers.json")
    settings.HTTP_MAX_RESPONSE_BYTES = len(body)
    with ScriptedServer([reply(200, gzip.compress(body), {"Content-Encoding": "gzip"})]) as server:
        settings.HF_API_URL = server.url + "/api/daily_papers"
        assert fetch_from_source("hf").created == 5  # every item of the recorded answer
