"""Editions: the public, non-personalised digest of one cadence and date.

The edition clock is settings.TIME_ZONE. A daily edition exists for each
weekday; a weekly edition for each Monday. An edition holds the papers first
seen since the previous edition of its cadence (the first edition ever looks
back one day, or seven for weekly; never more than fourteen), not withdrawn,
ranked by trending score. Papers on the operators' blocklist never enter one.
"""

import logging
from datetime import datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from papers.models import Paper, PaperSignal

from .models import BlockedPaper, Cadence, Edition, EditionPaper
from .ranking import Candidate
from .trending import NO_GAIN, SignalGain, trending_reason, trending_score

log = logging.getLogger(__name__)

EDITION_SIZE_LIMIT = 500
LOOKBACK = {Cadence.DAILY: timedelta(days=1), Cadence.WEEKLY: timedelta(days=7)}
MAX_LOOKBACK = timedelta(days=14)
NEW_LABEL = {Cadence.DAILY: "new today", Cadence.WEEKLY: "new this week"}


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
    """The latest edition of its cadence takes everything seen until now: the current one (a
    weekend build of Friday's edition still has the papers fetched today), and a missed day
    caught up before the next edition is built (its fetch, after midnight, is that day's). One
    built after a later edition of its cadence ends with its day."""
    if not Edition.objects.filter(cadence=cadence, date__gt=edition_date).exists():
        return timezone.now()
    return min(timezone.now(), _end_of_day(edition_date))


def window_end_of(edition):
    """Where ``edition``'s window ended (``edition_window_end`` when it was built): the next
    edition starts there, so that no paper first seen in between is in neither."""
    built_after_a_later_one = Edition.objects.filter(
        cadence=edition.cadence, date__gt=edition.date, built_at__lt=edition.built_at
    ).exists()
    return min(edition.built_at, _end_of_day(edition.date)) if built_after_a_later_one else edition.built_at


def eligible_papers(cadence, edition_date, until):
    """Papers first seen since the previous edition of the cadence, not withdrawn nor blocked."""
    previous = (
        Edition.objects.filter(cadence=cadence, date__lt=edition_date).order_by("-date").first()
    )
    since = until - LOOKBACK[cadence]
    if previous is not None:
        since = max(window_end_of(previous), until - MAX_LOOKBACK)
    return Paper.objects.filter(
        first_seen_at__gt=since, first_seen_at__lte=until, withdrawn_at__isnull=True
    ).exclude(pk__in=BlockedPaper.objects.values("paper_id"))


def signal_gains(papers, day):
    """Signal gained since the day before ``day``, per paper id (the trending velocity).

    A paper without yesterday's PaperSignal has no known gain.
    """
    by_id = {p.pk: p for p in papers}
    yesterday = PaperSignal.objects.filter(paper_id__in=list(by_id), date=day - timedelta(days=1))
    return {
        signal.paper_id: SignalGain(
            upvotes=by_id[signal.paper_id].upvotes - signal.upvotes,
            comments=by_id[signal.paper_id].num_comments - signal.num_comments,
            stars=by_id[signal.paper_id].github_stars - signal.github_stars,
        )
        for signal in yesterday
    }


def ranked_candidates(papers, cadence, day, as_of, limit=EDITION_SIZE_LIMIT):
    """``papers`` as trending-ranked candidates, best first (at most ``limit``; None: all)."""
    papers = list(papers)
    gains = signal_gains(papers, day)
    scored = [
        Candidate(
            paper=paper,
            trending_score=trending_score(paper, gains.get(paper.pk, NO_GAIN), as_of),
            trending_reason=trending_reason(
                paper, gains.get(paper.pk, NO_GAIN), new_label=NEW_LABEL[cadence]
            ),
        )
        for paper in papers
    ]
    scored.sort(key=lambda c: (-c.trending_score, c.paper.arxiv_id))
    return scored[:limit]


def edition_candidates(cadence, day):
    """What the edition of ``cadence`` for ``day`` would hold if it were built now."""
    edition_date = edition_date_for(cadence, day)
    as_of = edition_window_end(cadence, edition_date)
    return ranked_candidates(eligible_papers(cadence, edition_date, as_of), cadence, edition_date, as_of)


class FutureEdition(ValueError):
    """An edition asked for a day after today: built now, before that day's papers are fetched,
    it would stay empty, since an edition is never built twice."""


def refuse_future(day):
    """Raise FutureEdition when ``day`` is after today on the edition clock."""
    today = timezone.localdate()
    if day > today:
        raise FutureEdition(f"no edition is built for {day}: it is after today ({today}) on the edition clock")


def get_or_build_edition(cadence, day):
    """Return the edition of ``cadence`` for the edition date on or before ``day``.

    Built once: a concurrent builder loses the unique constraint race and
    reads the winner's edition. Refused (FutureEdition) for a day after today.
    """
    refuse_future(day)
    edition_date = edition_date_for(cadence, day)
    existing = Edition.objects.filter(cadence=cadence, date=edition_date).first()
    if existing is not None:
        return existing, False
    candidates = edition_candidates(cadence, day)
    try:
        with transaction.atomic():
            edition = Edition.objects.create(cadence=cadence, date=edition_date)
            EditionPaper.objects.bulk_create(
                EditionPaper(
                    edition=edition,
                    paper=candidate.paper,
                    rank=rank,
                    trending_score=candidate.trending_score,
                    trending_reason=candidate.trending_reason[:200],
                )
                for rank, candidate in enumerate(candidates, start=1)
            )
    except IntegrityError:
        return Edition.objects.get(cadence=cadence, date=edition_date), False
    log.info("edition built cadence=%s date=%s papers=%d", cadence, edition_date, len(candidates))
    return edition, True


def build_editions_for(day):
    """Build (if missing) the daily and weekly editions current on ``day``."""
    return [get_or_build_edition(cadence, day)[0] for cadence in Cadence.values]
