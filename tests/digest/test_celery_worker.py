"""The daily job through a real Celery worker process, with Redis as the broker."""

import re
import time

import pytest
from celery import Celery
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from digest import pause
from digest.dashboard import KEPT_CONTEXT_KEY
from digest.editions import edition_date_for
from digest.models import Delivery
from tests.digest.builders import built_edition
from tests.factories import EditionFactory, SubscriberFactory
from tests.ops.stack import Stack, wait_until
from tests.ops.test_dashboard import sent_column
from tests.servers import redis_cache


@pytest.fixture
def celery_worker_process(transactional_db, redis_server, test_database_url, tmp_path):
    """A worker of the end-to-end stack, on the suite's Redis database (its broker and cache)."""
    stack = Stack(tmp_path, test_database_url, redis_server.url())
    worker = stack.start_worker()
    yield worker.process, tmp_path
    stack.end_all()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_daily_job_runs_in_a_real_worker_and_sends_each_digest_once(celery_worker_process, redis_server):
    process, workdir = celery_worker_process
    subscribers = SubscriberFactory.create_batch(4, interests="")
    client = Celery(broker=redis_server.url())

    client.send_task("digest.tasks.run_daily_job", queue="default")
    done = wait_until(lambda: Delivery.objects.filter(status="sent").count() == 4, 90)
    client.send_task("digest.tasks.run_daily_job", queue="default")  # a second run: no new email
    client.send_task("digest.tasks.enqueue_due_digests", queue="default")
    time.sleep(3)

    log = (workdir / "worker.log").read_text()
    assert done, f"worker did not send the digests; its log:\n{log[-3000:]}"
    assert process.poll() is None, "the worker died"
    emails = sorted((workdir / "outbox").glob("*.eml"))
    assert len(emails) == 4
    recipients = sorted(
        next(line for line in p.read_text().splitlines() if line.startswith("To: "))[4:] for p in emails
    )
    assert recipients == sorted(s.email for s in subscribers)
    assert "digest.tasks.send_digest_chunk" in log  # the send step ran in the worker


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_shows_the_figures_a_real_worker_computed_and_kept_in_redis(
    celery_worker_process, redis_server, settings, client
):
    settings.CACHES = redis_cache(redis_server.url())  # the worker's cache too
    process, workdir = celery_worker_process
    edition = EditionFactory(date=edition_date_for("daily", timezone.localdate()), cadence="daily")  # Friday's at weekends
    Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition, status="sent", sent_at=timezone.now())
    client.force_login(User.objects.create_user("operator", password="x", is_staff=True, is_superuser=True))
    key = KEPT_CONTEXT_KEY.format(day=timezone.localdate().isoformat())

    Celery(broker=redis_server.url()).send_task("digest.tasks.refresh_dashboard_figures", queue="default")
    kept = wait_until(lambda: cache.get(key) is not None, 90)
    with CaptureQueriesContext(connection) as queries:
        html = client.get("/admin/dashboard/").content.decode()

    log = (workdir / "worker.log").read_text()
    assert kept, f"the worker kept no figures; its log:\n{log[-3000:]}"
    computed_at = timezone.localtime(cache.get(key)["computed_at"])
    assert f"Figures computed at {computed_at:%H:%M:%S}" in html
    assert not [q["sql"] for q in queries.captured_queries if '"digest_delivery"' in q["sql"]]
    assert sent_column(html) == "1"  # the sent digest, as the worker counted it


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_starts_the_daily_job_beat_never_began(redis_server, test_database_url, tmp_path):
    """Beat's run of the job was lost (Redis down at the job hour): its quarter-hourly check,
    through the broker, starts the job once, and the readers get their digests."""
    job_settings, send_hour = job_hour_passed_an_hour_ago()
    stack = Stack(tmp_path, test_database_url, redis_server.url(), **job_settings)
    subscribers = SubscriberFactory.create_batch(3, interests="", send_hour=send_hour)
    stack.start_worker()
    try:
        stack.send_task("digest.tasks.start_missed_daily_job")
        done = wait_until(lambda: Delivery.objects.filter(status="sent").count() == 3, 90)
        stack.send_task("digest.tasks.start_missed_daily_job")
        time.sleep(3)
        log = (tmp_path / "worker.log").read_text()
    finally:
        stack.end_all()

    assert done, f"the missed job was not started; the worker's log:\n{log[-3000:]}"
    assert log.count("daily job missed") == 1
    assert log.count("Task digest.tasks.run_daily_job[") >= 1
    outbox = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(outbox) == len(subscribers)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_nothing_while_paused_and_each_reader_once_after_the_resume(
    celery_worker_process, redis_server
):
    process, workdir = celery_worker_process
    built_edition("daily")
    readers = SubscriberFactory.create_batch(3, interests="")
    client = Celery(broker=redis_server.url())

    def ticks_done():
        return len(re.findall(r"Task digest\.tasks\.enqueue_due_digests\[\S+\] succeeded",
                              (workdir / "worker.log").read_text()))

    pause.pause_sending("alice", "a broken edition")
    client.send_task("digest.tasks.enqueue_due_digests", queue="default")
    paused_tick = wait_until(lambda: ticks_done() == 1, 30)
    claimed_while_paused = Delivery.objects.count()
    pause.resume_sending("bob")
    client.send_task("digest.tasks.enqueue_due_digests", queue="default")
    sent = wait_until(lambda: Delivery.objects.filter(status="sent").count() == 3, 30)
    client.send_task("digest.tasks.enqueue_due_digests", queue="default")  # a later tick: nothing more
    quiet = wait_until(lambda: ticks_done() == 3, 30)

    log = (workdir / "worker.log").read_text()
    assert paused_tick and sent and quiet, f"the worker's log:\n{log[-3000:]}"
    assert claimed_while_paused == 0 and "due digests not enqueued: digest sending paused since" in log
    assert process.poll() is None, "the worker died"
    recipients = [
        next(line for line in p.read_text().splitlines() if line.startswith("To: "))[4:]
        for p in (workdir / "outbox").glob("*.eml")
    ]
    assert sorted(recipients) == sorted(r.email for r in readers)


def job_hour_passed_an_hour_ago():
    """``(settings, send hour)``: settings for a worker whose edition clock is at least an hour
    past its job hour, on the same date as UTC, and a send hour in UTC at which a reader gets
    today's edition now (their hour passed, and the job at most DIGEST_SAME_DAY_HOURS after it)."""
    hour = timezone.now().hour
    if hour >= 1:
        return {"DAILY_JOB_HOUR": hour - 1}, hour - 1
    return {"DAILY_JOB_HOUR": 2, "TIME_ZONE": "Etc/GMT-3"}, 0
