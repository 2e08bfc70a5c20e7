"""The dashboard's ledger counts per day: settled days counted once and kept, the last ones
live, and every day as the whole ledger would count it."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from digest import ledger_days
from digest.dashboard import window
from digest.models import Delivery, DeliveryDay
from tests.factories import EditionFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

WEDNESDAY = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
STATUSES = ["sent", "sent", "sent", "failed", "skipped", "pending"]


def claim(edition, at, status="sent", sent_after=timedelta(minutes=20)):
    """A delivery claimed ``at`` and, when sent, sent ``sent_after`` later."""
    return Delivery.objects.create(
        subscriber=SubscriberFactory(), edition=edition, status=status, created_at=at,
        sent_at=at + sent_after if status == "sent" else None,
    )


def whole_ledger(days):
    """What reading every row counts: claims by day and status, sends by day."""
    claimed = {day: Counter() for day in days}
    sent = dict.fromkeys(days, 0)
    for delivery in Delivery.objects.all():
        claimed_on = timezone.localdate(delivery.created_at)
        if claimed_on in claimed:
            claimed[claimed_on][delivery.status] += 1
        if delivery.status == "sent" and timezone.localdate(delivery.sent_at) in sent:
            sent[timezone.localdate(delivery.sent_at)] += 1
    return claimed, sent


def test_a_settled_day_is_counted_once_and_kept_while_the_last_days_stay_live():
    with time_machine.travel(WEDNESDAY, tick=False):
        edition = EditionFactory(date=WEDNESDAY.date())
        five_days_ago = timezone.now() - timedelta(days=5)
        for status in ["sent", "sent", "failed"]:
            claim(edition, five_days_ago, status)
        claim(edition, timezone.now(), "pending")
        days = window(7, timezone.localdate())

        first = ledger_days.claimed_per_day(days, timezone.localdate())
        Delivery.objects.filter(created_at__lt=timezone.now() - timedelta(days=2)).delete()
        claim(edition, timezone.now(), "sent")
        again = ledger_days.claimed_per_day(days, timezone.localdate())
        sent = ledger_days.sent_per_day(days, timezone.localdate())

    settled_day = five_days_ago.date()
    assert first[settled_day] == again[settled_day] == {"sent": 2, "failed": 1}  # kept, not read again
    assert DeliveryDay.objects.get(day=settled_day).claimed == {"sent": 2, "failed": 1}
    assert first[WEDNESDAY.date()] == {"pending": 1}
    assert again[WEDNESDAY.date()] == {"pending": 1, "sent": 1}  # today is live
    assert sent[settled_day] == 2 and sent[WEDNESDAY.date()] == 1
    assert DeliveryDay.objects.filter(day__gte=WEDNESDAY.date() - timedelta(days=1)).count() == 0


def test_day_after_day_the_counts_are_those_of_the_whole_ledger():
    """Twelve days of service: rows claimed at any hour (some just before midnight and sent
    after it), inserted out of time order, the dashboard looked at every day."""
    rng = random.Random(7)
    start = WEDNESDAY - timedelta(days=20)
    edition = EditionFactory(date=start.date())
    hours = [0.01, 3, 9, 14, 23.95]

    def claim_a_day_of_rows(day_start):
        moments = [day_start + timedelta(hours=rng.choice(hours), minutes=rng.random()) for _ in range(6)]
        for at in moments:  # not in time order: ids and claim times need not agree within a day
            claim(edition, at, rng.choice(STATUSES), sent_after=timedelta(minutes=rng.choice([1, 20, 90])))

    for back in range(8, 0, -1):  # a history before the dashboard is first looked at
        claim_a_day_of_rows(start - timedelta(days=back))
    for n in range(12):
        today_start = start + timedelta(days=n)
        with time_machine.travel(today_start.replace(hour=23, minute=59), tick=False):
            claim_a_day_of_rows(today_start.replace(hour=0))
            today = timezone.localdate()
            days = window(10, today)
            expected_claims, expected_sent = whole_ledger(days)

            assert ledger_days.claimed_per_day(days, today) == expected_claims, f"day {n}"
            assert ledger_days.sent_per_day(days, today) == expected_sent, f"day {n}"

    assert DeliveryDay.objects.count() == 19  # 9 days before the start to 9 after: each window but its live two


def test_the_live_days_are_read_from_the_rows_claimed_since_the_last_kept_day():
    """Without an index on the claim time, only the primary key keeps the ledger's older rows
    out of the live count."""
    with time_machine.travel(WEDNESDAY, tick=False):
        edition = EditionFactory(date=WEDNESDAY.date())
        claim(edition, timezone.now() - timedelta(days=4))
        claim(edition, timezone.now())
        today = timezone.localdate()
        ledger_days.claimed_per_day(window(7, today), today)  # keeps the settled days
        live = ledger_days.claim_groups(today - timedelta(days=1))
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = live.explain()

    assert "digest_delivery_pkey" in plan
    assert [(day, status, n) for day, status, n, _ in live] == [(WEDNESDAY.date(), "sent", 1)]


def test_before_any_day_is_kept_the_days_are_read_from_the_first_row_claimed_since():
    """The first view of the dashboard counts its window, not the ledger's months before it."""
    with time_machine.travel(WEDNESDAY, tick=False):
        edition = EditionFactory(date=WEDNESDAY.date())
        claim(edition, timezone.now() - timedelta(days=40))
        first_in_window = claim(edition, timezone.now() - timedelta(days=3))
        claim(edition, timezone.now())
        counted = ledger_days.claim_groups(timezone.localdate() - timedelta(days=5))
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = counted.explain()

    assert not DeliveryDay.objects.exists()
    assert "digest_delivery_pkey" in plan and f"(id >= {first_in_window.pk})" in plan
    assert sum(n for _, _, n, _ in counted) == 2


def test_a_kept_day_deleted_in_the_admin_is_counted_again_from_the_ledger(admin_client):
    with time_machine.travel(WEDNESDAY, tick=False):
        edition = EditionFactory(date=WEDNESDAY.date())
        three_days_ago = timezone.now() - timedelta(days=3)
        claimed = claim(edition, three_days_ago, "sending", sent_after=None)
        today = timezone.localdate()
        days = window(7, today)
        before = ledger_days.claimed_per_day(days, today)[three_days_ago.date()]
        Delivery.objects.filter(pk=claimed.pk).update(status="sent", sent_at=timezone.now() - timedelta(days=3))
        kept = DeliveryDay.objects.get(day=three_days_ago.date())

        changing = admin_client.get(f"/admin/digest/deliveryday/{kept.pk}/change/")
        deleted = admin_client.post(f"/admin/digest/deliveryday/{kept.pk}/delete/", {"post": "yes"})
        after = ledger_days.claimed_per_day(days, today)[three_days_ago.date()]

    assert before == {"sending": 1} and after == {"sent": 1}
    assert changing.status_code == 200 and b'name="claimed"' not in changing.content  # read only
    assert deleted.status_code == 302


def test_the_first_row_claimed_since_a_moment_is_found_through_the_primary_key(django_assert_max_num_queries):
    with time_machine.travel(WEDNESDAY, tick=False):
        edition = EditionFactory(date=WEDNESDAY.date())
        start = timezone.now() - timedelta(days=10)
        rows = [claim(edition, start + timedelta(hours=3 * i)) for i in range(80)]
        Delivery.objects.filter(pk__in=[row.pk for row in rows[20:45]]).delete()  # a gap in the ids
        kept = rows[:20] + rows[45:]
        moments = [
            start - timedelta(days=1), start, rows[7].created_at + timedelta(minutes=1), rows[19].created_at,
            rows[30].created_at, rows[45].created_at - timedelta(seconds=1), rows[-1].created_at,
            rows[-1].created_at + timedelta(seconds=1),
        ]
        expected = [min((row.pk for row in kept if row.created_at >= moment), default=None) for moment in moments]
        found = []
        span = rows[-1].pk - rows[0].pk + 1
        for moment in moments:
            with django_assert_max_num_queries(2 + span.bit_length()):  # bounds, the last row, a binary search
                found.append(ledger_days.first_id_claimed_since(moment))

    assert found == expected
    assert found[0] == rows[0].pk and found[4] == rows[45].pk and found[-1] is None


def test_no_row_claimed_since_a_moment_in_an_empty_ledger():
    assert ledger_days.first_id_claimed_since(WEDNESDAY) is None
    assert not ledger_days.claimed_after(WEDNESDAY).exists()


def test_the_rows_claimed_after_a_moment_are_read_by_a_range_of_the_primary_key():
    with time_machine.travel(WEDNESDAY, tick=False):
        edition = EditionFactory(date=WEDNESDAY.date())
        claim(edition, timezone.now() - timedelta(days=5), status="pending")
        recent = claim(edition, timezone.now() - timedelta(hours=1), status="pending")
        after = ledger_days.claimed_after(timezone.now() - timedelta(days=2))
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = after.explain()

    assert "digest_delivery_pkey" in plan and f"(id >= {recent.pk})" in plan
    assert list(after) == [recent]
