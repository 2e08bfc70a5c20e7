"""The trending score: community signal, its velocity, recency, and the why-line it gives."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from digest.editions import get_or_build_edition
from digest.trending import NO_GAIN, SignalGain, trending_reason, trending_score
from papers.models import Paper, PaperSignal
from tests.factories import PaperFactory

NOW = datetime(2026, 11, 18, 7, 0, tzinfo=UTC)  # a Wednesday


def paper(hours_old=1, upvotes=0, comments=0, stars=0, published_hours_old=None):
    return Paper(
        arxiv_id=f"2611.{hours_old:05d}",
        title="A paper",
        upvotes=upvotes,
        num_comments=comments,
        github_stars=stars,
        first_seen_at=NOW - timedelta(hours=hours_old),
        published_at=None if published_hours_old is None else NOW - timedelta(hours=published_hours_old),
    )


def test_more_community_signal_scores_higher_at_the_same_age():
    quiet, upvoted = paper(upvotes=3), paper(upvotes=30)
    commented, starred = paper(upvotes=3, comments=5), paper(upvotes=3, stars=500)
    assert trending_score(upvoted, NO_GAIN, NOW) > trending_score(quiet, NO_GAIN, NOW)
    assert trending_score(commented, NO_GAIN, NOW) > trending_score(quiet, NO_GAIN, NOW)
    assert trending_score(starred, NO_GAIN, NOW) > trending_score(quiet, NO_GAIN, NOW)


def test_velocity_lifts_a_paper_above_one_with_the_same_total():
    same = paper(upvotes=40)
    assert trending_score(same, SignalGain(upvotes=20), NOW) > trending_score(same, NO_GAIN, NOW)
    assert trending_score(same, SignalGain(upvotes=-5), NOW) == trending_score(same, NO_GAIN, NOW)


def test_gravity_pulls_older_papers_down():
    assert trending_score(paper(hours_old=2, upvotes=10), NO_GAIN, NOW) > trending_score(
        paper(hours_old=30, upvotes=10), NO_GAIN, NOW
    )


def test_a_paper_without_any_signal_still_scores_by_recency():
    newer, older = paper(hours_old=1), paper(hours_old=20)
    assert trending_score(newer, NO_GAIN, NOW) > trending_score(older, NO_GAIN, NOW) > 0


def test_an_old_paper_trending_today_is_not_buried_by_its_publication_date():
    resurfaced = paper(hours_old=1, upvotes=50, published_hours_old=24 * 700)
    fresh_but_quiet = paper(hours_old=1, upvotes=1, published_hours_old=24 * 3)
    assert trending_score(resurfaced, NO_GAIN, NOW) > trending_score(fresh_but_quiet, NO_GAIN, NOW)


def test_a_paper_without_a_publication_date_earns_no_freshness():
    undated = paper(hours_old=1)
    published_long_ago = paper(hours_old=1, published_hours_old=24 * 700)
    published_today = paper(hours_old=1, published_hours_old=2)
    assert trending_score(undated, NO_GAIN, NOW) == trending_score(published_long_ago, NO_GAIN, NOW)
    assert trending_score(published_today, NO_GAIN, NOW) > trending_score(undated, NO_GAIN, NOW)
    assert trending_score(paper(hours_old=1, upvotes=1, published_hours_old=24 * 700), NO_GAIN, NOW) > (
        trending_score(undated, NO_GAIN, NOW)
    )


def test_trending_why_line_names_upvotes_and_todays_gain():
    assert trending_reason(paper(upvotes=57, comments=4), SignalGain(upvotes=20)) == (
        "trending: 57 upvotes, +20 today, 4 comments"
    )
    assert trending_reason(paper()) == "new today"


@pytest.mark.parametrize(
    "upvotes, comments, stars, shown",
    [
        (1, 0, 0, "trending: 1 upvote"),
        (5, 1, 0, "trending: 5 upvotes, 1 comment"),
        (0, 0, 1, "trending: 1 GitHub star"),
    ],
)
def test_a_why_line_counts_one_in_the_singular(upvotes, comments, stars, shown):
    assert trending_reason(paper(upvotes=upvotes, comments=comments, stars=stars)) == shown


@pytest.mark.django_db
def test_edition_uses_the_gain_since_yesterdays_signal():
    with time_machine.travel(NOW, tick=False):
        steady = PaperFactory(upvotes=60, first_seen_at=timezone.now() - timedelta(hours=2),
                              published_at=timezone.now() - timedelta(hours=2))
        rising = PaperFactory(upvotes=57, first_seen_at=timezone.now() - timedelta(hours=2),
                              published_at=timezone.now() - timedelta(hours=2))
        yesterday = timezone.localdate() - timedelta(days=1)
        PaperSignal.objects.create(paper=steady, date=yesterday, upvotes=60)
        PaperSignal.objects.create(paper=rising, date=yesterday, upvotes=37)

        edition, _ = get_or_build_edition("daily", timezone.localdate())

    first, second = edition.entries.order_by("rank")
    assert first.paper == rising
    assert first.trending_reason == "trending: 57 upvotes, +20 today"
    assert second.trending_reason == "trending: 60 upvotes"


@pytest.mark.django_db
def test_an_edition_without_any_signal_ranks_newest_first():
    with time_machine.travel(NOW, tick=False):
        papers = [PaperFactory(first_seen_at=timezone.now() - timedelta(hours=h), published_at=None)
                  for h in (9, 1, 5)]
        edition, _ = get_or_build_edition("daily", timezone.localdate())
    ranked = [e.paper for e in edition.entries.order_by("rank")]
    assert ranked == [papers[1], papers[2], papers[0]]
    assert {e.trending_reason for e in edition.entries.all()} == {"new today"}
