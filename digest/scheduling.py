"""Who is due for a digest now, in their own time zone.

A subscriber is due for the current edition of their cadence when their
local date has reached the day they get it (``send_day``: the edition's date,
or the day after for readers far east of the edition clock), their local
clock has reached their send hour (or their local date is already past that
day), and they have no delivery for that edition. West of the edition clock a
reader's day ends after the clock has moved on to the next edition: while
their local date is still the previous edition's, that edition is the one
they are due for once their send hour comes (``due_editions``). Each time
zone in use is read in pages by id: subscribers are never all loaded at once.
"""

import enum
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from config.paging import pages_after
from subscriptions.models import Subscriber

from .editions import edition_date_for
from .models import Edition, Delivery

PAGE_SIZE = 5000


def current_edition(cadence, now=None):
    """The built edition of ``cadence`` current at ``now`` on the edition clock, if any."""
    today = timezone.localdate(now or timezone.now())
    return Edition.objects.filter(cadence=cadence, date=edition_date_for(cadence, today)).first()


def previous_edition(cadence, now=None):
    """The built edition of ``cadence`` before the current one at ``now``, if any."""
    current_date = edition_date_for(cadence, timezone.localdate(now or timezone.now()))
    previous_date = edition_date_for(cadence, current_date - timedelta(days=1))
    return Edition.objects.filter(cadence=cadence, date=previous_date).first()


def local_now(tz_name, now):
    return now.astimezone(zone_info(tz_name))


@lru_cache(maxsize=1024)
def zone_info(tz_name):
    """``ZoneInfo(tz_name)`` (UTC for a name it does not know), kept: ZoneInfo itself keeps only
    the last few zones it was asked for, and a tick asks for every zone in use, twice."""
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def daily_job_in(tz_name, day):
    """When the daily job is scheduled on ``day`` (``DAILY_JOB_HOUR`` on the edition clock), as a
    naive local time in ``tz_name``."""
    job = timezone.make_aware(datetime.combine(day, time(settings.DAILY_JOB_HOUR)))
    return local_now(tz_name, job).replace(tzinfo=None)


def send_day(edition_date, tz_name, send_hour):
    """The reader's local date on which the edition of ``edition_date`` comes at their send hour.

    It is the edition's date, unless the daily job that builds it is scheduled more than
    ``DIGEST_SAME_DAY_HOURS`` after the reader's hour on that date: far east of the edition
    clock (07:00 in Tokyo is 22:00 UTC the day before, and a job at 06:00 UTC is 15:00 there)
    the reader gets it at their hour the next day, in their morning rather than their
    afternoon. The job's schedule decides, not when the edition happened to be built, so a
    reader's day is known before it is built and a late build moves nobody's day."""
    return _send_day(edition_date, send_hour, earliest_same_day_hour(edition_date, tz_name))


def earliest_same_day_hour(edition_date, tz_name):
    """The earliest local time in ``tz_name`` on ``edition_date`` at which a send hour still gets
    that day's edition the same day: the daily job's time less ``DIGEST_SAME_DAY_HOURS``."""
    return daily_job_in(tz_name, edition_date) - timedelta(hours=settings.DIGEST_SAME_DAY_HOURS)


def _send_day(edition_date, send_hour, earliest):
    """``send_day`` with the zone's ``earliest_same_day_hour`` worked out."""
    if datetime.combine(edition_date, time(send_hour)) < earliest:
        return edition_date + timedelta(days=1)
    return edition_date


def published_after_their_morning(subscriber, today=None):
    """The local time at which the daily job publishes each edition, when it comes too long
    after the reader's send hour for them to get it that day (``send_day``); else None. The
    preferences page tells them why each edition reaches them the next morning."""
    day = today or timezone.localdate()
    if send_day(day, subscriber.timezone, subscriber.send_hour) == day:
        return None
    return daily_job_in(subscriber.timezone, day).time()


def hour_reached(local, day, send_hour):
    """Whether the local time ``local`` is at or past ``send_hour`` on ``day``."""
    return local.date() > day or (local.date() == day and local.hour >= send_hour)


class NextDigest(enum.Enum):
    """When a reader's next digest goes out (``next_digest``)."""

    NOW = "now"  # at the beat's next tick, within a quarter of an hour
    WITH_EDITION = "with_edition"  # as soon as the current edition is built
    AT_SEND_HOUR = "at_send_hour"


class UpcomingDigest(NamedTuple):
    """A reader's next digest (``upcoming_digest``)."""

    when: NextDigest
    day: date | None = None  # with AT_SEND_HOUR: the reader's local date it comes on
    edition: Edition | None = None  # with NOW: the edition on its way (``edition_on_its_way``)


def next_digest(subscriber, now=None):
    """When ``subscriber`` gets their next digest (``upcoming_digest``)."""
    return upcoming_digest(subscriber, now).when


def next_send_date(subscriber, now=None):
    """The reader's local date of their next digest when it comes at their send hour
    (``upcoming_digest``)."""
    return upcoming_digest(subscriber, now).day


def upcoming_digest(subscriber, now=None):
    """When ``subscriber`` gets their next digest, by the rule of ``due_editions`` for one
    reader: with the edition on its way when that is now, with the local date it comes on
    when that is at their send hour.

    They are due now when the beat's next tick would send them an edition
    (``edition_on_its_way``, the beat's own rule). When their hour has come on the day they get
    the current edition (``send_day``) but it is not built yet, their digest comes as soon as
    it is. Otherwise their digest comes at their hour: today while their hour is still to come
    on the previous edition's day (and they have not had it), else on the current edition's
    day, or the next edition's once they have had the current one."""
    now = now or timezone.now()
    on_its_way = edition_on_its_way(subscriber, now)
    if on_its_way is not None:
        return UpcomingDigest(NextDigest.NOW, edition=on_its_way)
    zone, hour = subscriber.timezone, subscriber.send_hour
    local = local_now(zone, now)
    previous = previous_edition(subscriber.frequency, now)
    edition = current_edition(subscriber.frequency, now)
    previous_day = previous and send_day(previous.date, zone, hour)
    on_previous_day = previous is not None and local.date() == previous_day
    had_current = edition is not None and has_delivery(edition, subscriber)
    if not (on_previous_day and local.hour >= hour):
        edition_date = edition.date if edition else edition_date_for(subscriber.frequency, timezone.localdate(now))
        if edition is None and hour_reached(local, send_day(edition_date, zone, hour), hour):
            return UpcomingDigest(NextDigest.WITH_EDITION)
        if on_previous_day and not has_delivery(previous, subscriber):
            return UpcomingDigest(NextDigest.AT_SEND_HOUR, previous_day)
    day = edition_date_for(subscriber.frequency, timezone.localdate(now))
    if had_current:
        day = next_edition_date(subscriber.frequency, day)
    return UpcomingDigest(NextDigest.AT_SEND_HOUR, max(send_day(day, zone, hour), local.date()))


def edition_on_its_way(subscriber, now=None):
    """The edition the beat's next tick sends ``subscriber`` when their digest is due now
    (``NextDigest.NOW``), else None: by the beat's own rule (``due_editions``), so the page that
    names it names what comes. Far east of the edition clock, in the afternoon, that is the
    previous edition, the one their zone got that morning, not the one just built."""
    now = now or timezone.now()
    zone, cadence = subscriber.timezone, subscriber.frequency
    local = local_now(zone, now)
    for edition, on_its_date_only in ((previous_edition(cadence, now), True), (current_edition(cadence, now), False)):
        if edition is None or subscriber.send_hour not in due_send_hours(edition.date, zone, local, on_its_date_only):
            continue
        if not has_delivery(edition, subscriber):
            return edition
    return None


def next_edition_date(cadence, day):
    """The date of the first edition of ``cadence`` after the one of ``day``."""
    following = edition_date_for(cadence, day) + timedelta(days=1)
    while edition_date_for(cadence, following) != following:
        following += timedelta(days=1)
    return following


def has_delivery(edition, subscriber):
    return Delivery.objects.filter(edition=edition, subscriber=subscriber).exists()


def active_readers_of(cadence):
    """The active subscribers of ``cadence`` (``time_zones_in_use`` writes the same in SQL)."""
    return Subscriber.objects.filter(status=Subscriber.Status.ACTIVE, frequency=cadence)


def due_editions(cadence, now=None):
    """The built editions of ``cadence`` with readers due at ``now``, each with their ids:
    ``(edition, ids)`` for the previous edition, then for the current one.

    The edition clock moves on to the next edition at its own midnight, and its daily job
    builds that edition a few hours later; a reader far enough west is then still in the
    previous edition's day, their send hour to come (20:00 in Los Angeles is 04:00 UTC the
    next day; 23:00 in Pago Pago is 10:00 UTC, after the next edition is built). They are
    due for the previous edition when their hour comes on its date, and for the current one
    on its date: one digest per edition, each at their hour. A reader whose date is past the
    previous edition's is due for the current one only, so a newcomer never gets two at once.
    """
    now = now or timezone.now()
    previous = previous_edition(cadence, now)
    if previous is not None:
        yield previous, due_subscriber_ids(previous, now, on_its_date_only=True)
    current = current_edition(cadence, now)
    if current is not None:
        yield current, due_subscriber_ids(current, now)


def due_subscriber_ids(edition, now=None, *, on_its_date_only=False):
    """Yield the ids of active subscribers due for ``edition`` at ``now``.

    ``on_its_date_only``: only those whose local date is the day they get it (the previous
    edition's readers, ``due_editions``)."""
    now = now or timezone.now()
    readers = active_readers_of(edition.cadence)
    for tz_name in time_zones_in_use(edition.cadence):
        hours = due_send_hours(edition.date, tz_name, local_now(tz_name, now), on_its_date_only)
        if not hours:
            continue
        in_zone = readers.filter(timezone=tz_name)
        if len(hours) < 24:
            in_zone = in_zone.filter(send_hour__in=hours)
        yield from unserved_ids_in_pages(in_zone, edition)


def due_send_hours(edition_date, tz_name, local, on_its_date_only=False):
    """The send hours at which a reader in ``tz_name`` is due for the edition of
    ``edition_date`` at the local time ``local`` (``on_its_date_only``: on the day they get it)."""
    earliest = earliest_same_day_hour(edition_date, tz_name)
    hours = []
    for hour in range(24):
        day = _send_day(edition_date, hour, earliest)
        if hour_reached(local, day, hour) and not (on_its_date_only and local.date() > day):
            hours.append(hour)
    return hours


def unserved_ids_in_pages(readers, edition):
    """The ids of ``readers`` without a delivery of ``edition``, in id order, ``PAGE_SIZE`` at a time.

    Each page is its own short query that walks an index from the last id of the page before
    (``subscriber_due_idx``, or the primary key's when the zone holds nearly every reader), so
    the first ids come at once and no cursor stays open while the caller claims them. (Django's
    server-side cursor is declared ``WITH HOLD`` outside a transaction, and PostgreSQL then
    computes the whole zone before the first fetch: 0.2–0.5 s for a zone of a million readers.)

    The deliveries looked at are bounded by the same last id. The caller claims each page's
    readers before it asks for the next, so the edition's deliveries grow behind the pages:
    unbounded, a page's anti-join could read all of them (a hash or merge join over every
    claim so far, quadratic over a tick). A reader claimed elsewhere meanwhile is not yielded."""

    def read_page(last):
        served = Delivery.objects.filter(edition=edition, subscriber=OuterRef("pk"), subscriber__gt=last)
        unserved = readers.filter(pk__gt=last).filter(~Exists(served))
        return list(unserved.order_by("pk").values_list("pk", flat=True)[:PAGE_SIZE])

    return pages_after(read_page, PAGE_SIZE, key=int, last=0)


def time_zones_in_use(cadence):
    """The time zones of the active subscribers of ``cadence``, in order.

    Deliveries are not looked at here: a zone whose readers all have one yields no id
    in ``due_subscriber_ids``. On PostgreSQL the zones are read by hopping from one to
    the next along ``subscriber_due_idx``, one index probe per zone (a recursive query:
    PostgreSQL has no skip scan). A ``DISTINCT`` reads every reader's entry instead,
    0.2–0.4 s at a million readers on every beat tick.
    """
    if connection.vendor != "postgresql":
        return time_zones_in_use_by_orm(cadence)
    readers = f"FROM {Subscriber._meta.db_table} AS s WHERE s.status = %s AND s.frequency = %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE z(timezone) AS ((SELECT s.timezone {readers} ORDER BY s.timezone LIMIT 1) "
            f"UNION ALL SELECT (SELECT s.timezone {readers} AND s.timezone > z.timezone "
            "ORDER BY s.timezone LIMIT 1) FROM z WHERE z.timezone IS NOT NULL) "
            "SELECT timezone FROM z WHERE timezone IS NOT NULL",
            [Subscriber.Status.ACTIVE, cadence] * 2,
        )
        return [row[0] for row in cursor.fetchall()]


def time_zones_in_use_by_orm(cadence):
    """``time_zones_in_use`` as one ``DISTINCT`` (SQLite, and the check of the query above)."""
    return list(active_readers_of(cadence).order_by("timezone").values_list("timezone", flat=True).distinct())


def end_of_day(day):
    return timezone.make_aware(datetime.combine(day, time(23, 59)))
