"""How long Paperboy keeps addresses nobody confirmed.

A signup form takes any address: a typo, or someone else's address typed in on
purpose. Until it is confirmed such an address is only a pending row, and there
is no reason to keep it once its link has long expired. Unless
``UNCONFIRMED_SIGNUP_DAYS`` is 0, beat deletes nightly the readers still
``pending`` who never confirmed, signed up and last sent a confirmation more
than that many days ago (at least ``MIN_UNCONFIRMED_DAYS``: a confirmation link
works for 7 days). A reader who confirmed once and unsubscribed is kept: their
preferences wait for them to subscribe again.

The same sweep forgets the new address a reader asked to move to once its link
can no longer work, whether or not it was followed.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.kept_days import days_kept

from .models import Subscriber
from .services import name_deleted_readers_in_history
from .tokens import CONFIRM_MAX_AGE, NEW_ADDRESS_MAX_AGE

log = logging.getLogger(__name__)

MIN_UNCONFIRMED_DAYS = CONFIRM_MAX_AGE // (24 * 60 * 60) + 1
PRUNE_BATCH = 1000
# A new-address link is made when a worker sends it, minutes after the request is stamped
# (a deferred email is tried again): the address is kept a day past the link's age.
NEW_ADDRESS_KEPT = timedelta(seconds=NEW_ADDRESS_MAX_AGE) + timedelta(days=1)


@dataclass(frozen=True)
class PrunedSignups:
    readers: int  # never-confirmed readers deleted
    new_addresses: int  # expired new addresses forgotten
    before: object  # the time before which a signup is old enough; None while all are kept


def unconfirmed_signup_days():
    """The days a signup nobody confirmed is kept (0: forever), never fewer than MIN_UNCONFIRMED_DAYS."""
    return days_kept(settings.UNCONFIRMED_SIGNUP_DAYS, MIN_UNCONFIRMED_DAYS)


def deleted_after(subscriber):
    """When the nightly prune may delete ``subscriber`` unless they confirm (None: never),
    as ``unconfirmed_signups`` chooses them."""
    days = unconfirmed_signup_days()
    if not days or subscriber.status != Subscriber.Status.PENDING or subscriber.confirmed_at is not None:
        return None
    last_asked = max(filter(None, (subscriber.created_at, subscriber.confirmation_sent_at)))
    return last_asked + timedelta(days=days)


def unconfirmed_signups(before):
    """Readers who never confirmed, whose signup and last confirmation email are older than ``before``."""
    return Subscriber.objects.filter(
        Q(confirmation_sent_at__isnull=True) | Q(confirmation_sent_at__lt=before),
        status=Subscriber.Status.PENDING,
        confirmed_at__isnull=True,
        created_at__lt=before,
    )


def prune_unconfirmed_signups(now=None, batch_size=PRUNE_BATCH):
    """Delete the old signups nobody confirmed, a batch at a time, and forget expired new addresses.

    Each batch is locked and checked again before it is deleted, so a reader who signs up
    again or is sent a confirmation meanwhile (which stamps ``confirmation_sent_at``) stays.
    Nothing else is kept of them: no suppression, since they never asked for anything; the
    admin's history names them by id instead of by address."""
    now = now or timezone.now()
    forgotten = forget_expired_new_addresses(now)
    days = unconfirmed_signup_days()
    if not days:
        return PrunedSignups(0, forgotten, None)
    before = now - timedelta(days=days)
    old = unconfirmed_signups(before).order_by("pk")
    deleted, after = 0, 0
    while ids := list(old.filter(pk__gt=after).values_list("pk", flat=True)[:batch_size]):
        deleted += _delete_still_unconfirmed(old, ids)
        after = ids[-1]
    log.info(
        "unconfirmed signups pruned readers=%d new_addresses=%d before=%s",
        deleted, forgotten, before.isoformat(timespec="seconds"),
    )
    return PrunedSignups(deleted, forgotten, before)


def _delete_still_unconfirmed(old, ids):
    with transaction.atomic():
        locked = list(old.filter(pk__in=ids).select_for_update().values_list("pk", flat=True))
        Subscriber.objects.filter(pk__in=locked).delete()
        name_deleted_readers_in_history(locked)
    return len(locked)


def forget_expired_new_addresses(now=None):
    """Clear ``new_email`` where its link can no longer move the reader; returns how many."""
    now = now or timezone.now()
    return (
        Subscriber.objects.exclude(new_email="")
        .filter(Q(address_change_sent_at__isnull=True) | Q(address_change_sent_at__lt=now - NEW_ADDRESS_KEPT))
        .update(new_email="", updated_at=now)
    )
