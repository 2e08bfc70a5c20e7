"""The daily job end to end on PostgreSQL: fetch → edition → rank → render → send → record."""

import pytest
from django.core.management import call_command
from django.utils import timezone

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
