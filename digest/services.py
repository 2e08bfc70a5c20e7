"""The digest's entry points, called by tasks, commands, views and the admin."""

import logging
from collections import deque
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from more_itertools import chunked

from config.paging import in_pages
from papers.models import FetchRun
from subscriptions.models import Subscriber

from .editions import build_editions_for, edition_date_for, get_or_build_edition, refuse_future
from . import calls, pause
from .models import Cadence, Delivery, Edition, SendCall
from .retention import past_retention
from .scheduling import due_editions, end_of_day
from .sending import (
    claim_deliveries,
    load_readers,
    prepare_edition,
    reconcile_stale_deliveries,
    send_one,
)

log = logging.getLogger(__name__)

MISSED_DAILY_JOB_AFTER = timedelta(minutes=15)
MISSED_DAILY_JOB_RETRY = timedelta(hours=1)


def moment_for(day):
    """"Now" for a job run for ``day``: the real now today, the end of that day otherwise."""
    if day is None or day == timezone.localdate():
        return timezone.now()
    return end_of_day(day)


def enqueue_due_digests(now=None, *, dry_run=False, progress=None):
    """Claim every due subscriber's delivery and hand the chunks to the send task.

    Deliveries still pending from an earlier tick (a lost task) are handed out
    again; the compare-and-swap in sending makes that safe. While an operator has
    paused sending (``digest.pause``) nothing is claimed or handed out: the tick
    only settles finished ESP calls and reconciles stale sends, and says it is paused.
    A dry run counts who is due either way.
    """
    from .tasks import send_digest_chunk

    now = now or timezone.now()
    if not dry_run and paused_tick(now):
        return 0
    enqueued = 0
    editions = (pair for cadence in Cadence.values for pair in due_editions(cadence, now))
    for edition, due in editions:
        for chunk in send_task_chunks(due, settings.DIGEST_SEND_BATCH_SIZE, settings.DIGEST_SEND_MIN_BATCH_SIZE):
            enqueued += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
            if dry_run:
                continue
            claim_deliveries(edition, chunk)
            send_digest_chunk.delay(edition.pk, chunk)
        if not dry_run:
            enqueued += requeue_orphaned(edition)
    reconcile_stale_deliveries(now)
    log.info("due digests enqueued count=%d dry_run=%s", enqueued, dry_run)
    return enqueued


def paused_tick(now):
    """Whether sending is paused; if so, the tick's housekeeping is done and it is logged once."""
    switch = pause.current_pause()
    if switch is None:
        return False
    log.warning("due digests not enqueued: %s", pause.summary(switch))
    reconcile_stale_deliveries(now)
    return True


def send_task_chunks(ids, size, smallest):
    """``ids`` cut into send tasks of ``size``, except a tick's first and its last few.

    Workers take tasks in turn, so the tick ends when the last task taken ends: with tasks of
    ``size`` one worker may send a whole task while the others stand idle. The first task holds
    ``smallest`` ids, so that an idle worker starts before a whole task's rows are inserted, and
    the last two tasks' ids are halved again and again down to ``smallest``, so that the workers
    finish close together. Holds at most two tasks' ids (a tick is streamed)."""
    if size < 4 * smallest:
        yield from chunked(ids, size)
        return
    ids = iter(ids)
    first = list(islice(ids, smallest))
    if first:
        yield first
    held = deque()
    for chunk in chunked(ids, size):
        held.append(chunk)
        if len(held) > 2:
            yield held.popleft()
    tail = [pk for chunk in held for pk in chunk]
    while len(tail) >= 2 * smallest:
        piece = max(smallest, len(tail) // 2)
        yield tail[:piece]
        tail = tail[piece:]
    if tail:
        yield tail


def requeue_orphaned(edition, age_minutes=15):
    """Hand out again the edition's readers still pending after ``age_minutes`` (a lost task).

    The edition's finished ESP calls are settled first, so that their readers are
    no longer pending; the readers of calls still in flight are left to them. The pending
    rows are read in pages along the (edition, subscriber) index, each page a query of its
    own: the beat runs this on every tick, and a PgBouncer in transaction pooling would
    break a server-side cursor held from one fetch to the next."""
    from .tasks import send_digest_chunk

    calls.settle_calls(SendCall.objects.filter(edition=edition))
    in_flight = calls.carried_by_calls_in_flight(edition)
    cutoff = timezone.now() - timezone.timedelta(minutes=age_minutes)
    orphaned = Delivery.objects.filter(
        edition=edition, status=Delivery.Status.PENDING, created_at__lt=cutoff
    ).only("pk", "subscriber_id")
    orphaned = (row.subscriber_id for row in in_pages(orphaned, by="subscriber_id") if row.pk not in in_flight)
    count = 0
    for chunk in chunked(orphaned, settings.DIGEST_SEND_BATCH_SIZE):
        send_digest_chunk.delay(edition.pk, chunk)
        count += len(chunk)
    return count


def run_daily_job(day=None):
    """Fetch → build the day's editions → send to everyone due. Returns a summary.

    A day after today is refused before anything is fetched (FutureEdition)."""
    from papers.tasks import fetch_all_sources

    if day is not None:
        refuse_future(day)
    fetched = fetch_all_sources()
    editions = build_editions_for(day or timezone.localdate())
    enqueued = enqueue_due_digests(moment_for(day))
    return {"fetched": fetched, "editions": [str(e) for e in editions], "enqueued": enqueued}


def start_missed_daily_job(now=None):
    """Start today's daily job if beat's run of it never began; the day started, or None.

    Beat publishes the job once, at DAILY_JOB_HOUR: if Redis is unreachable at that moment
    the job is lost, and nothing else builds the day's editions. Beat asks this every quarter
    of an hour. The job counts as begun once today's daily edition exists or a fetch has
    started since the job hour; a job started here is not started again for
    MISSED_DAILY_JOB_RETRY, even if the workers are too busy to begin it. Running the job
    twice is safe, only wasteful."""
    local = timezone.localtime(now or timezone.now())
    job_hour = local.replace(hour=settings.DAILY_JOB_HOUR, minute=0, second=0, microsecond=0)
    if local < job_hour + MISSED_DAILY_JOB_AFTER or daily_job_begun(local.date(), job_hour):
        return None
    day = local.date().isoformat()
    started_key = f"digest:missed-daily-job:{day}"
    if not cache.add(started_key, True, MISSED_DAILY_JOB_RETRY.total_seconds()):
        return None
    from .tasks import run_daily_job

    log.warning("daily job missed day=%s: beat's run never began, starting it now", day)
    try:
        run_daily_job.delay(day)
    except Exception:
        cache.delete(started_key)
        raise
    return local.date()


def daily_job_begun(day, job_hour):
    daily_date = edition_date_for(Cadence.DAILY, day)
    return (
        Edition.objects.filter(cadence=Cadence.DAILY, date=daily_date).exists()
        or FetchRun.objects.filter(started_at__gte=job_hour).exists()
    )


def send_digest_now(subscriber, day=None):
    """Send ``subscriber`` the latest edition of their cadence at once, whatever the hour (with
    ``day``, that day's edition).

    Still at most once per edition: the ledger refuses a second send. Refused
    (``pause.SendingPaused``) while sending is paused.
    """
    from .sending import send_edition_to

    pause.refuse_while_paused()
    edition = edition_to_send_now(subscriber.frequency, day)
    report = send_edition_to(edition, [subscriber.pk])
    return edition, report


def edition_to_send_now(cadence, day=None):
    """The edition ``send_digest_now`` sends (``edition_date_to_send_now``), built if missing."""
    return get_or_build_edition(cadence, edition_date_to_send_now(cadence, day))[0]


def edition_date_to_send_now(cadence, day=None):
    """``day``'s edition date, or without a day the latest edition's: today's built before the
    daily job's fetch would hold nothing new, for everyone and for good (an edition is built
    once). Today's only while there is no edition at all."""
    latest = latest_edition(cadence) if day is None else None
    return latest.date if latest else edition_date_for(cadence, day or timezone.localdate())


def why_not_send_now(subscriber, day=None):
    """Why ``send_digest_now`` would send ``subscriber`` nothing, or None when it would send.

    For a dry run: nothing is built, claimed or sent."""
    switch = pause.current_pause()
    if switch is not None:
        return pause.summary(switch)
    if not subscriber.is_active:
        return f"{subscriber.status}, not active"
    edition_date = edition_date_to_send_now(subscriber.frequency, day)
    delivery = Delivery.objects.filter(
        subscriber=subscriber, edition__cadence=subscriber.frequency, edition__date=edition_date
    ).select_related("edition").first()
    if delivery is None:
        return None
    status = calls.effective([delivery])[0].status
    if status == Delivery.Status.PENDING:
        return None
    return f"the {delivery.edition} is already {status} for them"


def latest_edition(cadence):
    """The newest edition of ``cadence``, or None before the first one is built."""
    return Edition.objects.filter(cadence=cadence).order_by("-date").first()


def ranked_preview(edition, subscriber):
    """The edition prepared for sending and this subscriber's papers in it, best first.

    The send threshold does not apply (an operator wants to see something), so the list
    is empty only when the edition holds nothing the reader has not had yet.
    """
    prepared = prepare_edition(edition)
    readers = load_readers(edition, [subscriber.pk])
    return prepared, readers.rank(prepared.ranker, subscriber, apply_threshold=False)


def preview_digest(subscriber):
    """This subscriber's digest of the latest edition of their cadence, as it would be sent now.

    Nothing is recorded. None when there is no edition yet.
    """
    edition = latest_edition(subscriber.frequency)
    if edition is None:
        return None
    prepared, ranked = ranked_preview(edition, subscriber)
    return prepared.renderer.render(subscriber, ranked)


class PreviewNotSent(Exception):
    """Why an operator's preview digest was not emailed to a reader (shown to the operator)."""


# Why a reader who is not active gets no preview; the other statuses (bounced, complained,
# suppressed) mean the address must never be emailed again.
PREVIEW_REFUSALS = {
    Subscriber.Status.PENDING: "pending: never confirmed",
    Subscriber.Status.PAUSED: "paused: asked for no digests for now",
    Subscriber.Status.UNSUBSCRIBED: "unsubscribed",
}


def send_preview_digest(subscriber):
    """Email an operator's preview of this subscriber's digest; not recorded in the ledger.

    The preview lands in the reader's inbox like any digest, so it goes only where a
    digest would: to an active reader, and only when it holds at least one paper (never a
    "nothing new" email). Otherwise nothing is sent and ``PreviewNotSent`` says why.
    Refused (``pause.SendingPaused``) while sending is paused. Returns the ESP's message id.
    """
    from django.core.mail import get_connection

    from .emails import build_email

    pause.refuse_while_paused()
    if not subscriber.is_active:
        refusal = PREVIEW_REFUSALS.get(subscriber.status, f"{subscriber.status}: never email again")
        raise PreviewNotSent(refusal)
    edition = latest_edition(subscriber.frequency)
    if edition is None:
        raise PreviewNotSent(f"no {subscriber.frequency} edition yet")
    prepared, ranked = ranked_preview(edition, subscriber)
    if not ranked:
        raise PreviewNotSent(f"no papers for them in the {edition}")
    digest = prepared.renderer.render(subscriber, ranked)
    message = build_email("digest", digest.context, subscriber.email, digest.subject,
                          bodies=(digest.text, digest.html))
    with get_connection() as connection:
        return send_one(connection, message)


def latest_edition_sample(limit=5):
    """The top papers of the latest daily edition, for the signup page."""
    edition = latest_edition(Cadence.DAILY)
    if edition is None:
        return []
    return [e.paper for e in shown_entries(edition).order_by("rank")[:limit]]


def shown_entries(edition):
    """The entries an edition shows the public: not pulled from it, and their paper neither
    withdrawn nor blocked since it was built."""
    return edition.entries.filter(
        pulled=False, paper__withdrawn_at__isnull=True, paper__block__isnull=True
    ).select_related("paper")


def resend_failed_delivery(delivery):
    """Send a failed delivery again; refused (False) for anything but a failed, never-delivered row.

    The row goes back to ``pending`` with one conditional UPDATE, so a sent
    delivery, or one the ESP reported delivered, opened or clicked, is never
    sent twice. Refused (``pause.SendingPaused``) while sending is paused.

    A row the ESP refused within a call it took is failed while that call still
    lists it, and a pending row is read through the live call that lists it: the
    call is settled first, so that it no longer speaks for the row, and the row
    is refused while its call is still in flight (its outcome not known yet).
    """
    from .tasks import send_digest_chunk

    pause.refuse_while_paused()
    edition_id = delivery.edition_id
    with calls.claims_of(edition_id):
        calls.settle_calls(calls.live_calls_over(edition_id, [delivery.pk]))
        if calls.in_live_calls(edition_id, [delivery.pk]):
            return False
        moved = Delivery.objects.filter(
            pk=delivery.pk,
            status=Delivery.Status.FAILED,
            delivered_at__isnull=True,
            opened_at__isnull=True,
            clicked_at__isnull=True,
        ).update(status=Delivery.Status.PENDING, reason="resend requested", paper_ids=[], reasons={}, send_token="")
    if moved:
        send_digest_chunk.delay(delivery.edition_id, [delivery.subscriber_id])
        log.info("digest resend requested delivery=%s", delivery.pk)
    return bool(moved)


def edition_handed_to_esp(edition):
    """Whether any of ``edition``'s digests was (or may have been) handed to the ESP: a delivery
    past ``pending``, or any ESP call (claimed per call, its deliveries stay ``pending``). An
    edition past the ledger's retention may have lost those rows to the nightly prune, so it
    counts as handed to the ESP, whatever rows are left.

    The deliveries are read along the (edition, subscriber) index and the first one past
    ``pending`` answers: a sent edition's rows are hundreds of thousands."""
    if past_retention(edition) or SendCall.objects.filter(edition=edition).exists():
        return True
    past_pending = Delivery.objects.filter(edition=edition).exclude(status=Delivery.Status.PENDING)
    return bool(past_pending.order_by("subscriber_id").values_list("pk", flat=True)[:1])


def delete_unsent_edition(edition):
    """Delete ``edition`` (its entries and pending deliveries) unless any of its digests was
    handed to the ESP; returns whether it was deleted.

    Its deliveries and ESP calls, deleted with it, are what stops a second send: were a sent
    edition deleted, the next run would build it again and email it to everyone twice. One
    nobody was sent yet may go (to be built again, say). Checked and deleted under the
    edition's claim lock, so that no digest of it is claimed in between."""
    with calls.claims_of(edition.pk):
        if edition_handed_to_esp(edition):
            log.info("edition not deleted, its digests went out edition=%s", edition.pk)
            return False
        pk = edition.pk
        edition.delete()
    log.info("edition deleted edition=%s", pk)
    return True


def block_paper(paper, reason=""):
    """Put ``paper`` on the blocklist: it leaves every edition page and every digest not yet sent.

    The block records the entries it pulled (not those an operator had already pulled by hand),
    so that ``unblock_paper`` puts back exactly those. The entries are locked while they are
    read and pulled, so that one pulled by hand meanwhile is not taken for the block's."""
    from .models import BlockedPaper, EditionPaper

    with transaction.atomic():
        blocked, created = BlockedPaper.objects.get_or_create(
            paper=paper, defaults={"reason": reason[:300], "pulled_entries": []}
        )
        if not created:
            blocked = BlockedPaper.objects.select_for_update().get(pk=blocked.pk)
        entries = list(
            EditionPaper.objects.select_for_update().filter(paper=paper, pulled=False).values_list("pk", flat=True)
        )
        pulled = EditionPaper.objects.filter(pk__in=entries).update(pulled=True)
        # A block made before the record was kept stays without one (what it pulled is unknown),
        # so un-blocking it puts nothing back, as it always did.
        if entries and blocked.pulled_entries is not None:
            blocked.pulled_entries = sorted({*blocked.pulled_entries, *entries})
            blocked.save(update_fields=["pulled_entries"])
    log.info("paper blocked paper=%s editions=%d", paper.pk, pulled)
    return blocked


def unblock_paper(blocked):
    """Take a paper off the blocklist and put it back in the editions its block pulled it from.

    Only the entries the block pulled are put back: one an operator had pulled by hand before
    the block stays pulled. A block made before they were recorded (``pulled_entries`` null)
    puts nothing back. The paper is sendable again as soon as this commits: the send path sees
    the edition's sendable entries change (``sending.sendable_fingerprint``) and the edition
    pages read them on each view, so digests sent after this carry it."""
    from .models import BlockedPaper, EditionPaper

    with transaction.atomic():
        blocked = BlockedPaper.objects.select_for_update().filter(pk=blocked.pk).first()
        if blocked is None:
            return 0
        restored = 0
        if blocked.pulled_entries:
            restored = EditionPaper.objects.filter(
                pk__in=blocked.pulled_entries, paper_id=blocked.paper_id, pulled=True
            ).update(pulled=False)
        blocked.delete()
    log.info("paper unblocked paper=%s editions=%d", blocked.paper_id, restored)
    return restored


class UnknownPaper(LookupError):
    """No paper, or more than one, answers to a reference given by an operator."""


def find_paper(reference):
    """A paper by arXiv id (with or without version), database id, exact title or a unique title part."""
    from papers.models import Paper

    reference = reference.strip()
    arxiv_id = reference.removeprefix("arXiv:").rsplit("v", 1)[0] if "." in reference else reference
    for lookup in ({"arxiv_id": reference}, {"arxiv_id": arxiv_id}, {"title__iexact": reference}):
        found = Paper.objects.filter(**lookup).first()
        if found is not None:
            return found
    if reference.isascii() and reference.isdigit():
        found = Paper.objects.filter(pk=int(reference)).first()
        if found is not None:
            return found
    matches = list(Paper.objects.filter(title__icontains=reference)[:6])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownPaper(f"no paper matches {reference!r}")
    titles = "; ".join(p.title[:60] for p in matches[:5])
    raise UnknownPaper(f"{reference!r} matches several papers ({titles}); give more of the title or the arXiv id")


def recommendation_pool(pool, cadence=Cadence.DAILY, day=None):
    """Candidates for ``recommend``: the latest edition of ``cadence`` (or what it would hold if
    built now), or, for ``all``, every paper not withdrawn nor blocked, ranked by trending now."""
    from papers.models import Paper

    from .editions import edition_candidates, ranked_candidates
    from .sending import edition_entries

    day = day or timezone.localdate()
    if pool == "all":
        papers = Paper.objects.filter(withdrawn_at__isnull=True, block__isnull=True)
        return ranked_candidates(papers, cadence, day, timezone.now(), limit=None)
    edition = latest_edition(cadence)
    return edition_entries(edition) if edition is not None else edition_candidates(cadence, day)


def recommend(*, interests="", categories=(), liked=(), pool="edition", cadence=Cadence.DAILY, limit=10):
    """What a subscriber with these interests, categories and liked papers would get, best first.

    The send threshold does not apply: ``limit`` papers whenever the pool
    holds that many besides the liked ones, which are never recommended back.
    """
    from subscriptions.models import Subscriber

    from .ranking import EditionRanker

    reader = Subscriber(interests=interests, categories=list(categories), max_papers=limit)
    ranker = EditionRanker(recommendation_pool(pool, cadence))
    return ranker.rank_for(reader, liked=list(liked), limit=limit, apply_threshold=False)
