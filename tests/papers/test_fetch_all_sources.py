"""The daily fetch: every configured source, one failing never stopping the others."""

import json

import pytest
import responses

from papers.models import FetchRun, Paper
from papers.services import fetch_configured_sources
from papers.tasks import fetch_all_sources

pytestmark = pytest.mark.django_db
HF_API = "https://huggingface.test/api/daily_papers"
HF_PAGE = "https://huggingface.test/papers"
RSS = "https://rss.arxiv.test/rss/cs.LG"


@pytest.fixture(autouse=True)
def _sources(settings):
    settings.HF_API_URL = HF_API
    settings.HF_PAPERS_PAGE_URL = HF_PAGE
    settings.ARXIV_RSS_URL = "https://rss.arxiv.test/rss/"
    settings.ARXIV_CATEGORIES = ["cs.LG"]
    settings.HTTP_RETRIES = 0


@responses.activate
def test_task_fetches_every_configured_source_and_survives_a_failure(settings, fixture_bytes):
    settings.PAPER_SOURCES = ["arxiv-rss", "bundled"]
    responses.get(RSS, body=b"<html>not a feed</html>")
    summary = fetch_all_sources()
    assert summary["arxiv-rss"]["error"].startswith("arxiv-rss: ")
    assert summary["bundled"]["created"] == 415
    assert dict(FetchRun.objects.values_list("source", "status")) == {
        "arxiv-rss": "failed",
        "bundled": "ok",
    }


def test_a_crash_in_one_source_is_contained(settings, monkeypatch):
    settings.PAPER_SOURCES = ["hf", "bundled"]

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr("papers.sources.huggingface.HuggingFaceApiSource.fetch", broken)
    monkeypatch.setattr("papers.services.FALLBACKS", {})
    summary = fetch_configured_sources()
    assert summary["hf"]["error"] == "RuntimeError: bug"
    assert summary["bundled"]["created"] == 415
    assert FetchRun.objects.get(source="hf").error == "RuntimeError: bug"


@responses.activate
def test_hf_api_failure_falls_back_to_the_papers_page(settings, fixture_bytes):
    settings.PAPER_SOURCES = ["hf"]
    responses.get(HF_API, status=503)
    responses.get(HF_PAGE, body=fixture_bytes("hf", "papers_page.html"))
    summary = fetch_configured_sources()
    assert "HTTP 503" in summary["hf"]["error"]
    assert summary["hf-html"]["created"] == 3
    assert Paper.objects.get(arxiv_id="2501.08001").upvotes == 87


@responses.activate
def test_an_api_answer_with_no_readable_item_fails_and_falls_back_to_the_papers_page(settings, fixture_bytes):
    settings.PAPER_SOURCES = ["hf"]
    changed_format = [{"paper": {"arxivId": f"2501.0800{n}", "name": "A title"}} for n in range(3)]
    responses.get(HF_API, json=changed_format)
    responses.get(HF_PAGE, body=fixture_bytes("hf", "papers_page.html"))
    summary = fetch_configured_sources()
    assert summary["hf"]["error"] == (
        "hf: could not read any of its 3 items (the first: paper.id is not an arXiv id: None)"
    )
    assert FetchRun.objects.get(source="hf").status == "failed"
    assert summary["hf-html"]["created"] == 3


def hf_answer(count, **paper_fields):
    """A Hugging Face answer of ``count`` readable papers carrying ``paper_fields``."""
    return [
        {"paper": {"id": f"2501.{n:05d}", "title": f"Paper {n}", **paper_fields}, "numComments": 2}
        for n in range(count)
    ]


@responses.activate
@pytest.mark.parametrize("paper_fields", [{}, {"votes": 12}, {"upvotes": "12"}], ids=["missing", "renamed", "retyped"])
def test_an_api_answer_whose_papers_all_lack_upvotes_fails_and_falls_back_to_the_papers_page(
    settings, fixture_bytes, paper_fields
):
    """Stored, such an answer would rank the day on stale or zero votes and nobody would know."""
    settings.PAPER_SOURCES = ["hf"]
    Paper.objects.create(arxiv_id="2501.00001", title="Seen yesterday", upvotes=40)
    responses.get(HF_API, json=hf_answer(12, **paper_fields))
    responses.get(HF_PAGE, body=fixture_bytes("hf", "papers_page.html"))

    summary = fetch_configured_sources()

    assert summary["hf"]["error"] == "hf: none of its 12 papers has a readable upvotes (the format changed?)"
    assert [run.status for run in FetchRun.objects.order_by("pk")] == ["failed", "ok"]
    assert summary["hf-html"]["created"] == 3
    assert not Paper.objects.filter(arxiv_id="2501.00002").exists()  # nothing of the refused answer
    assert Paper.objects.get(arxiv_id="2501.00001").upvotes == 40


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        hf_answer(9),  # a few papers: too few to call it a format change
        [*hf_answer(11), {"paper": {"id": "2501.00099", "title": "Counted", "upvotes": 0}}],  # the field is there
    ],
    ids=["nine-papers", "one-counted"],
)
def test_an_answer_with_few_papers_or_some_upvotes_is_stored(settings, answer):
    settings.PAPER_SOURCES = ["hf"]
    responses.get(HF_API, json=answer)
    summary = fetch_configured_sources()
    assert "error" not in summary["hf"] and list(summary) == ["hf"]
    assert Paper.objects.count() == len({item["paper"]["id"] for item in answer})


@responses.activate
def test_an_empty_api_answer_is_a_quiet_day_not_a_failure(settings):
    settings.PAPER_SOURCES = ["hf"]
    responses.get(HF_API, json=[])
    summary = fetch_configured_sources()
    assert summary == {"hf": summary["hf"]} and summary["hf"]["created"] == 0
    assert FetchRun.objects.get(source="hf").status == "ok"


@responses.activate
def test_no_fallback_when_the_api_works(settings, fixture_bytes):
    settings.PAPER_SOURCES = ["hf"]
    responses.get(HF_API, body=fixture_bytes("hf", "daily_papers.json"))
    assert list(fetch_configured_sources()) == ["hf"]


def test_summary_is_json_serialisable(settings):
    import json

    settings.PAPER_SOURCES = ["bundled"]
    assert json.loads(json.dumps(fetch_all_sources()))["bundled"]["unchanged"] == 0


def test_task_runs_through_celery_under_its_routed_name(settings):
    settings.PAPER_SOURCES = ["bundled"]
    assert fetch_all_sources.name == "papers.tasks.fetch_all_sources"  # routed to the fetch queue
    result = fetch_all_sources.apply()
    assert result.successful() and result.get()["bundled"]["created"] == 415


@responses.activate
def test_the_daily_summary_lists_the_dropped_fields(settings, fixture_bytes):
    settings.PAPER_SOURCES = ["hf"]
    responses.get(HF_API, body=fixture_bytes("hf", "daily_papers.json"))
    summary = fetch_configured_sources()
    assert summary["hf"]["dropped"] == [
        ["2501.09103", "upvotes", "upvotes is not a non-negative integer: 'lots'"]
    ]
    assert json.loads(json.dumps(summary)) == summary  # the Celery result, as is
