"""Celery tasks: thin wrappers around digest services."""

import logging
import random

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_date
from kombu.exceptions import OperationalError as BrokerError

from . import dashboard, retention, services, webhooks
from .models import Edition
from .sending import TransientSendError, send_edition_to

log = logging.getLogger(__name__)

MAX_SEND_RETRIES = 6
MAX_DAILY_JOB_RETRIES = 8  # about two hours of backoff, until the deep health check calls the edition missing
BACKOFF_MAX_SECONDS = 3600


def backoff_seconds(retries):
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min, … capped at an hour, ±50 %.

    The base is DIGEST_RETRY_BASE_SECONDS (30 s).
    """
    return min(2**retries * settings.DIGEST_RETRY_BASE_SECONDS, BACKOFF_MAX_SECONDS) * random.uniform(0.5, 1.5)


@shared_task(bind=True, acks_late=True, max_retries=MAX_DAILY_JOB_RETRIES)
def run_daily_job(self, day=None):
    """Fetch, build the day's editions, enqueue the due digests; retried with backoff when the
    database or the broker fails it.

    Nothing else builds the day's editions: a run lost to a database restart would leave every
    reader without a digest that day. Every step is safe to run again (a fetch stores each
    source's batch whole or not at all, an edition is built once, a reader is claimed once).
    The retry keeps the day it was started for, so a retry after midnight builds that day's
    editions, not the next day's.
    """
    day = day or timezone.localdate().isoformat()
    try:
        return services.run_daily_job(parse_date(day))
    except (DatabaseError, BrokerError) as exc:
        raise self.retry(exc=exc, args=[day], countdown=backoff_seconds(self.request.retries))


@shared_task(acks_late=True)
def start_missed_daily_job():
    day = services.start_missed_daily_job()
    return day and day.isoformat()


@shared_task(acks_late=True)
def enqueue_due_digests():
    return services.enqueue_due_digests()


@shared_task(bind=True, acks_late=True, max_retries=MAX_SEND_RETRIES)
def send_digest_chunk(self, edition_id, subscriber_ids):
    """Send one chunk; retried with exponential backoff and jitter on transient ESP errors,
    never sooner than the ESP's Retry-After.

    Safe to run twice: only pending deliveries are sent, each claimed by a
    compare-and-swap. A chunk stopped because an operator paused sending is not retried:
    its readers stay pending, and the beat's ticks after the resume hand them out again.
    """
    edition = Edition.objects.filter(pk=edition_id).first()
    if edition is None:  # an edition nobody was sent yet, deleted (to be built again) while this waited
        log.info("digest chunk dropped, its edition is gone edition=%s readers=%d", edition_id, len(subscriber_ids))
        return {"sent": 0, "skipped": 0, "failed": 0, "paused": False}
    try:
        report = send_edition_to(edition, subscriber_ids)
    except TransientSendError as exc:
        report = exc.args[1] if len(exc.args) > 1 else None
        wait = max(backoff_seconds(self.request.retries), getattr(report, "retry_after", 0))
        raise self.retry(exc=exc, countdown=wait)
    return {"sent": report.sent, "skipped": report.skipped, "failed": report.failed, "paused": report.paused}


@shared_task(acks_late=True)
def apply_webhook_event(event_pk):
    return webhooks.apply_event(event_pk)


@shared_task(acks_late=True)
def prune_webhook_events():
    return webhooks.prune_webhook_events()


@shared_task(acks_late=True)
def prune_old_digests():
    return retention.prune_old_digests().deliveries


@shared_task
def refresh_dashboard_figures():
    """Asked for by a dashboard view that found its figures older than DASHBOARD_CACHE_SECONDS."""
    dashboard.keep_dashboard_figures()
