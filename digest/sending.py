"""Sending digests exactly once: the Delivery ledger decides, not the retry.

1. ``claim_deliveries`` inserts one ``pending`` row per (subscriber, edition);
   the unique constraint makes a second claim a no-op.
2. ``start_sending`` moves a row from ``pending`` to ``sending`` with a
   compare-and-swap update that also checks the subscriber is still active.
   Only the caller that wins may hand the message to the ESP, so two workers,
   a retried task or a re-run never send the same edition twice.
3. The outcome is recorded: ``sent`` with the ESP message id, ``skipped`` with
   a reason, ``failed`` for a permanent refusal, or back to ``pending`` when
   the ESP clearly did not take the message (connection refused, 5xx, 429)
   so that a retry may send it.
4. A row left in ``sending`` (a worker died, or the ESP timed out and we do
   not know whether it accepted) is never resent blindly:
   ``reconcile_stale_deliveries`` marks it ``failed`` after a timeout.
"""

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from anymail.exceptions import AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings
from django.core.mail import get_connection
from django.db.models import F
from django.utils import timezone

from subscriptions.models import Subscriber

from .emails import build_email
from .models import Delivery, Feedback
from .ranking import EditionRanker
from .rendering import render_digest

log = logging.getLogger(__name__)


class TransientSendError(Exception):
    """The ESP did not take the message this time; the delivery is pending again."""


@dataclass
class SendReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    not_claimed: int = 0
    transient: list = field(default_factory=list)


def claim_deliveries(edition, subscriber_ids):
    """Create a pending delivery for each subscriber that has none for this edition."""
    rows = [Delivery(subscriber_id=sid, edition=edition) for sid in subscriber_ids]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)


def start_sending(delivery_id):
    """Compare-and-swap ``pending`` → ``sending``; True only for the one caller that wins."""
    return bool(
        Delivery.objects.filter(
            pk=delivery_id,
            status=Delivery.Status.PENDING,
            subscriber__status=Subscriber.Status.ACTIVE,
        ).update(status=Delivery.Status.SENDING, sending_at=timezone.now(), attempts=F("attempts") + 1)
    )


def finish(delivery_id, status, **fields):
    Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.SENDING).update(
        status=status, **fields
    )


def skip_inactive(edition, subscriber_ids):
    """Pending deliveries of subscribers who left meanwhile are skipped, never sent."""
    return Delivery.objects.filter(
        edition=edition, subscriber_id__in=subscriber_ids, status=Delivery.Status.PENDING
    ).exclude(subscriber__status=Subscriber.Status.ACTIVE).update(
        status=Delivery.Status.SKIPPED, reason="subscriber no longer active"
    )


def papers_already_sent(subscriber_ids):
    sent = {}
    rows = Delivery.objects.filter(
        subscriber_id__in=subscriber_ids, status=Delivery.Status.SENT
    ).values_list("subscriber_id", "paper_ids")
    for subscriber_id, paper_ids in rows:
        sent.setdefault(subscriber_id, set()).update(paper_ids)
    return sent


def feedback_papers(subscriber_ids):
    liked, disliked = {}, {}
    for fb in Feedback.objects.filter(subscriber_id__in=subscriber_ids).select_related("paper"):
        (liked if fb.vote > 0 else disliked).setdefault(fb.subscriber_id, []).append(fb.paper)
    return liked, disliked


def ranker_for(edition):
    entries = edition.entries.filter(pulled=False).select_related("paper").order_by("rank")
    return EditionRanker(list(entries))


def classify_send_error(exc):
    """'permanent', 'transient' (the ESP surely did not take it) or 'unknown'."""
    if isinstance(exc, (AnymailRecipientsRefused, smtplib.SMTPRecipientsRefused)):
        return "permanent"
    if isinstance(exc, AnymailRequestsAPIError):
        status = exc.status_code
        if status is None:
            cause = exc.__cause__ or exc.__context__
            return "unknown" if isinstance(cause, requests.Timeout) else "transient"
        return "transient" if status == 429 or status >= 500 else "permanent"
    if isinstance(exc, (ConnectionRefusedError, smtplib.SMTPConnectError)):
        return "transient"
    if isinstance(exc, (smtplib.SMTPServerDisconnected, TimeoutError)):
        return "unknown"
    if isinstance(exc, smtplib.SMTPResponseException):
        return "transient" if exc.smtp_code >= 400 and exc.smtp_code < 500 else "permanent"
    return "unknown"


def esp_message_id(message):
    status = getattr(message, "anymail_status", None)
    if status is not None and status.message_id:
        return str(status.message_id)
    return message.extra_headers.get("Message-ID", "")


def send_one(connection, subscriber, edition, ranked):
    subject, context, bodies = render_digest(subscriber, edition, ranked)
    message = build_email("digest", context, subscriber.email, subject, bodies=bodies)
    message.connection = connection
    message.send()
    return esp_message_id(message)


def deliver(connection, delivery, ranker, history, liked, disliked, report):
    subscriber, edition = delivery.subscriber, delivery.edition
    if not start_sending(delivery.pk):
        report.not_claimed += 1
        return
    ranked = ranker.rank_for(
        subscriber,
        exclude_ids=history.get(subscriber.pk, ()),
        liked=liked.get(subscriber.pk, ()),
        disliked=disliked.get(subscriber.pk, ()),
    )
    if not ranked:
        reason = "no paper passed the relevance threshold" if ranker.papers else "no new papers in this edition"
        finish(delivery.pk, Delivery.Status.SKIPPED, reason=reason)
        report.skipped += 1
        log.info("digest skipped subscriber=%s edition=%s reason=nothing-relevant", subscriber.pk, edition.pk)
        return
    try:
        message_id = send_one(connection, subscriber, edition, ranked)
    except Exception as exc:  # classified below; nothing is lost
        record_send_error(delivery, exc, report)
        return
    finish(
        delivery.pk,
        Delivery.Status.SENT,
        sent_at=timezone.now(),
        esp_message_id=message_id[:300],
        paper_ids=[r.paper.pk for r in ranked],
        reasons={str(r.paper.pk): r.reason for r in ranked},
        reason="",
    )
    report.sent += 1
    log.info(
        "digest sent subscriber=%s edition=%s esp_message_id=%s papers=%d",
        subscriber.pk, edition.pk, message_id, len(ranked),
    )


def record_send_error(delivery, exc, report):
    kind = classify_send_error(exc)
    text = f"{type(exc).__name__}: {exc}"[:300]
    if kind == "transient":
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(
            status=Delivery.Status.PENDING, reason=text
        )
        report.transient.append(delivery.pk)
        log.warning("digest send deferred subscriber=%s edition=%s error=%s",
                    delivery.subscriber_id, delivery.edition_id, text)
    elif kind == "permanent":
        finish(delivery.pk, Delivery.Status.FAILED, reason=text)
        report.failed += 1
        log.warning("digest send refused subscriber=%s edition=%s error=%s",
                    delivery.subscriber_id, delivery.edition_id, text)
    else:
        # Outcome unknown: the ESP may have accepted it. Left in ``sending`` for
        # reconcile_stale_deliveries; never resent blindly.
        Delivery.objects.filter(pk=delivery.pk).update(reason=f"outcome unknown: {text}"[:300])
        log.error("digest send outcome unknown subscriber=%s edition=%s error=%s",
                  delivery.subscriber_id, delivery.edition_id, text)


def send_edition_to(edition, subscriber_ids, *, ranker=None):
    """Send ``edition`` to the given subscribers: claim, rank, render, send, record.

    Raises TransientSendError after the chunk when some deliveries must be retried.
    """
    subscriber_ids = list(subscriber_ids)
    claim_deliveries(edition, subscriber_ids)
    skip_inactive(edition, subscriber_ids)
    deliveries = list(
        Delivery.objects.filter(
            edition=edition, subscriber_id__in=subscriber_ids, status=Delivery.Status.PENDING
        ).select_related("subscriber", "edition")
    )
    report = SendReport()
    if not deliveries:
        return report
    ranker = ranker or ranker_for(edition)
    ids = [d.subscriber_id for d in deliveries]
    history = papers_already_sent(ids)
    liked, disliked = feedback_papers(ids)
    with get_connection() as connection:
        for delivery in deliveries:
            deliver(connection, delivery, ranker, history, liked, disliked, report)
    if report.transient:
        raise TransientSendError(f"{len(report.transient)} deliveries to retry", report)
    return report


def reconcile_stale_deliveries(now=None):
    """Rows stuck in ``sending`` past the timeout: the outcome is unknown, so they are
    marked failed (at most once) rather than sent again."""
    cutoff = (now or timezone.now()) - timedelta(minutes=settings.DIGEST_SENDING_STALE_MINUTES)
    return Delivery.objects.filter(status=Delivery.Status.SENDING, sending_at__lt=cutoff).update(
        status=Delivery.Status.FAILED, reason="send outcome unknown (stale); not resent"
    )
