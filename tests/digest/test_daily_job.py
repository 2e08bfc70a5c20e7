"""The daily job end to end on PostgreSQL: fetch → edition → rank → render → send → record."""

from datetime import UTC, datetime
from unittest import mock

import pytest
import time_machine
from celery.exceptions import Retry
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from digest import tasks
from digest.editions import build_editions_for
from digest.models import Delivery, Edition
from papers.models import Paper
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
