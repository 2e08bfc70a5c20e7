"""How long the delivery ledger keeps each digest (``DELIVERY_RETENTION_DAYS``).

The ledger gains a row per reader and digest: at 100,000 daily readers, some
26 million rows a year, each with its papers and why-lines. Unless the setting
is 0 (every row kept), beat deletes nightly the rows of editions older than
that many days, once they are final (sent, failed or skipped), and the settled
ESP calls of those editions. What stays: the editions and their papers (the
public archive), each reader's votes, and the dashboard's kept day counts.
A link in a deleted digest's email to view it in the browser then gets a page
saying so, with a link to the public edition; its unsubscribe, preferences and
vote links still work.

The days kept are at least ``MIN_RETENTION_DAYS``: the dashboard counts the
last 30 days from the rows, a send reads the last editions' rows to send no
paper twice, and an operator resends failed rows from the last days.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.kept_days import days_kept

from .models import Delivery, Edition, SendCall, WebhookEvent
from .sql import id_array

log = logging.getLogger(__name__)

MIN_RETENTION_DAYS = 60
PRUNE_BATCH = 5000
FINAL = (Delivery.Status.SENT, Delivery.Status.FAILED, Delivery.Status.SKIPPED)


@dataclass(frozen=True)
class PrunedDigests:
    deliveries: int
    calls: int
    before: object  # the first edition date kept; None when every digest is kept


def retention_days():
    """The days an edition's digests are kept (0: forever), never fewer than MIN_RETENTION_DAYS."""
    return days_kept(settings.DELIVERY_RETENTION_DAYS, MIN_RETENTION_DAYS)


def retention_cutoff(today=None):
    """The first edition date whose digests are kept; None while every digest is kept."""
    days = retention_days()
    return (today or timezone.localdate()) - timedelta(days=days) if days else None


def past_retention(edition, today=None):
    """Whether ``edition``'s digests are old enough to have been deleted."""
    before = retention_cutoff(today)
    return before is not None and edition.date < before


def prune_old_digests(today=None, batch_size=PRUNE_BATCH):
    """Delete the final delivery rows and the settled ESP calls of editions dated before the
    retention, a batch at a time (short transactions, however many there are).

    Rows still ``pending`` or ``sending`` and calls not settled are kept for an operator to
    look at, whatever their age. An ESP event about a deleted delivery keeps its row, without
    the link to it."""
    before = retention_cutoff(today)
    if before is None:
        return PrunedDigests(0, 0, None)
    old = Edition.objects.filter(date__lt=before)
    deliveries = Delivery.objects.filter(edition__in=old, status__in=FINAL).order_by()
    calls = SendCall.objects.filter(edition__in=old, settled_at__isnull=False).order_by()
    counts = [deleted_in_batches(rows, batch_size) for rows in (deliveries, calls)]
    log.info("old digests pruned deliveries=%d calls=%d before=%s", *counts, before.isoformat())
    return PrunedDigests(*counts, before)


def deleted_in_batches(rows, batch_size=PRUNE_BATCH):
    """Delete ``rows`` a batch at a time, each batch its own short transaction, however many
    there are (the nightly prunes of old digests and of old ESP events); returns how many."""
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:batch_size]):
        with transaction.atomic():
            deleted += delete_rows(rows, ids)
    return deleted


# What a row must still be when it is deleted: a failed row an operator resends meanwhile is not.
# The ledger's rows, deleted by two plain statements on PostgreSQL (``delete_rows``).
STILL_OVER = {
    Delivery: ("status = ANY(%s)", [list(FINAL)]),
    SendCall: ("settled_at IS NOT NULL", []),
}


def delete_rows(rows, ids):
    """Delete the rows ``ids`` of ``rows`` that are still in it; the ESP events of deleted
    deliveries lose their link. Returns how many were deleted.

    The ledger's rows on PostgreSQL go by two plain statements (the event links are
    checked at commit): ``QuerySet.delete()`` loads every row as a model instance to
    find what to unlink, four times slower over a ledger (bench/prune.py)."""
    model = rows.model
    if connection.vendor != "postgresql" or model not in STILL_OVER:
        return rows.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
    where, params = STILL_OVER[model]
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {model._meta.db_table} WHERE id = ANY(%s::bigint[]) AND {where} RETURNING id",
            [id_array(ids), *params],
        )
        gone = [row[0] for row in cursor.fetchall()]
    if model is Delivery and gone:
        WebhookEvent.objects.filter(delivery_id__in=gone).update(delivery=None)
    return len(gone)
