"""/healthz for load balancers and /healthz/deep for alerting: JSON, 200 or 503."""

import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import OperationalError
from django.utils import timezone

from digest import pause
from digest.editions import edition_date_for
from digest.models import Cadence, Delivery
from papers.models import FetchRun
from tests.factories import EditionFactory, SubscriberFactory
from tests.ops.stack import wait_until
from tests.servers import free_port

pytestmark = pytest.mark.django_db

WEDNESDAY_10AM = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


@pytest.fixture
def wednesday_morning(settings):
    settings.PAPER_SOURCES = ["hf", "arxiv-rss"]
    settings.REDIS_URL = ""
    with time_machine.travel(WEDNESDAY_10AM, tick=False):
        yield timezone.now()


def fetched(source, hours_ago, status=FetchRun.Status.OK, error=""):
    moment = timezone.now() - timedelta(hours=hours_ago)
    return FetchRun.objects.create(
        source=source, started_at=moment, finished_at=moment + timedelta(seconds=3), status=status, error=error
    )


def healthy_pipeline():
    """This morning's fetches, editions and sent digests."""
    fetched("hf", 4)
    fetched("arxiv-rss", 4)
    daily = EditionFactory(cadence="daily", date=datetime(2026, 11, 18).date())
    EditionFactory(cadence="weekly", date=datetime(2026, 11, 16).date())
    for subscriber in SubscriberFactory.create_batch(3):
        Delivery.objects.create(subscriber=subscriber, edition=daily, status="sent", sent_at=timezone.now())
    return daily


def test_healthz_answers_200_when_database_and_redis_answer(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url()

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert "no-cache" in response["Cache-Control"]


def test_healthz_answers_head_requests_for_load_balancers(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url()

    response = client.head("/healthz")

    assert response.status_code == 200
    assert response.content == b""


def test_deep_health_answers_head_requests_with_the_same_status_as_get(client, wednesday_morning):
    healthy_pipeline()
    assert client.head("/healthz/deep").status_code == 200
    FetchRun.objects.all().delete()
    assert client.head("/healthz/deep").status_code == 503


def test_healthz_answers_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["problems"][0].startswith("redis: ConnectionError")


def test_healthz_answers_503_when_the_database_is_unreachable(client, settings):
    settings.REDIS_URL = ""
    with mock.patch("config.health.connection.cursor", side_effect=OperationalError("connection refused")):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {
        "ok": False, "error": "OperationalError: connection refused", "ms": mock.ANY
    }


def test_deep_health_reports_sources_editions_and_deliveries(client, wednesday_morning):
    healthy_pipeline()

    response = client.get("/healthz/deep")

    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert checks["sources"]["sources"]["hf"]["age_hours"] == pytest.approx(4, abs=0.01)
    assert checks["editions"]["editions"]["daily"]["latest_date"] == "2026-11-18"
    assert checks["editions"]["editions"]["weekly"]["latest_date"] == "2026-11-16"
    assert checks["deliveries"]["sent_24h"] == 3 and checks["deliveries"]["failed_24h"] == 0


def test_deep_health_fails_when_a_source_has_not_succeeded_for_a_day(client, wednesday_morning):
    healthy_pipeline()
    FetchRun.objects.filter(source="arxiv-rss").delete()
    fetched("arxiv-rss", 30)
    fetched("arxiv-rss", 1, status=FetchRun.Status.FAILED, error="arxiv-rss: HTTP 503 from rss.arxiv.org")

    response = client.get("/healthz/deep")

    assert response.status_code == 503
    body = response.json()
    assert body["problems"] == ["sources: arxiv-rss last succeeded 30.0h ago"]
    assert body["checks"]["sources"]["sources"]["arxiv-rss"]["last_error"] == "arxiv-rss: HTTP 503 from rss.arxiv.org"


def test_deep_health_accepts_the_hugging_face_page_standing_in_for_its_api(client, wednesday_morning):
    healthy_pipeline()
    FetchRun.objects.filter(source="hf").delete()
    fetched("hf", 2, status=FetchRun.Status.FAILED, error="hf: HTTP 500")
    fetched("hf-html", 2)

    response = client.get("/healthz/deep")

    assert response.status_code == 200
    assert response.json()["checks"]["sources"]["sources"]["hf"]["via_fallback"] == "hf-html"


def test_deep_health_fails_when_todays_edition_was_not_built_after_the_job_hour(client, wednesday_morning):
    daily = healthy_pipeline()
    daily.date = datetime(2026, 11, 17).date()
    daily.save()

    response = client.get("/healthz/deep")

    assert response.status_code == 503
    assert response.json()["problems"] == ["editions: no daily edition for 2026-11-18 (latest 2026-11-17)"]


def test_deep_health_does_not_expect_todays_edition_before_the_job_hour(client, settings):
    settings.PAPER_SOURCES, settings.REDIS_URL = ["hf"], ""
    with time_machine.travel(datetime(2026, 11, 18, 5, 0, tzinfo=UTC), tick=False):
        fetched("hf", 20)
        EditionFactory(cadence="daily", date=datetime(2026, 11, 17).date())
        EditionFactory(cadence="weekly", date=datetime(2026, 11, 16).date())
        response = client.get("/healthz/deep")

    assert response.status_code == 200, response.json()


def test_deep_health_fails_on_deliveries_stuck_pending_or_failing(client, wednesday_morning):
    daily = healthy_pipeline()
    hour_ago = timezone.now() - timedelta(hours=1)
    for subscriber in SubscriberFactory.create_batch(2):
        Delivery.objects.create(subscriber=subscriber, edition=daily, status="pending", created_at=hour_ago)
    for subscriber in SubscriberFactory.create_batch(3):
        Delivery.objects.create(subscriber=subscriber, edition=daily, status="failed", reason="HTTP 400")

    response = client.get("/healthz/deep")

    assert response.status_code == 503
    deliveries = response.json()["checks"]["deliveries"]
    assert deliveries["pending_overdue"] == 2 and deliveries["failed_24h"] == 3
    assert deliveries["failed_rate_24h"] == 0.5
    assert "2 pending for over" in deliveries["problem"] and "3 failed in 24h (50.0%)" in deliveries["problem"]


def test_deep_health_counts_the_last_two_days_of_deliveries_and_sends_stuck_since_any_day(client, wednesday_morning):
    three_days_ago = timezone.now() - timedelta(days=3)
    older = EditionFactory(cadence="daily", date=datetime(2026, 11, 15).date())
    for subscriber in SubscriberFactory.create_batch(2):  # an edition past sending: not counted
        Delivery.objects.create(subscriber=subscriber, edition=older, status="pending", created_at=three_days_ago)
    Delivery.objects.create(
        subscriber=SubscriberFactory(), edition=older, status="sending", created_at=three_days_ago,
        sending_at=three_days_ago,
    )
    daily = healthy_pipeline()  # claimed after the older rows, as the ledger's ids are handed out
    Delivery.objects.create(
        subscriber=SubscriberFactory(), edition=daily, status="pending", created_at=timezone.now() - timedelta(hours=1)
    )

    response = client.get("/healthz/deep")

    assert response.status_code == 503
    deliveries = response.json()["checks"]["deliveries"]
    assert deliveries["pending"] == 1 and deliveries["pending_overdue"] == 1
    assert deliveries["sending_stale"] == 1 and deliveries["sent_24h"] == 3
    assert "1 pending for over" in deliveries["problem"] and "1 stuck in sending" in deliveries["problem"]


def test_deep_health_fails_when_no_worker_consumes_the_queues(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url()
    settings.PAPER_SOURCES = []

    with mock.patch("config.health.check_editions", return_value={"ok": True}):
        response = client.get("/healthz/deep")

    assert response.status_code == 503
    workers = response.json()["checks"]["workers"]
    assert workers["workers"] == [] and workers["problem"] == "no worker consumes default, fetch, send"


def held_back_by_a_pause(daily, count=2):
    """Rows claimed an hour ago, held back by a pause since."""
    hour_ago = timezone.now() - timedelta(hours=1)
    for subscriber in SubscriberFactory.create_batch(count):
        Delivery.objects.create(subscriber=subscriber, edition=daily, status="pending", created_at=hour_ago)


def test_a_pause_of_digest_sending_is_reported_without_failing_and_the_rows_it_holds_back_are_not(
    client, wednesday_morning
):
    held_back_by_a_pause(healthy_pipeline())
    with time_machine.travel(WEDNESDAY_10AM - timedelta(minutes=50), tick=False):
        pause.pause_sending("operator@example.org", "the edition links 404")

    response = client.get("/healthz/deep")

    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert checks["sending"] == {"ok": True, "paused": True, "paused_at": "2026-11-18T09:10:00+00:00",
                                 "paused_hours": 0.83, "problem": "", "ms": mock.ANY}
    assert checks["deliveries"]["ok"] and checks["deliveries"]["pending_overdue"] == 2
    assert "@" not in response.content.decode() and "404" not in response.content.decode()


def test_a_pause_longer_than_the_alert_hours_fails_the_deep_check(client, wednesday_morning, settings):
    settings.DIGEST_PAUSE_ALERT_HOURS = 3
    healthy_pipeline()
    with time_machine.travel(WEDNESDAY_10AM - timedelta(hours=4), tick=False):
        pause.pause_sending("alice", "a broken edition")

    response = client.get("/healthz/deep")

    assert response.status_code == 503
    assert response.json()["problems"] == [
        "sending: digest sending paused by an operator 4.0h ago (manage.py sending resume)"
    ]


def test_rows_held_back_by_a_pause_are_overdue_again_once_it_has_been_over_for_45_minutes(client, wednesday_morning):
    held_back_by_a_pause(healthy_pipeline())
    with time_machine.travel(WEDNESDAY_10AM - timedelta(minutes=50), tick=False):
        pause.pause_sending("alice", "a broken edition")
    with time_machine.travel(WEDNESDAY_10AM - timedelta(minutes=30), tick=False):
        pause.resume_sending("alice")
    just_resumed = client.get("/healthz/deep")

    with time_machine.travel(WEDNESDAY_10AM + timedelta(minutes=20), tick=False):
        still_pending = client.get("/healthz/deep")

    assert just_resumed.status_code == 200, just_resumed.json()
    assert just_resumed.json()["checks"]["sending"]["paused"] is False
    assert still_pending.status_code == 503
    assert still_pending.json()["problems"][0].startswith("deliveries: 2 pending for over 0:45:00")


def test_health_answers_never_contain_an_email_address(client, wednesday_morning):
    healthy_pipeline()

    body = client.get("/healthz/deep").content.decode()

    assert "@" not in body


def test_health_answers_plain_http_probes_even_when_https_is_enforced(settings):
    from django.test import Client

    settings.SECURE_SSL_REDIRECT = True
    settings.REDIS_URL = ""
    client = Client()  # built after the setting, so its SecurityMiddleware enforces HTTPS

    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz/deep").status_code in (200, 503)
    assert client.get("/admin/").status_code == 301


# --- Redis restarted or stopped under a running web process ---------------------------------


def pipeline_up_to_date():
    """Today's fetch of the stack's source and the editions due by now: the deep check is
    healthy on them, with a worker consuming every queue."""
    fetched("bundled", 0)
    today = timezone.localdate()
    for cadence in Cadence.values:
        EditionFactory(cadence=cadence, date=edition_date_for(cadence, today))


def deep_check(stack):
    response = stack.get("/healthz/deep")
    return response.status_code, response.json()


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_first_deep_check_after_a_redis_restart_finds_the_workers(stack, redis_server):
    pipeline_up_to_date()
    worker = stack.start_worker()
    assert wait_until(lambda: stack.workers_answering(), 30), worker.log()
    stack.start_web(workers=1)  # one process: each check below goes through its pooled connection
    before = deep_check(stack)

    redis_server.restart()
    assert wait_until(lambda: stack.workers_answering(), 45), worker.log()[-3000:]
    status, body = deep_check(stack)

    assert before[0] == 200, before[1]
    assert status == 200, body
    assert body["checks"]["workers"]["consumers"] == {"default": 1, "fetch": 1, "send": 1}


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_stopped_redis_is_reported_down_at_once_by_both_checks(stack, redis_server):
    stack.start_web(workers=1)
    deep_check(stack)  # the process's broker connection, pooled from now on
    redis_server.stop(keep_dir=True)
    try:
        started = time.monotonic()
        cheap, (status, body) = stack.get("/healthz"), deep_check(stack)
        took = time.monotonic() - started
    finally:
        redis_server.start()

    assert cheap.status_code == 503 and cheap.json()["problems"][0].startswith("redis: ConnectionError")
    assert status == 503 and body["problems"][0].startswith("redis: ConnectionError")
    assert took < 3, f"{took:.1f} s"
