"""The daily job end to end on PostgreSQL: fetch → edition → rank → render → send → record."""

from datetime import UTC, date, datetime
from unittest import mock

import pytest
import time_machine
from celery.exceptions import Retry
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from digest import services, tasks
from digest.editions import build_editions_for
from digest.models import Delivery, Edition
from papers.models import FetchRun, Paper
from subscriptions.models import Subscriber
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def bundled_only(settings):
    settings.PAPER_SOURCES = ["bundled"]


def test_run_daily_twice_emails_each_active_subscriber_once(bundled_only, mailoutbox):
    active = [
        SubscriberFactory(interests="", frequency="daily"),
        SubscriberFactory(interests="", frequency="weekly"),
        SubscriberFactory(interests="language models", frequency="daily"),
    ]
    SubscriberFactory(status=Subscriber.Status.PENDING, confirmed_at=None)
    SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED)

    call_command("run_daily")
    call_command("run_daily")

    assert Paper.objects.count() == 415
    assert set(Edition.objects.values_list("cadence", flat=True)) == {"daily", "weekly"}
    assert sorted(m.to[0] for m in mailoutbox) == sorted(s.email for s in active)
    assert Delivery.objects.filter(status="sent").count() == 3


def test_send_digests_for_one_subscriber_sends_at_once_but_only_once(bundled_only, mailoutbox):
    subscriber = SubscriberFactory(interests="", send_hour=23, timezone="Pacific/Kiritimati")
    call_command("fetch_papers", "--source", "bundled")

    call_command("send_digests", "--subscriber", subscriber.email)
    call_command("send_digests", "--subscriber", subscriber.email)

    assert [m.to[0] for m in mailoutbox] == [subscriber.email]


def test_dry_run_sends_nothing(bundled_only, mailoutbox):
    SubscriberFactory(interests="")
    call_command("fetch_papers", "--source", "bundled")
    build_editions_for(timezone.localdate())
    call_command("send_digests", "--dry-run")
    assert mailoutbox == [] and Delivery.objects.count() == 0


def test_a_daily_job_the_database_fails_is_retried_for_the_day_it_started(bundled_only, mailoutbox):
    """A database restart at the job hour must not cost the day's digests: nothing else builds
    the editions. The retry names the day it was started for, so one that runs after midnight
    still builds that day's editions."""
    reader = SubscriberFactory(interests="")
    with time_machine.travel(datetime(2026, 11, 20, 6, 0, tzinfo=UTC), tick=False):
        with mock.patch("papers.tasks.fetch_all_sources", side_effect=OperationalError("server closed the connection")), \
                mock.patch("digest.tasks.random.uniform", return_value=1.0):
            with pytest.raises(Retry) as retry:
                tasks.run_daily_job.apply()
    assert retry.value.when == 30
    assert list(retry.value.sig.args) == ["2026-11-20"]
    assert not Edition.objects.exists() and mailoutbox == []

    with time_machine.travel(datetime(2026, 11, 20, 6, 1, tzinfo=UTC), tick=False):
        tasks.run_daily_job.apply(args=retry.value.sig.args)  # as the broker delivers the retry

    assert set(Edition.objects.values_list("date", flat=True)) == {datetime(2026, 11, 20).date(),
                                                                   datetime(2026, 11, 16).date()}
    assert [m.to[0] for m in mailoutbox] == [reader.email]


def test_a_daily_job_beat_never_began_is_started_later_that_day(bundled_only, mailoutbox):
    """Beat publishes the job once: with Redis unreachable at that moment nothing else would
    build the day's editions."""
    reader = SubscriberFactory(interests="")
    with time_machine.travel(datetime(2026, 11, 20, 6, 14, tzinfo=UTC), tick=False):
        assert services.start_missed_daily_job() is None
    assert not Edition.objects.exists()

    with time_machine.travel(datetime(2026, 11, 20, 6, 20, tzinfo=UTC), tick=False):
        assert services.start_missed_daily_job() == date(2026, 11, 20)  # runs in-process here

    assert Edition.objects.filter(cadence="daily", date=date(2026, 11, 20)).exists()
    assert [m.to[0] for m in mailoutbox] == [reader.email]
    with time_machine.travel(datetime(2026, 11, 20, 8, 0, tzinfo=UTC), tick=False):
        assert services.start_missed_daily_job() is None


def test_a_daily_job_that_began_fetching_is_not_started_again(bundled_only):
    with time_machine.travel(datetime(2026, 11, 20, 6, 0, 5, tzinfo=UTC), tick=False):
        FetchRun.objects.create(source="bundled", status="ok")
    with time_machine.travel(datetime(2026, 11, 20, 6, 50, tzinfo=UTC), tick=False), \
            mock.patch("digest.tasks.run_daily_job.delay") as delay:
        assert services.start_missed_daily_job() is None
    delay.assert_not_called()


def test_a_fetch_before_the_job_hour_does_not_count_as_the_job(bundled_only):
    with time_machine.travel(datetime(2026, 11, 20, 5, 59, tzinfo=UTC), tick=False):
        FetchRun.objects.create(source="bundled", status="ok")
    with time_machine.travel(datetime(2026, 11, 20, 6, 20, tzinfo=UTC), tick=False), \
            mock.patch("digest.tasks.run_daily_job.delay") as delay:
        assert services.start_missed_daily_job() == date(2026, 11, 20)
    delay.assert_called_once_with("2026-11-20")


def test_a_started_catch_up_is_not_started_again_within_the_hour(bundled_only):
    with mock.patch("digest.tasks.run_daily_job.delay") as delay:
        for minute in (20, 35, 50):
            with time_machine.travel(datetime(2026, 11, 20, 6, minute, tzinfo=UTC), tick=False):
                services.start_missed_daily_job()
        assert delay.call_count == 1
        with time_machine.travel(datetime(2026, 11, 20, 7, 21, tzinfo=UTC), tick=False):
            assert services.start_missed_daily_job() == date(2026, 11, 20)
    assert delay.call_count == 2


def test_a_catch_up_the_broker_refused_is_tried_again_at_the_next_check(bundled_only):
    with time_machine.travel(datetime(2026, 11, 20, 6, 20, tzinfo=UTC), tick=False), \
            mock.patch("digest.tasks.run_daily_job.delay", side_effect=BrokerError("connection refused")):
        with pytest.raises(BrokerError):
            services.start_missed_daily_job()
    with time_machine.travel(datetime(2026, 11, 20, 6, 35, tzinfo=UTC), tick=False), \
            mock.patch("digest.tasks.run_daily_job.delay") as delay:
        assert services.start_missed_daily_job() == date(2026, 11, 20)
    delay.assert_called_once_with("2026-11-20")
