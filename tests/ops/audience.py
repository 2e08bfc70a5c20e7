"""The subscribers of the end-to-end runs, and what each one must receive."""

from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils import timezone

from tests.factories import SubscriberFactory

WESTERN_ZONES = ("America/Los_Angeles", "America/New_York", "Atlantic/Azores")


def western_zone_past_midnight():
    """A zone behind UTC where today's edition day has already begun.

    A reader there is due whatever the hour the suite runs at; between 00:00
    and 01:00 UTC no western zone has reached the day, and UTC stands in.
    """
    today = timezone.localdate()
    for name in WESTERN_ZONES:
        if datetime.now(ZoneInfo(name)).date() >= today:
            return name
    return "UTC"


def make_audience():
    """Return (readers due for a digest, subscribers who must get nothing)."""
    readers = [
        SubscriberFactory(interests="mixture of experts, routing", always_send_top=True),
        SubscriberFactory(interests=""),
        SubscriberFactory(interests="compilers", always_send_top=True),
        SubscriberFactory(interests="", frequency="weekly"),
        # 09:00 in Tokyo: the job (06:00 UTC, 15:00 there) is six hours later, so the reader gets
        # today's edition the same day, at whatever hour of the day the suite runs.
        SubscriberFactory(interests="", timezone="Asia/Tokyo", send_hour=9),
        SubscriberFactory(interests="", timezone=western_zone_past_midnight()),
    ]
    not_due = [
        SubscriberFactory(status="pending", confirmed_at=None),
        SubscriberFactory(status="paused"),
        SubscriberFactory(status="unsubscribed"),
        SubscriberFactory(status="bounced"),
        SubscriberFactory(status="complained"),
    ]
    return readers, not_due


def addresses(subscribers):
    return sorted(s.email.lower() for s in subscribers)
