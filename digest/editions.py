"""Editions: the public, non-personalised digest of one cadence and date.

The edition clock is settings.TIME_ZONE. A daily edition exists for each
weekday; a weekly edition for each Monday. An edition holds the papers first
seen since the previous edition of its cadence (the first edition ever looks
back one day, or seven for weekly; never more than fourteen), not withdrawn,
ranked by trending score.
"""

from datetime import datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from papers.models import Paper, PaperSignal

from .models import Cadence, Edition, EditionPaper
from .trending import trending_reason, trending_score

EDITION_SIZE_LIMIT = 500
LOOKBACK = {Cadence.DAILY: timedelta(days=1), Cadence.WEEKLY: timedelta(days=7)}
MAX_LOOKBACK = timedelta(days=14)


def edition_date_for(cadence, day):
    """The date of the latest edition of ``cadence`` on or before ``day``."""
    if cadence == Cadence.WEEKLY:
        return day - timedelta(days=day.weekday())
    while day.weekday() >= 5:  # daily editions are for weekdays
        day -= timedelta(days=1)
    return day


def _end_of_day(day):
    return timezone.make_aware(datetime.combine(day, time.max))


def edition_window_end(cadence, edition_date):
    """The current edition takes everything seen until now (so a weekend build of
    Friday's edition still has the papers fetched today); a past one ends with its day."""
    if edition_date == edition_date_for(cadence, timezone.localdate()):
        return timezone.now()
    return min(timezone.now(), _end_of_day(edition_date))


def eligible_papers(cadence, edition_date, until):
    """Papers first seen since the previous edition of the cadence, not withdrawn."""
    previous = (
        Edition.objects.filter(cadence=cadence, date__lt=edition_date).order_by("-date").first()
    )
    since = until - LOOKBACK[cadence]
    if previous is not None:
        since = max(previous.built_at, until - MAX_LOOKBACK)
    return Paper.objects.filter(
        first_seen_at__gt=since, first_seen_at__lte=until, withdrawn_at__isnull=True
    )


def signal_gains(papers, day):
    """Upvote gain since the day before, per paper id (velocity for the trending score)."""
    ids = [p.pk for p in papers]
    yesterday = {
        s.paper_id: s.upvotes
        for s in PaperSignal.objects.filter(paper_id__in=ids, date=day - timedelta(days=1))
    }
    return {p.pk: p.upvotes - yesterday[p.pk] for p in papers if p.pk in yesterday}


def get_or_build_edition(cadence, day):
    """Return the edition of ``cadence`` for the edition date on or before ``day``.

    Built once: a concurrent builder loses the unique constraint race and
    reads the winner's edition.
    """
    edition_date = edition_date_for(cadence, day)
    existing = Edition.objects.filter(cadence=cadence, date=edition_date).first()
    if existing is not None:
        return existing, False
    as_of = edition_window_end(cadence, edition_date)
    papers = list(eligible_papers(cadence, edition_date, as_of))
    gains = signal_gains(papers, edition_date)
    scored = sorted(
        ((trending_score(p, gains.get(p.pk, 0), as_of), p) for p in papers),
        key=lambda pair: (-pair[0], pair[1].arxiv_id),
    )[:EDITION_SIZE_LIMIT]
    try:
        with transaction.atomic():
            edition = Edition.objects.create(cadence=cadence, date=edition_date)
            EditionPaper.objects.bulk_create(
                EditionPaper(
                    edition=edition,
                    paper=paper,
                    rank=rank,
                    trending_score=score,
                    trending_reason=trending_reason(paper, gains.get(paper.pk, 0)),
                )
                for rank, (score, paper) in enumerate(scored, start=1)
            )
    except IntegrityError:
        return Edition.objects.get(cadence=cadence, date=edition_date), False
    return edition, True


def build_editions_for(day):
    """Build (if missing) the daily and weekly editions current on ``day``."""
    return [get_or_build_edition(cadence, day)[0] for cadence in Cadence.values]
