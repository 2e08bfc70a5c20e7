"""Who is due when: each subscriber's own time zone and send hour, across DST changes."""

from datetime import UTC, date, datetime, time, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from digest import scheduling, services, tasks
from digest.editions import edition_date_for
from digest.models import Delivery, Edition
from digest.scheduling import current_edition, due_subscriber_ids, time_zones_in_use, time_zones_in_use_by_orm
from digest.sending import claim_deliveries
from subscriptions.models import Subscriber
from tests.digest.builders import built_edition
from tests.factories import EditionFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def at(*args):
    return datetime(*args, tzinfo=UTC)


def due(edition, now):
    return set(due_subscriber_ids(edition, now))


def test_a_subscriber_is_due_once_their_local_send_hour_has_come():
    edition = EditionFactory(date=date(2026, 11, 18))  # Wednesday; New York is on EST (UTC-5)
    new_york = SubscriberFactory(timezone="America/New_York", send_hour=7)
    assert new_york.pk not in due(edition, at(2026, 11, 18, 11, 59))
    assert new_york.pk in due(edition, at(2026, 11, 18, 12, 0))


def test_time_zones_ahead_and_behind_the_edition_clock():
    edition = EditionFactory(date=date(2026, 11, 18))
    tokyo = SubscriberFactory(timezone="Asia/Tokyo", send_hour=16)  # UTC+9: the job (06:00 UTC) is 15:00
    kiritimati = SubscriberFactory(timezone="Pacific/Kiritimati", send_hour=23)  # UTC+14
    honolulu = SubscriberFactory(timezone="Pacific/Honolulu", send_hour=0)  # UTC-10
    now = at(2026, 11, 18, 9, 0)  # Tokyo 18:00, Kiritimati 23:00, Honolulu 23:00 the day before
    assert due(edition, now) == {tokyo.pk, kiritimati.pk}
    assert honolulu.pk in due(edition, at(2026, 11, 18, 10, 0))  # midnight in Honolulu


def test_a_reader_far_east_whose_hour_comes_long_before_the_daily_job_gets_it_the_next_morning():
    """07:00 in Tokyo is 22:00 UTC the day before: the job at 06:00 UTC is 15:00 there, eight hours
    after their hour. They get the edition at 07:00 the next day, not in their afternoon."""
    edition = EditionFactory(date=date(2026, 11, 18))  # Wednesday
    tokyo = SubscriberFactory(timezone="Asia/Tokyo", send_hour=7)
    assert tokyo.pk not in due(edition, at(2026, 11, 18, 6, 15))  # 15:15 in Tokyo, the edition just built
    assert tokyo.pk not in due(edition, at(2026, 11, 18, 21, 59))
    assert tokyo.pk in due(edition, at(2026, 11, 18, 22, 0))  # 07:00 on Thursday there
    assert scheduling.next_digest(tokyo, at(2026, 11, 18, 6, 15)) is scheduling.NextDigest.AT_SEND_HOUR
    assert scheduling.next_send_date(tokyo, at(2026, 11, 18, 6, 15)) == date(2026, 11, 19)


@pytest.mark.parametrize(
    "zone, hour, same_day",
    [
        ("Europe/Berlin", 6, True),  # the job is 07:00 there: an hour late, the same morning
        ("Asia/Kolkata", 7, True),  # 11:30: four and a half hours
        ("Asia/Kolkata", 5, False),  # six and a half hours after their hour
        ("Asia/Shanghai", 7, False),  # 14:00: seven hours
        ("Australia/Sydney", 7, False),  # 17:00 (AEDT)
        ("Asia/Tokyo", 9, True),  # 15:00: six hours, the most that stays the same day
        ("Asia/Tokyo", 8, False),
        ("UTC", 0, True),  # the job at 06:00 is six hours after midnight
        ("America/Los_Angeles", 7, True),  # west of the clock the job comes before their day begins
    ],
)
def test_how_long_after_a_readers_hour_the_job_may_come_and_still_be_that_days(zone, hour, same_day):
    day = date(2026, 11, 18)
    assert scheduling.send_day(day, zone, hour) == (day if same_day else day + timedelta(days=1))


def test_the_same_day_window_is_a_setting(settings):
    edition = EditionFactory(date=date(2026, 11, 18))
    tokyo = SubscriberFactory(timezone="Asia/Tokyo", send_hour=7)
    settings.DIGEST_SAME_DAY_HOURS = 24  # every reader gets each edition on its date, built or not yet
    assert tokyo.pk in due(edition, at(2026, 11, 18, 9, 0))
    settings.DIGEST_SAME_DAY_HOURS = 8
    assert tokyo.pk in due(edition, at(2026, 11, 18, 9, 0))
    settings.DIGEST_SAME_DAY_HOURS = 7
    assert tokyo.pk not in due(edition, at(2026, 11, 18, 9, 0))
    settings.DAILY_JOB_HOUR = 0  # a job at midnight UTC is 09:00 in Tokyo: two hours after theirs
    assert tokyo.pk in due(edition, at(2026, 11, 18, 9, 0))


def test_a_newcomer_far_east_gets_the_previous_edition_that_morning_and_the_current_one_the_next():
    """A reader who joins in Tokyo's morning, after everyone else there had Tuesday's edition at
    07:00, gets it at once; Wednesday's, built that afternoon, comes on Thursday at 07:00."""
    tuesday = EditionFactory(date=date(2026, 11, 17))
    wednesday = EditionFactory(date=date(2026, 11, 18))
    tokyo = SubscriberFactory(timezone="Asia/Tokyo", send_hour=7)
    morning, afternoon = at(2026, 11, 18, 1, 0), at(2026, 11, 18, 7, 0)  # 10:00 and 16:00 in Tokyo
    with mock.patch.object(scheduling, "current_edition", lambda cadence, now=None: None):
        assert set(due_subscriber_ids(tuesday, morning, on_its_date_only=True)) == {tokyo.pk}
    assert set(due_subscriber_ids(tuesday, afternoon, on_its_date_only=True)) == {tokyo.pk}
    assert tokyo.pk not in due(wednesday, afternoon)
    assert tokyo.pk in due(wednesday, at(2026, 11, 18, 22, 0))


def test_a_local_date_already_past_the_edition_is_due_whatever_the_hour():
    edition = EditionFactory(date=date(2026, 11, 18))
    kiritimati = SubscriberFactory(timezone="Pacific/Kiritimati", send_hour=23)
    assert kiritimati.pk in due(edition, at(2026, 11, 18, 11, 0))  # 01:00 on the 19th there


@pytest.mark.parametrize(
    "edition_day, before, after",
    [
        (date(2026, 11, 18), at(2026, 11, 18, 11, 59), at(2026, 11, 18, 12, 0)),  # EST: 07:00 is 12:00 UTC
        (date(2026, 3, 9), at(2026, 3, 9, 10, 59), at(2026, 3, 9, 11, 0)),  # EDT since Mar 8: 11:00 UTC
    ],
)
def test_the_send_hour_follows_daylight_saving_time(edition_day, before, after):
    edition = EditionFactory(date=edition_day)
    new_york = SubscriberFactory(timezone="America/New_York", send_hour=7)
    assert new_york.pk not in due(edition, before)
    assert new_york.pk in due(edition, after)


def test_a_send_hour_skipped_by_the_spring_forward_is_honoured_at_the_next_hour():
    edition = EditionFactory(date=date(2026, 3, 8))  # New York jumps from 02:00 to 03:00
    new_york = SubscriberFactory(timezone="America/New_York", send_hour=2)
    assert new_york.pk not in due(edition, at(2026, 3, 8, 6, 59))  # 01:59 EST
    assert new_york.pk in due(edition, at(2026, 3, 8, 7, 0))  # 03:00 EDT


def test_the_hour_repeated_in_autumn_claims_the_subscriber_once():
    edition = EditionFactory(date=date(2026, 10, 25))  # London: 01:00-02:00 happens twice
    london = SubscriberFactory(timezone="Europe/London", send_hour=1)
    first_pass, second_pass = at(2026, 10, 25, 0, 30), at(2026, 10, 25, 1, 30)  # both 01:30 local
    assert london.pk in due(edition, first_pass)
    claim_deliveries(edition, [london.pk])
    assert london.pk not in due(edition, second_pass)


def test_only_subscribers_of_the_editions_cadence_and_without_a_delivery_are_due():
    edition = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    daily = SubscriberFactory(frequency="daily")
    SubscriberFactory(frequency="weekly")
    SubscriberFactory(frequency="daily", status="paused")
    served = SubscriberFactory(frequency="daily")
    Delivery.objects.create(subscriber=served, edition=edition, status="sent")
    assert due(edition, at(2026, 11, 18, 12, 0)) == {daily.pk}


def test_the_time_zones_in_use_are_the_cadences_active_readers_each_once_in_order():
    for zone in ["Europe/Paris", "Asia/Tokyo", "Europe/Paris", "America/New_York", "Asia/Tokyo"]:
        SubscriberFactory(frequency="daily", timezone=zone)
    SubscriberFactory(frequency="weekly", timezone="Pacific/Honolulu")
    SubscriberFactory(frequency="daily", status="unsubscribed", timezone="Africa/Lagos")  # before the first
    SubscriberFactory(frequency="daily", status="paused", timezone="Europe/Berlin")  # between two
    SubscriberFactory(frequency="weekly", timezone="Australia/Sydney")
    expected = ["America/New_York", "Asia/Tokyo", "Europe/Paris"]
    assert time_zones_in_use("daily") == expected
    assert list(time_zones_in_use_by_orm("daily")) == expected
    assert time_zones_in_use("weekly") == ["Australia/Sydney", "Pacific/Honolulu"]
    Subscriber.objects.filter(frequency="weekly").update(status="paused")
    assert time_zones_in_use("weekly") == []


def test_a_zone_whose_readers_all_have_their_digest_yields_no_one_and_the_others_still_do():
    edition = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    served = [SubscriberFactory(timezone="Asia/Tokyo", send_hour=9) for _ in range(2)]
    claim_deliveries(edition, [s.pk for s in served])
    waiting = SubscriberFactory(timezone="Europe/Paris", send_hour=7)
    assert due(edition, at(2026, 11, 18, 12, 0)) == {waiting.pk}


def test_a_zone_of_several_pages_yields_each_due_reader_once_in_id_order(monkeypatch):
    monkeypatch.setattr(scheduling, "PAGE_SIZE", 2)
    edition = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    paris = [SubscriberFactory(timezone="Europe/Paris", send_hour=7).pk for _ in range(5)]
    tokyo = [SubscriberFactory(timezone="Asia/Tokyo", send_hour=9).pk for _ in range(4)]
    SubscriberFactory(timezone="Europe/Paris", send_hour=7, status="paused")
    assert list(due_subscriber_ids(edition, at(2026, 11, 18, 12, 0))) == sorted(tokyo) + sorted(paris)


def test_the_ids_are_read_a_page_at_a_time_so_a_reader_claimed_meanwhile_is_not_yielded(monkeypatch):
    monkeypatch.setattr(scheduling, "PAGE_SIZE", 2)
    edition = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    readers = [SubscriberFactory(timezone="Europe/Paris", send_hour=7).pk for _ in range(5)]
    ids = due_subscriber_ids(edition, at(2026, 11, 18, 12, 0))
    first_page = [next(ids), next(ids)]
    claim_deliveries(edition, readers[2:4])
    assert first_page + list(ids) == [readers[0], readers[1], readers[4]]


def test_each_page_checks_only_the_deliveries_after_the_page_before(monkeypatch):
    """The tick claims each page before it reads the next: a page that looked at every delivery
    of the edition would read all the claims made so far (quadratic over a tick, minutes at a
    million readers; docs/performance-log.md). No behaviour shows it, so the query is checked."""
    monkeypatch.setattr(scheduling, "PAGE_SIZE", 2)
    edition = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    readers = [SubscriberFactory(timezone="Europe/Paris", send_hour=7).pk for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        assert list(due_subscriber_ids(edition, at(2026, 11, 18, 12, 0))) == readers
    pages = [q["sql"] for q in queries if "digest_delivery" in q["sql"]]
    assert len(pages) == 2
    assert f'U0."subscriber_id" > {readers[1]})' in pages[1]


def test_on_a_saturday_the_current_daily_edition_is_fridays():
    friday = EditionFactory(date=date(2026, 11, 20), cadence="daily")
    assert current_edition("daily", at(2026, 11, 21, 9, 0)) == friday
    assert current_edition("weekly", at(2026, 11, 21, 9, 0)) is None


def test_each_beat_tick_claims_and_sends_only_who_is_due_and_never_twice(mailoutbox):
    with time_machine.travel(at(2026, 11, 18, 6, 0), tick=False):
        built_edition("daily")
    london = SubscriberFactory(timezone="Europe/London", send_hour=7, interests="")
    new_york = SubscriberFactory(timezone="America/New_York", send_hour=7, interests="")

    with time_machine.travel(at(2026, 11, 18, 7, 15), tick=False):
        first = services.enqueue_due_digests()
        again = services.enqueue_due_digests()
    with time_machine.travel(at(2026, 11, 18, 12, 15), tick=False):
        later = services.enqueue_due_digests()

    assert (first, again, later) == (1, 0, 1)
    assert [m.to[0] for m in mailoutbox] == [london.email, new_york.email]
    assert Delivery.objects.filter(status="sent").count() == 2


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(2026, 11, 18, 11, 59), False),  # 06:59 in New York, the edition's day: not yet
        (at(2026, 11, 18, 12, 0), True),  # 07:00 there
        (at(2026, 11, 21, 9, 0), True),  # Saturday 04:00 there: Friday's edition, whatever the hour
    ],
)
def test_one_reader_is_due_now_by_the_same_rule_as_the_beats(moment, expected):
    reader = SubscriberFactory(timezone="America/New_York", send_hour=7)
    EditionFactory(date=date(2026, 11, 18) if moment.day == 18 else date(2026, 11, 20), cadence="daily")
    with time_machine.travel(moment, tick=False):
        edition = current_edition("daily")
        now = scheduling.next_digest(reader) is scheduling.NextDigest.NOW
        assert now is expected
        assert (reader.pk in due(edition, moment)) is expected


def test_a_reader_past_their_hour_gets_the_edition_once_it_is_built_and_only_once():
    reader = SubscriberFactory(timezone="UTC", send_hour=7)
    moment = at(2026, 11, 18, 9, 0)
    assert scheduling.next_digest(reader, moment) is scheduling.NextDigest.WITH_EDITION
    assert scheduling.next_digest(reader, at(2026, 11, 18, 6, 0)) is scheduling.NextDigest.AT_SEND_HOUR
    edition = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    assert scheduling.next_digest(reader, moment) is scheduling.NextDigest.NOW
    claim_deliveries(edition, [reader.pk])
    assert scheduling.next_digest(reader, moment) is scheduling.NextDigest.AT_SEND_HOUR


def test_a_reader_whose_evening_falls_after_midnight_on_the_edition_clock_is_due_for_that_days_edition():
    tuesday = EditionFactory(date=date(2026, 11, 17), cadence="daily")
    los_angeles = SubscriberFactory(timezone="America/Los_Angeles", send_hour=20)  # UTC-8
    now = at(2026, 11, 18, 4, 0)  # 20:00 on Tuesday there; Wednesday's edition is not built yet
    assert dict((edition, set(ids)) for edition, ids in scheduling.due_editions("daily", now)) == {
        tuesday: {los_angeles.pk}
    }
    assert scheduling.next_digest(los_angeles, now) is scheduling.NextDigest.NOW


def test_a_reader_still_in_the_previous_editions_day_gets_it_at_their_hour_after_the_next_is_built():
    tuesday = EditionFactory(date=date(2026, 11, 17), cadence="daily")
    wednesday = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    pago_pago = SubscriberFactory(timezone="Pacific/Pago_Pago", send_hour=23)  # UTC-11
    before, at_hour = at(2026, 11, 18, 9, 59), at(2026, 11, 18, 10, 0)  # 22:59 and 23:00 on Tuesday there
    assert scheduling.next_digest(pago_pago, before) is scheduling.NextDigest.AT_SEND_HOUR
    assert [(e, list(ids)) for e, ids in scheduling.due_editions("daily", before)] == [(tuesday, []), (wednesday, [])]
    assert scheduling.next_digest(pago_pago, at_hour) is scheduling.NextDigest.NOW
    assert [(e, list(ids)) for e, ids in scheduling.due_editions("daily", at_hour)] == [
        (tuesday, [pago_pago.pk]), (wednesday, [])
    ]
    claim_deliveries(tuesday, [pago_pago.pk])
    assert scheduling.next_digest(pago_pago, at_hour) is scheduling.NextDigest.AT_SEND_HOUR


def test_a_newcomer_past_the_previous_editions_day_is_not_sent_it_as_well_as_the_current_one():
    EditionFactory(date=date(2026, 11, 17), cadence="daily")
    wednesday = EditionFactory(date=date(2026, 11, 18), cadence="daily")
    utc = SubscriberFactory(timezone="UTC", send_hour=12)
    now = at(2026, 11, 18, 10, 0)  # Wednesday 10:00: Tuesday's edition is over for them, Wednesday's at noon
    assert {e: set(ids) for e, ids in scheduling.due_editions("daily", now)} == {
        Edition.objects.get(date=date(2026, 11, 17)): set(), wednesday: set()
    }
    assert scheduling.next_digest(utc, now) is scheduling.NextDigest.AT_SEND_HOUR


def test_the_next_send_date_is_the_day_the_beat_will_find_the_reader_due():
    monday = EditionFactory(date=date(2026, 11, 16), cadence="weekly")
    los_angeles = SubscriberFactory(timezone="America/Los_Angeles", send_hour=20, frequency="weekly")
    sunday_afternoon = at(2026, 11, 16, 0, 30)  # 16:30 on Sunday there: the Monday edition is theirs tomorrow
    assert scheduling.next_digest(los_angeles, sunday_afternoon) is scheduling.NextDigest.AT_SEND_HOUR
    assert scheduling.next_send_date(los_angeles, sunday_afternoon) == date(2026, 11, 16)
    assert los_angeles.pk not in due(monday, sunday_afternoon)
    assert los_angeles.pk in due(monday, at(2026, 11, 17, 4, 0))  # Monday 20:00 there


def test_after_todays_digest_the_next_send_date_is_the_next_editions():
    friday = EditionFactory(date=date(2026, 11, 20), cadence="daily")
    reader = SubscriberFactory(timezone="UTC", send_hour=7)
    claim_deliveries(friday, [reader.pk])
    early = at(2026, 11, 20, 0, 30)  # before their hour, but Friday's digest is already theirs
    assert scheduling.next_digest(reader, early) is scheduling.NextDigest.AT_SEND_HOUR
    assert scheduling.next_send_date(reader, early) == date(2026, 11, 23)  # Monday: no weekend editions
    weekly = EditionFactory(date=date(2026, 11, 16), cadence="weekly")
    weekly_reader = SubscriberFactory(timezone="UTC", send_hour=7, frequency="weekly")
    claim_deliveries(weekly, [weekly_reader.pk])
    assert scheduling.next_send_date(weekly_reader, early) == date(2026, 11, 23)


def test_a_reader_still_in_the_previous_editions_day_is_sent_it_today():
    EditionFactory(date=date(2026, 11, 17), cadence="daily")
    EditionFactory(date=date(2026, 11, 18), cadence="daily")
    pago_pago = SubscriberFactory(timezone="Pacific/Pago_Pago", send_hour=23)  # UTC-11
    before = at(2026, 11, 18, 9, 59)  # 22:59 on Tuesday there
    assert scheduling.next_send_date(pago_pago, before) == date(2026, 11, 17)


ZONES_AROUND_THE_CLOCK = [
    "America/New_York", "America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata", "Pacific/Auckland",
    "Pacific/Kiritimati", "Pacific/Pago_Pago",
]
DAILY_JOB = time(6, 0)  # DAILY_JOB_HOUR on the edition clock (UTC)


def comes_at(day, zone, hour):
    """When a reader at ``hour`` in ``zone`` gets the edition of ``day``: at their hour on its date
    or, when the daily job comes more than six hours (DIGEST_SAME_DAY_HOURS) after that, at their
    hour the next day; never before the edition is built."""
    theirs = datetime.combine(day, time(hour), tzinfo=zone)
    job = datetime.combine(day, DAILY_JOB, tzinfo=UTC)
    if job - theirs > timedelta(hours=6):
        theirs = datetime.combine(day + timedelta(days=1), time(hour), tzinfo=zone)
    return max(theirs, job)


def promised_at(day, zone, hour):
    """When the digest a reader is promised for their local ``day`` comes: the edition of that
    date, or of the day before for a reader who gets it the next morning."""
    for edition_day in (day, day - timedelta(days=1)):
        if edition_date_for("daily", edition_day) == edition_day:
            comes = comes_at(edition_day, zone, hour)
            if comes.astimezone(zone).date() == day:
                return comes
    raise AssertionError(f"no edition comes on {day} at {hour}:00 in {zone}")


@pytest.mark.parametrize(
    "first_day",
    [
        date(2026, 3, 5),  # a Thursday; US clocks go forward on Sunday 8 March
        date(2026, 3, 26),  # EU clocks go forward on Sunday 29 March
        date(2026, 10, 22),  # EU clocks go back on Sunday 25 October
        date(2026, 10, 29),  # US clocks go back on Sunday 1 November
    ],
)
def test_over_days_of_beat_ticks_every_reader_gets_each_daily_edition_once_at_their_hour(first_day):
    """Thursday to Monday of the beat, a tick every half hour (Kolkata is UTC+5:30) and the daily
    job at 06:00 UTC, over a change of the clocks: each reader, at 00:00 or 23:00 in their zone,
    is claimed exactly once
    for each weekday's edition, at their hour on its date or, when that comes before the
    edition is built, as soon as it is, unless the job comes more than six hours after their
    hour (far east of the clock: Kolkata, Auckland, Kiritimati at midnight), in which case at
    their hour the next day; and the day the confirmation page names for a reader's next
    digest (``next_send_date``) is the day it comes."""
    readers = {
        SubscriberFactory(timezone=zone, send_hour=hour, interests="").pk: (ZoneInfo(zone), hour)
        for zone in ZONES_AROUND_THE_CLOCK
        for hour in (0, 23)
    }
    start = datetime.combine(first_day, time(0), tzinfo=UTC)
    end = start + timedelta(days=5)
    built, promised = {}, []
    with mock.patch.object(tasks.send_digest_chunk, "delay", lambda edition_id, chunk: None):
        for tick in range(5 * 24 * 2):
            now = start + timedelta(minutes=30 * tick)
            if now.time() == DAILY_JOB and now.weekday() < 5:
                built[now.date()] = EditionFactory(date=edition_date_for("daily", now.date()), cadence="daily")
            with time_machine.travel(now, tick=False):
                services.enqueue_due_digests(now)
                if tick % 12 == 3:  # what the confirmation page would promise each reader now
                    promised += [
                        (s.pk, now, scheduling.next_send_date(s, now))
                        for s in Subscriber.objects.filter(pk__in=readers)
                        if scheduling.next_digest(s, now) is scheduling.NextDigest.AT_SEND_HOUR
                    ]

    for subscriber_id, now, day in promised:
        zone, hour = readers[subscriber_id]
        later = Delivery.objects.filter(subscriber_id=subscriber_id, created_at__gt=now)
        following = later.order_by("created_at").first()
        if following is None:
            assert promised_at(day, zone, hour) >= end, (zone, hour, now, day)
        else:
            assert following.created_at.astimezone(zone).date() == day, (zone, hour, now, day)
    assert len(promised) > 50

    for subscriber_id, (zone, hour) in readers.items():
        claimed = Delivery.objects.filter(subscriber_id=subscriber_id).order_by("edition__date")
        expected = []
        for day, edition in built.items():
            due = comes_at(day, zone, hour)
            if due < end:
                expected.append((edition.date, due))
        assert [(d.edition.date, d.created_at) for d in claimed] == expected, (zone, hour)


def claims_of(readers):
    return set(Delivery.objects.filter(subscriber_id__in=readers).values_list("subscriber_id", "edition_id"))


def test_the_edition_named_as_on_its_way_is_the_one_the_next_tick_sends():
    """Three days of beat ticks every three hours, the daily job at 06:00 UTC: whenever a reader's digest is
    due now (what the confirmation page says), ``edition_on_its_way`` names an edition, and the
    tick claims the reader for exactly that one, the one ``upcoming_digest`` gives the page; when
    it names none, the tick claims nothing."""
    zones = [*ZONES_AROUND_THE_CLOCK, "Asia/Tokyo"]
    readers = {SubscriberFactory(timezone=zone, send_hour=hour, interests="").pk
               for zone in zones for hour in (0, 7, 9, 16, 23)}
    start = at(2026, 11, 17, 0, 0)  # a Tuesday, after Monday's edition
    EditionFactory(date=date(2026, 11, 16), cadence="daily")
    named = 0
    with mock.patch.object(tasks.send_digest_chunk, "delay", lambda edition_id, chunk: None):
        for tick in range(24):
            now = start + timedelta(hours=3 * tick)
            if now.time() == DAILY_JOB:
                EditionFactory(date=now.date(), cadence="daily")
            with time_machine.travel(now, tick=False):
                subscribers = list(Subscriber.objects.filter(pk__in=readers))
                on_its_way = {s.pk: scheduling.edition_on_its_way(s, now) for s in subscribers}
                upcoming = {s.pk: scheduling.upcoming_digest(s, now) for s in subscribers}
                before = claims_of(readers)
                services.enqueue_due_digests(now)
            expected = {(pk, edition.pk) for pk, edition in on_its_way.items() if edition is not None}
            assert claims_of(readers) - before == expected, now
            due_now = {(pk, u.edition.pk) for pk, u in upcoming.items() if u.when is scheduling.NextDigest.NOW}
            assert due_now == expected, now
            named += len(expected)
    assert named >= len(readers)


def test_a_newcomer_far_east_in_the_afternoon_is_on_the_way_the_edition_their_zone_got_that_morning():
    monday, tuesday = (EditionFactory(date=date(2026, 11, day), cadence="daily") for day in (16, 17))
    tokyo = SubscriberFactory(timezone="Asia/Tokyo", send_hour=7)
    afternoon = at(2026, 11, 17, 7, 0)  # 16:00 in Tokyo, after the job built Tuesday's edition

    assert scheduling.edition_on_its_way(tokyo, afternoon) == monday
    assert scheduling.upcoming_digest(tokyo, afternoon) == (scheduling.NextDigest.NOW, None, monday)
    claim_deliveries(monday, [tokyo.pk])
    assert scheduling.edition_on_its_way(tokyo, afternoon) is None
    assert scheduling.edition_on_its_way(tokyo, at(2026, 11, 17, 22, 0)) == tuesday  # 07:00 on Wednesday


@pytest.mark.parametrize("hours, warned", [(-1, True), (0, False), (6, False), (24, False), (25, True)])
def test_a_same_day_window_outside_a_day_is_warned_about(settings, hours, warned):
    from digest.checks import same_day_hours_in_a_day

    settings.DIGEST_SAME_DAY_HOURS = hours
    assert [w.id for w in same_day_hours_in_a_day(None)] == (["digest.W007"] if warned else [])
