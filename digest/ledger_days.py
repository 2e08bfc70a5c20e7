"""The ledger counted per day for the dashboard: settled days once, the last ones live.

The dashboard charts digests claimed per day (by status) and digests sent per
day. Counted from the ledger on every view, that read every row the ledger
ever had: it grows by a row per reader and digest, and an index on
``created_at`` or ``sent_at`` would be written on each version of every row.
Instead:

- a day SETTLE_DAYS old is settled (its claims and sends are done, their
  statuses final in practice): it is counted once, when a view first needs it,
  and kept as a ``DeliveryDay``;
- the days after the last kept one are counted live, from the rows claimed
  since, which are found through the primary key: each kept day holds the
  lowest id of the rows claimed after it (ids are handed out in order, so a
  row claimed later never gets a lower one); before any day is kept, a
  binary search over ids finds the first row claimed since a moment.

A row that changes status after its day was counted (a retry two days late)
is not counted again; bounces and complaints, which arrive for days, are
counted live elsewhere (``dashboard.rate_history``).
"""

from collections import Counter
from datetime import datetime, time, timedelta

from django.db.models import Count, Max, Min
from django.db.models.functions import TruncDate
from django.utils import timezone

from .models import Delivery, DeliveryDay

SETTLE_DAYS = 2  # today and yesterday are counted live
LATE_SEND_DAYS = 1  # a digest is sent at most a day after its claim (a send that runs past midnight)


def local_midnight(day):
    return timezone.make_aware(datetime.combine(day, time.min))


def claimed_per_day(days, today):
    """{day: Counter(status)} of the deliveries claimed on each of ``days`` (ascending)."""
    kept, live = settled_and_live(days, today)
    counts = {day: Counter(row.claimed) for day, row in kept.items()}
    if live:
        counts.update(count_claims(live[0]))
    return {day: counts.get(day, Counter()) for day in days}


def sent_per_day(days, today):
    """{day: digests sent that day} for each of ``days`` (ascending)."""
    kept, live = settled_and_live(days, today)
    counts = {day: row.sent for day, row in kept.items()}
    if live:
        counts.update(count_sent(live[0], live[-1]))
    return {day: counts.get(day, 0) for day in days}


def settled_and_live(days, today):
    """The kept counts of the settled ``days`` ({day: DeliveryDay}, counting the ones not kept
    yet) and the days still counted live."""
    first_live = today - timedelta(days=SETTLE_DAYS - 1)
    settled = [day for day in days if day < first_live]
    kept = {row.day: row for row in DeliveryDay.objects.filter(day__in=settled)}
    missing = [day for day in settled if day not in kept]
    if missing:
        kept.update(settle(missing))
    return kept, [day for day in days if day >= first_live]


def settle(days):
    """Count ``days`` (ascending, all settled) from the ledger and keep them; {day: DeliveryDay}."""
    groups = list(claim_groups(days[0]))
    sent = count_sent(days[0], days[-1])
    after_all = (Delivery.objects.aggregate(top=Max("pk"))["top"] or 0) + 1
    counted = [
        DeliveryDay(
            day=day,
            claimed={status: n for claimed_on, status, n, _ in groups if claimed_on == day},
            sent=sent.get(day, 0),
            next_delivery_id=min((low for claimed_on, _, _, low in groups if claimed_on > day), default=after_all),
        )
        for day in days
    ]
    DeliveryDay.objects.bulk_create(counted, ignore_conflicts=True)  # a view counting beside this one
    return {row.day: row for row in counted}


def claimed_since(day):
    """The deliveries that may have been claimed on ``day`` or later: from the id kept with the
    closest kept day before it or, while none is kept, from the first row claimed since its
    midnight (``claimed_after``)."""
    start = (
        DeliveryDay.objects.filter(day__lt=day).order_by("-day").values_list("next_delivery_id", flat=True).first()
    )
    if start is None:
        return claimed_after(local_midnight(day))
    return Delivery.objects.filter(pk__gte=start)


def first_id_claimed_since(moment):
    """The lowest id of the rows claimed at ``moment`` or later, None when there are none.

    Found through the primary key alone, with no index on the claim time: as ids are handed
    out in claim order, the claim time of the first row at or after an id grows with the id,
    so a binary search over ids finds it in about 30 index lookups at a billion rows.
    """
    rows = Delivery.objects.order_by("pk").values_list("pk", "created_at")
    bounds = Delivery.objects.aggregate(low=Min("pk"), high=Max("pk"))
    low, high = bounds["low"], bounds["high"]
    if high is None or rows.get(pk=high)[1] < moment:
        return None
    first = high
    while low < high:  # the first row at or after ``high`` is ``first``, claimed since ``moment``
        middle = (low + high) // 2
        found, claimed_at = rows.filter(pk__gte=middle).first()
        if claimed_at >= moment:
            high, first = middle, found
        else:
            low = middle + 1
    return first


def claimed_after(moment):
    """The rows claimed at ``moment`` or later, reached through the primary key."""
    first = first_id_claimed_since(moment)
    if first is None:
        return Delivery.objects.none()
    return Delivery.objects.filter(pk__gte=first, created_at__gte=moment)


def claim_groups(first):
    """(day, status, rows, lowest id) of the deliveries claimed on ``first`` or later."""
    return (
        claimed_since(first)
        .filter(created_at__gte=local_midnight(first))
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "status")
        .annotate(n=Count("pk"), low=Min("pk"))
        .order_by()
    )


def count_claims(first):
    counts = {}
    for day, status, n, _ in claim_groups(first):
        counts.setdefault(day, Counter())[status] = n
    return counts


def count_sent(first, last):
    """{day: digests sent that day} from ``first`` to ``last``."""
    earliest_claim = first - timedelta(days=LATE_SEND_DAYS)
    return dict(
        claimed_since(earliest_claim)
        .filter(
            status=Delivery.Status.SENT,
            sent_at__gte=local_midnight(first),
            sent_at__lt=local_midnight(last + timedelta(days=1)),
        )
        .annotate(day=TruncDate("sent_at"))
        .values_list("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
