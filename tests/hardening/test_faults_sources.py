"""A paper source that returns garbage, times out, or has an empty day.

Yesterday's fetch stored the recorded Hugging Face and arXiv papers. Today
every production source (the Hugging Face API, its papers page as the
fallback, arXiv's RSS feed) fails in one way, then the daily job runs on the
real stack (gunicorn, a Celery worker, PostgreSQL, Redis, the imitation
Mailgun). Stored papers stay exactly as they were, the failure is visible in
``/healthz/deep`` (each source's last status and error) and in the worker's
log, and the day's digests still go out from what is stored.
"""

from pathlib import Path

import pytest
from django.test import override_settings

from papers.models import FetchRun, Paper
from papers.services import fetch_configured_sources
from tests.hardening.faults_helpers import (  # noqa: F401  (fixtures)
    FaultySourceServer,
    addresses,
    configure,
    count,
    fake_mailgun,
    make_readers,
    record_figures,
    redis_url,
    sources_env,
    stack,
    wait_until,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

RECORDED = Path(__file__).resolve().parents[1] / "papers" / "fixtures"
HTTP_TIMEOUT = 0.5
GARBAGE = b"\x00\xff\xfe{[<rss <not json nor xml \xc3\x28"


@pytest.fixture
def sources():
    with FaultySourceServer() as server:
        server.serve("/api/daily_papers", RECORDED / "hf" / "daily_papers.json", "application/json")
        server.serve("/papers", RECORDED / "hf" / "papers_page.html", "text/html; charset=utf-8")
        server.serve("/rss/", RECORDED / "arxiv" / "rss_weekday.xml", "application/rss+xml")
        yield server


def break_sources(server, fault):
    if fault == "garbage":
        server.serve_bytes("/api/daily_papers", GARBAGE, "application/json")
        server.serve_bytes("/papers", GARBAGE, "text/html")
        server.serve_bytes("/rss/", GARBAGE, "application/rss+xml")
    elif fault == "timeout":
        for prefix in ("/api/daily_papers", "/papers", "/rss/"):
            server.hang(prefix, HTTP_TIMEOUT * 6)
    else:  # an empty day: nothing announced, nothing trending
        server.serve("/api/daily_papers", RECORDED / "hf" / "empty_list.json", "application/json")
        server.serve("/rss/", RECORDED / "arxiv" / "rss_weekend.xml", "application/rss+xml")


def stored_papers():
    return sorted(Paper.objects.values_list("arxiv_id", "title", "abstract", "updated_at"))


@pytest.mark.parametrize("fault", ["garbage", "timeout", "empty"])
@pytest.mark.django_db(transaction=True)
def test_a_failing_source_keeps_stored_papers_shows_in_health_and_digests_still_go_out(
    stack, sources, fake_mailgun, fault
):
    env = sources_env(sources)
    with override_settings(**{**env, "PAPER_SOURCES": ["hf", "arxiv-rss"]}):
        yesterday = fetch_configured_sources()  # yesterday's fetch, before the fault
    assert not [r for r in yesterday.values() if "error" in r], yesterday
    before = stored_papers()
    assert before

    break_sources(sources, fault)
    readers = make_readers(3)
    configure(stack, sources, fake_mailgun, HTTP_TIMEOUT_SECONDS=HTTP_TIMEOUT, HTTP_RETRIES=1)
    stack.start_web()
    worker = stack.start_worker(concurrency=2)
    stack.send_task("digest.tasks.run_daily_job")
    assert wait_until(lambda: count("sent") == len(readers), 60), stack.logs()

    assert stored_papers() == before  # not a row changed, none lost
    assert fake_mailgun.accepted_per_recipient() == {email: 1 for email in addresses(readers)}
    runs = {name: FetchRun.objects.filter(source=name).first() for name in ("hf", "arxiv-rss")}
    response = stack.get("/healthz/deep")
    body = response.json()
    health = body["checks"]["sources"]["sources"]
    record_figures(f"source-{fault}", papers_before=len(before), papers_after=Paper.objects.count(),
                   runs={n: r.status for n, r in runs.items()}, healthz_deep=response.status_code,
                   last_error={n: health[n].get("last_error", "")[:80] for n in runs}, digests_sent=count("sent"))
    if fault == "empty":
        assert {name: run.status for name, run in runs.items()} == {"hf": "ok", "arxiv-rss": "ok"}
        assert {run.created for run in runs.values()} == {0}
        assert {health[name]["last_status"] for name in runs} == {"ok"}
        return
    assert {name: run.status for name, run in runs.items()} == {"hf": "failed", "arxiv-rss": "failed"}
    assert FetchRun.objects.filter(source="hf-html").first().status == "failed"  # the fallback too
    for name in runs:
        assert health[name]["last_status"] == "failed", body
        assert health[name]["last_error"], body
    worker_log = worker.log()
    assert worker_log.count("fetch failed") >= 3, worker_log[-3000:]
    assert "trying hf-html in place of hf" in worker_log
