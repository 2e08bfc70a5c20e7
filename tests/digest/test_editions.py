from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from digest.editions import FutureEdition, build_editions_for, edition_date_for, get_or_build_edition
from digest.models import Edition
from tests.digest.builders import papers_on_topics
from tests.factories import PaperFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "day, cadence, expected",
    [
        (date(2026, 11, 20), "daily", date(2026, 11, 20)),  # Friday
        (date(2026, 11, 21), "daily", date(2026, 11, 20)),  # Saturday → Friday's
        (date(2026, 11, 22), "daily", date(2026, 11, 20)),  # Sunday → Friday's
        (date(2026, 11, 22), "weekly", date(2026, 11, 16)),  # Sunday → that week's Monday
        (date(2026, 11, 16), "weekly", date(2026, 11, 16)),
    ],
)
def test_edition_date_is_the_latest_of_its_cadence(day, cadence, expected):
    assert edition_date_for(cadence, day) == expected


def test_edition_is_built_once_and_ranked_by_trending_score():
    papers_on_topics()
    first, created = get_or_build_edition("daily", timezone.localdate())
    again, created_again = get_or_build_edition("daily", timezone.localdate())
    assert created and not created_again
    assert first.pk == again.pk
    scores = list(first.entries.order_by("rank").values_list("trending_score", flat=True))
    assert scores == sorted(scores, reverse=True)
    assert Edition.objects.count() == 1


def test_withdrawn_papers_never_enter_an_edition():
    papers = papers_on_topics(3)
    papers[0].withdrawn_at = timezone.now()
    papers[0].save()
    edition, _ = get_or_build_edition("daily", timezone.localdate())
    assert papers[0] not in edition.papers.all()
    assert edition.papers.count() == 2


def test_next_edition_holds_only_papers_first_seen_after_the_previous_one():
    with time_machine.travel(datetime(2026, 11, 17, 7, 0, tzinfo=UTC), tick=False):  # Tuesday
        tuesday_paper = PaperFactory(first_seen_at=timezone.now() - timedelta(hours=1))
        tuesday, _ = get_or_build_edition("daily", timezone.localdate())
    with time_machine.travel(datetime(2026, 11, 18, 7, 0, tzinfo=UTC), tick=False):  # Wednesday
        wednesday_paper = PaperFactory(first_seen_at=timezone.now() - timedelta(hours=1))
        wednesday, _ = get_or_build_edition("daily", timezone.localdate())
    assert list(tuesday.papers.all()) == [tuesday_paper]
    assert list(wednesday.papers.all()) == [wednesday_paper]


def test_a_missed_day_caught_up_the_next_morning_holds_what_its_late_fetch_found():
    """Tuesday's job run (or retried) after midnight, before Wednesday's: its fetch found
    Tuesday's papers, which Tuesday's edition holds; Wednesday's starts when Tuesday's was built.
    An empty edition for Tuesday, and those papers in neither, were both possible before."""
    with time_machine.travel(datetime(2026, 11, 16, 6, 0, tzinfo=UTC), tick=False):  # Monday
        get_or_build_edition("daily", timezone.localdate())
    with time_machine.travel(datetime(2026, 11, 18, 0, 30, tzinfo=UTC), tick=False):  # Wednesday
        fetched_late = PaperFactory(first_seen_at=timezone.now())
    with time_machine.travel(datetime(2026, 11, 18, 0, 31, tzinfo=UTC), tick=False):
        tuesday, _ = get_or_build_edition("daily", date(2026, 11, 17))
    with time_machine.travel(datetime(2026, 11, 18, 6, 0, tzinfo=UTC), tick=False):
        wednesday_paper = PaperFactory(first_seen_at=timezone.now() - timedelta(minutes=5))
        wednesday, _ = get_or_build_edition("daily", timezone.localdate())
    assert list(tuesday.papers.all()) == [fetched_late]
    assert list(wednesday.papers.all()) == [wednesday_paper]


def test_an_edition_built_after_a_later_one_ends_with_its_day_and_the_next_starts_as_before():
    with time_machine.travel(datetime(2026, 11, 16, 6, 0, tzinfo=UTC), tick=False):  # Monday
        get_or_build_edition("daily", timezone.localdate())
    with time_machine.travel(datetime(2026, 11, 18, 6, 0, tzinfo=UTC), tick=False):  # Wednesday's job
        wednesday, _ = get_or_build_edition("daily", timezone.localdate())
    with time_machine.travel(datetime(2026, 11, 18, 9, 0, tzinfo=UTC), tick=False):
        after_wednesdays = PaperFactory(first_seen_at=timezone.now())
        tuesday, _ = get_or_build_edition("daily", date(2026, 11, 17))  # filled in afterwards
    with time_machine.travel(datetime(2026, 11, 19, 6, 0, tzinfo=UTC), tick=False):  # Thursday
        thursday, _ = get_or_build_edition("daily", timezone.localdate())
    assert after_wednesdays not in tuesday.papers.all()
    assert list(thursday.papers.all()) == [after_wednesdays]


def test_a_weekend_build_of_fridays_edition_keeps_its_papers_out_of_mondays():
    with time_machine.travel(datetime(2026, 11, 19, 6, 0, tzinfo=UTC), tick=False):  # Thursday
        get_or_build_edition("daily", timezone.localdate())
    with time_machine.travel(datetime(2026, 11, 21, 9, 0, tzinfo=UTC), tick=False):  # Saturday
        saturday_paper = PaperFactory(first_seen_at=timezone.now() - timedelta(hours=1))
        friday, _ = get_or_build_edition("daily", timezone.localdate())
    with time_machine.travel(datetime(2026, 11, 23, 6, 0, tzinfo=UTC), tick=False):  # Monday
        monday_paper = PaperFactory(first_seen_at=timezone.now() - timedelta(hours=1))
        monday, _ = get_or_build_edition("daily", timezone.localdate())
    assert friday.date == date(2026, 11, 20) and list(friday.papers.all()) == [saturday_paper]
    assert list(monday.papers.all()) == [monday_paper]


def test_an_edition_for_a_day_after_today_is_refused_and_never_built():
    """Built before its papers are fetched, it would stay empty: editions are built once."""
    with time_machine.travel(datetime(2026, 12, 6, 12, 0, tzinfo=UTC), tick=False):  # Sunday
        papers_on_topics()
        with pytest.raises(FutureEdition, match="2026-12-07"):
            get_or_build_edition("daily", date(2026, 12, 7))
        with pytest.raises(FutureEdition):
            build_editions_for(date(2026, 12, 7))
        assert not Edition.objects.exists()
        today = build_editions_for(date(2026, 12, 6))
    assert [(e.cadence, e.date) for e in today] == [("daily", date(2026, 12, 4)), ("weekly", date(2026, 11, 30))]


def test_the_daily_job_for_a_day_after_today_is_refused_before_anything_is_fetched(monkeypatch):
    from digest import services
    from papers import tasks as paper_tasks

    fetched = []
    monkeypatch.setattr(paper_tasks, "fetch_all_sources", lambda: fetched.append(True))
    with time_machine.travel(datetime(2026, 12, 6, 12, 0, tzinfo=UTC), tick=False):
        with pytest.raises(FutureEdition, match="2026-12-07"):
            services.run_daily_job(date(2026, 12, 7))
        assert fetched == [] and not Edition.objects.exists()
        services.run_daily_job(date(2026, 12, 6))
    assert fetched == [True]


def test_an_edition_is_deleted_only_while_none_of_its_digests_was_handed_to_the_esp():
    from digest.models import Delivery
    from digest.services import delete_unsent_edition
    from tests.factories import SubscriberFactory

    papers_on_topics()
    today = timezone.localdate()
    claimed, _ = get_or_build_edition("daily", today)
    sent, _ = get_or_build_edition("weekly", today)
    Delivery.objects.create(subscriber=SubscriberFactory(), edition=claimed)
    Delivery.objects.create(subscriber=SubscriberFactory(), edition=sent, status=Delivery.Status.FAILED)

    assert delete_unsent_edition(sent) is False
    assert delete_unsent_edition(claimed) is True
    assert list(Edition.objects.all()) == [sent] and Delivery.objects.get().edition == sent
