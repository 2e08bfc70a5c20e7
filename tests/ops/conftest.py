"""Fixtures of the operations suite: the production stack, started for real.

``stack`` runs Paperboy's own processes against the session's PostgreSQL
(the test database, committed rows only: every test here is transactional)
and a Redis database of its own, so tasks left by one test never reach the
next. ``recorded_sources`` serves the papers suite's recorded responses in
place of Hugging Face and arXiv.
"""

from itertools import count
from pathlib import Path

import pytest
import redis

from tests.fakes.mailgun import FakeMailgun
from tests.fakes.smtp import SmtpSink
from tests.fakes.sources import RecordedSourceServer
from tests.ops.stack import Stack
from tests.servers import PgBouncerServer

RECORDED = Path(__file__).resolve().parents[1] / "papers" / "fixtures"
REDIS_DATABASE_NUMBERS = count()


@pytest.fixture
def redis_url(redis_server):
    """A Redis database of this test's own (0 belongs to the rest of the suite)."""
    url = redis_server.url(db=1 + next(REDIS_DATABASE_NUMBERS) % 15)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def stack(transactional_db, test_database_url, redis_url, tmp_path):
    """Processes started through this are stopped before the database is flushed."""
    running = Stack(tmp_path, test_database_url, redis_url)
    yield running
    running.end_all()


@pytest.fixture(scope="module")
def pgbouncer(postgres_server):
    """PgBouncer pooling by transaction in front of the session's PostgreSQL, its two server
    connections taken in turn (see ``PgBouncerServer``). Stopped after the module, so that
    its server connections do not keep the test database from being dropped."""
    server = PgBouncerServer(postgres_server).start()
    yield server
    server.stop()


@pytest.fixture
def recorded_sources():
    """Hugging Face's daily papers API and arXiv's RSS feed, from recorded responses."""
    with RecordedSourceServer() as server:
        server.serve("/api/daily_papers", RECORDED / "hf" / "daily_papers.json", "application/json")
        server.serve("/papers", RECORDED / "hf" / "papers_page.html", "text/html; charset=utf-8")
        server.serve("/rss/", RECORDED / "arxiv" / "rss_weekday.xml", "application/rss+xml")
        yield server


def sources_env(server):
    """The settings that point the daily fetch at ``server``: the production sources."""
    return {
        "PAPER_SOURCES": "hf,arxiv-rss",
        "HF_API_URL": server.url("/api/daily_papers"),
        "HF_PAPERS_PAGE_URL": server.url("/papers"),
        "ARXIV_RSS_URL": server.url("/rss/"),
        "ARXIV_MIN_INTERVAL_SECONDS": 0,
        "HTTP_BACKOFF_SECONDS": 0,
    }


@pytest.fixture
def fake_mailgun():
    with FakeMailgun() as esp:
        yield esp


def mailgun_env(esp):
    return {
        "ESP": "mailgun",
        "MAILGUN_API_KEY": esp.api_key,
        "MAILGUN_SENDER_DOMAIN": esp.domain,
        "MAILGUN_API_URL": esp.api_url,
        "DEFAULT_FROM_EMAIL": f"Paperboy <digest@{esp.domain}>",
    }


@pytest.fixture
def smtp_sink():
    with SmtpSink() as sink:
        yield sink
