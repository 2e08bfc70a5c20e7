"""How people join, steer and leave Paperboy: the business rules, as plain functions.

Views, admin actions, the CSV import and ESP webhooks all go through here.
Every state change is a single conditional UPDATE (``filter(status__in=…)``),
so each function is idempotent and safe under concurrent calls, and, outside a
caller's transaction, committed the moment it returns: a digest already queued
re-checks the status at send time and finds the change.
"""

import enum
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.mail import get_connection
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Max, Q, Value, When
from django.db.models.functions import Coalesce, Concat, Lower
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from more_itertools import chunked

from config.paging import aggregate_per_key, in_pages
from digest.emails import absolute_url, send_email

from . import csv_io
from .models import Subscriber, SubscriberImport, Suppression, email_hash, new_token_secret
from .tokens import CONFIRM, NEW_ADDRESS, NEW_ADDRESS_MAX_AGE, PREFERENCES, UNSUBSCRIBE, make_token

logger = logging.getLogger(__name__)

Status = Subscriber.Status

EMAIL_COOLDOWN = timedelta(minutes=10)
CONFIRM_SUBJECT = "Confirm your Paperboy subscription"
PREFERENCE_FIELDS = (
    "interests",
    "categories",
    "frequency",
    "max_papers",
    "send_hour",
    "timezone",
    "always_send_top",
)
# Reasons that also keep the signup form from mailing an address again.
# "deleted" is not one: a person who deleted their data may come back by
# confirming afresh.
BLOCKING_SUPPRESSIONS = ("bounced", "complained", "suppressed")
SUPPRESSION_STATUSES = {"bounced": Status.BOUNCED, "complained": Status.COMPLAINED}
# A later hard bounce does not replace a spam complaint: the complaint is the stronger
# reason, and the one an operator must see before reactivating the reader.
NOT_REPLACED_BY = {"bounced": ("complained",)}
RECEIVING = (Status.PENDING, Status.ACTIVE, Status.PAUSED)
NOT_YET_JOINED = (Status.PENDING, Status.UNSUBSCRIBED)
JOINED = (Status.ACTIVE, Status.PAUSED)
# Who may move to a new address (once confirmed): a bounced reader most of all, whose old
# mailbox is gone. A pending reader signs up with the new address instead; a complained or
# suppressed one stays where the ESP or an operator put them.
MOVABLE = (Status.ACTIVE, Status.PAUSED, Status.UNSUBSCRIBED, Status.BOUNCED)


class SignupResult(enum.Enum):
    """What a signup did. Never shown to the visitor: the page is the same for all."""

    CREATED = "created"
    CONFIRMATION_SENT = "confirmation_sent"
    THROTTLED = "throttled"
    ALREADY_SUBSCRIBED = "already_subscribed"
    BLOCKED = "blocked"
    IGNORED = "ignored"


class ImportResult(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"  # earlier consent, and paused in the file (an export of a paused reader)
    EXISTS = "exists"
    SUPPRESSED = "suppressed"


class NewLinkResult(enum.Enum):
    """What ``revoke_links`` did besides rotating the secret."""

    EMAILED = "emailed"
    NOT_EMAILED = "not_emailed"  # the reader is not one we may email
    EMAIL_FAILED = "email_failed"


class ReactivationResult(enum.Enum):
    """What ``reactivate`` did; true unless refused (the subscriber is active then)."""

    REACTIVATED = "reactivated"
    ALREADY_ACTIVE = "already_active"
    REFUSED = "refused"  # never confirmed

    def __bool__(self):
        return self is not ReactivationResult.REFUSED


# --- Lookups ----------------------------------------------------------------


def find_subscriber(email):
    return Subscriber.objects.with_email(email).first()


def suppression_reason(email):
    return (
        Suppression.objects.filter(email_hash=email_hash(email))
        .values_list("reason", flat=True)
        .first()
    )


def is_blocked(email):
    return suppression_reason(email) in BLOCKING_SUPPRESSIONS


def with_last_delivery(subscribers, chunk_size=500):
    """``subscribers``, each given ``last_delivery_at`` (when its latest digest was sent).

    Looked up a chunk at a time through the ledger's subscriber index: a list page or an
    export reads its own readers' deliveries, where annotating the query aggregated the
    whole ledger (a row per reader and digest) on every page. A digest whose ESP call is not
    settled onto its row yet counts once it is (by the beat, within 15 minutes): looked up
    through the calls, a page of readers scattered over a day's send read every call of the
    day (0.25 s with 400 calls).
    """
    from digest.models import Delivery

    for chunk in chunked(subscribers, chunk_size):
        last = aggregate_per_key(
            Delivery.objects.filter(subscriber_id__in=[subscriber.pk for subscriber in chunk]),
            "subscriber_id", "at", Max("sent_at"),
        )
        for subscriber in chunk:
            subscriber.last_delivery_at = last.get(subscriber.pk)
            yield subscriber


def subscribers_for_export(subscribers):
    """``subscribers`` (a queryset) streamed in id order, each with ``last_delivery_at``. The
    finished ESP calls are settled onto their rows first, as the dashboard does, so that the
    export says when each reader's latest digest was sent even before the beat's sweep.
    Read a page at a time by id, without a server-side cursor (``config.paging``)."""
    from digest import calls

    calls.settle_calls()
    return with_last_delivery(in_pages(subscribers, size=500))


# --- Links and emails -------------------------------------------------------


def confirm_url(subscriber):
    """An absolute confirmation link; ``t`` records when it was requested (see ``can_confirm``)."""
    token = make_token(subscriber, CONFIRM, t=int(time.time()))
    return absolute_url(reverse("subscriptions:confirm", args=[token]))


def new_address_key(email):
    """What a new-address link says of the address it confirms: the start of its hash, so
    that the link works for that address only and the URL does not show it."""
    return email_hash(email)[:16]


def new_address_url(subscriber):
    """An absolute link that moves ``subscriber`` to ``subscriber.new_email`` (``confirm_new_address``)."""
    token = make_token(subscriber, NEW_ADDRESS, a=new_address_key(subscriber.new_email))
    return absolute_url(reverse("subscriptions:confirm_new_address", args=[token]))


def preferences_path(subscriber):
    return reverse("subscriptions:preferences", args=[make_token(subscriber, PREFERENCES)])


def unsubscribe_token(subscriber):
    return make_token(subscriber, UNSUBSCRIBE)


def preferences_url(subscriber):
    return absolute_url(preferences_path(subscriber))


def unsubscribe_url(subscriber):
    return absolute_url(reverse("subscriptions:unsubscribe", args=[unsubscribe_token(subscriber)]))


def digest_sample(limit=5):
    """Papers from the latest edition for the signup page; empty until the digest app has one."""
    try:
        from digest import services as digest_services

        latest_edition_sample = digest_services.latest_edition_sample
    except (ImportError, AttributeError):  # a digest app without the sample function (yet)
        return []
    return list(latest_edition_sample(limit=limit))


def _email_context(subscriber, **extra):
    return {
        "subscriber": subscriber,
        "site_url": settings.SITE_URL,
        "postal_address": settings.EMAIL_POSTAL_ADDRESS,
        "contact_email": settings.CONTACT_EMAIL,
        **extra,
    }


def _claim_email_slot(subscriber, field):
    """Stamp ``field`` with now unless it is younger than the cooldown; True if stamped.

    A single conditional UPDATE, so two simultaneous requests cannot both win.
    """
    now = timezone.now()
    fresh = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now - EMAIL_COOLDOWN})
    claimed = Subscriber.objects.filter(fresh, pk=subscriber.pk).update(**{field: now})
    if claimed:
        setattr(subscriber, field, now)
    return bool(claimed)


def _keep_email_slot(subscriber, field):
    """Stamp ``field`` again with now, if it still holds the stamp this email took: a deferred
    email keeps its address's slot until its next try (``account_email_retry_delay``), so that
    the reader asking again meanwhile cannot have a second one sent beside it."""
    now = timezone.now()
    if Subscriber.objects.filter(pk=subscriber.pk, **{field: getattr(subscriber, field)}).update(**{field: now}):
        setattr(subscriber, field, now)


def account_email_retry_delay(retries):
    """Seconds before the next try of a deferred account email: ``ACCOUNT_EMAIL_RETRY_DELAYS``,
    each at most the address's cooldown, within which the slot stamped at the last try holds."""
    return min(settings.ACCOUNT_EMAIL_RETRY_DELAYS[retries], int(EMAIL_COOLDOWN.total_seconds()))


class AccountEmailDeferred(Exception):
    """The mail system said "not now" to an account email and took nothing: it may be tried again."""


def deferred_by_the_mail_system(exc):
    """A send error after which nothing was sent and a later try may work: an SMTP 4xx, an
    ESP's 429 or 5xx, a connection never made (``digest.sending.classify_send_error``). A lost
    answer is not one: the email may have gone out."""
    from digest.sending import classify_send_error

    return classify_send_error(exc) == "transient"


def _send_or_release(
    subscriber, field, previous, name, context, subject, connection=None, may_defer=False, to=None
):
    """Send one email (to the reader's address, or ``to``); if the mail system fails, give the
    slot back so a retry can work.

    ``may_defer``: raise ``AccountEmailDeferred``, the slot kept, when the mail system only
    deferred it, for the caller to try again later."""
    try:
        send_email(name, context, to or subscriber.email, subject, connection=connection)
    except Exception as exc:
        if may_defer and deferred_by_the_mail_system(exc):
            logger.warning("The mail system deferred the %s email to subscriber %s: %s", name, subscriber.pk, exc)
            _keep_email_slot(subscriber, field)
            raise AccountEmailDeferred(str(exc)) from exc
        logger.exception("Could not send the %s email to subscriber %s", name, subscriber.pk)
        Subscriber.objects.filter(pk=subscriber.pk).update(**{field: previous})
        setattr(subscriber, field, previous)
        return False
    return True


@dataclass(frozen=True)
class AccountEmail:
    """An email the signup and "send it again" forms send, and when a reader may get it."""

    slot: str  # the field stamped when it is sent (one per EMAIL_COOLDOWN)
    subject: str
    statuses: tuple  # the reader's statuses it is still for when a worker sends it
    to: str = "email"  # the field holding the address it goes to


ACCOUNT_EMAILS = {
    "confirm": AccountEmail("confirmation_sent_at", CONFIRM_SUBJECT, NOT_YET_JOINED),
    "already_subscribed": AccountEmail("notice_sent_at", "You are already subscribed to Paperboy", JOINED),
    "confirm_new_address": AccountEmail(
        "address_change_sent_at", "Confirm your new address for Paperboy", MOVABLE, to="new_email"
    ),
}


def send_confirmation(subscriber):
    """Email a fresh confirmation link, at most once per address per ten minutes; False
    when one went out less than ten minutes ago."""
    return hand_over_account_email(subscriber, "confirm")


def send_already_subscribed(subscriber):
    """Tell a subscriber who signed up again where their preferences are (same cap)."""
    return hand_over_account_email(subscriber, "already_subscribed")


def hand_over_account_email(subscriber, name):
    """Take the email's slot and leave the sending to a worker; True once handed over.

    The forms answer the same page whatever the address, and must take the same time too:
    sent within the request, a confirmation or reminder would make the answer for a known
    address slower by the mail system's round trip than for an unknown or blocked one, and
    would hold a web process while the ESP is slow. Sent in the request only when the broker
    cannot be reached (or with no broker: the embedded default runs tasks in-process)."""
    slot = ACCOUNT_EMAILS[name].slot
    previous = getattr(subscriber, slot)
    if not _claim_email_slot(subscriber, slot):
        return False
    return _hand_over(subscriber, name, previous)


def _hand_over(subscriber, name, previous):
    """Queue the account email ``name`` whose slot was taken (``previous``: the slot's value before)."""
    from .tasks import send_account_email

    try:
        send_account_email.delay(subscriber.pk, name, previous and previous.isoformat())
    except BrokerError:
        logger.warning("Queue unreachable: sending the %s email to subscriber %s in the request", name, subscriber.pk)
        return send_account_email_now(subscriber, name, previous)
    return True


def send_account_email(subscriber_id, name, previous=None, may_defer=False):
    """The worker's part of ``hand_over_account_email``: send it, unless the reader has since
    left the statuses it is for (or been deleted). ``previous``: the slot's value before it
    was taken, as ISO text, given back if the mail system fails. ``may_defer``: raise
    ``AccountEmailDeferred`` (the slot kept) when the mail system only deferred it."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    email = ACCOUNT_EMAILS[name]
    if subscriber is None or subscriber.status not in email.statuses or not getattr(subscriber, email.to):
        logger.info("The %s email to subscriber %s is no longer due", name, subscriber_id)
        return False
    previous = datetime.fromisoformat(previous) if previous else None
    return send_account_email_now(subscriber, name, previous, may_defer=may_defer)


def send_account_email_now(subscriber, name, previous, may_defer=False):
    email = ACCOUNT_EMAILS[name]
    if name == "confirm":
        context = _email_context(subscriber, confirm_url=confirm_url(subscriber))
    elif name == "confirm_new_address":
        context = _email_context(subscriber, confirm_url=new_address_url(subscriber))
    else:
        context = _email_context(
            subscriber, preferences_url=preferences_url(subscriber), unsubscribe_url=unsubscribe_url(subscriber)
        )
    return _send_or_release(
        subscriber, email.slot, previous, name, context, email.subject, to=getattr(subscriber, email.to),
        may_defer=may_defer,
    )


# --- Joining ----------------------------------------------------------------


def _apply_preferences(subscriber, preferences):
    for name in PREFERENCE_FIELDS:
        if name in preferences:
            setattr(subscriber, name, preferences[name])


def _create_pending(email, preferences, consent_note):
    subscriber = Subscriber(email=email, status=Status.PENDING, consent_note=consent_note[:200])
    _apply_preferences(subscriber, preferences)
    try:
        with transaction.atomic():
            subscriber.save()
    except IntegrityError:  # the same address, submitted at the same moment
        return find_subscriber(email), False
    return subscriber, True


def request_subscription(email, preferences, ip=None):
    """Start, or restart, the double opt-in for ``email``.

    New address: a pending subscriber and a confirmation email. Pending or
    unsubscribed: a fresh confirmation email, and the submitted preferences:
    at once for a signup nobody confirmed yet (nothing is at stake until the
    mailbox owner confirms); for a reader who confirmed once and left, kept
    apart until the link is followed (``signup_request``), since anyone may
    type their address and "Subscribe again" on their preferences page brings
    them back as they left, their record of consent with them. Active or
    paused: nothing changes; the owner gets a reminder with their preferences
    link. Bounced, complained or suppressed: nothing at all. The caller shows
    the same page in every case.
    """
    if is_blocked(email):
        return SignupResult.BLOCKED
    note = f"Requested on the signup form from {ip or 'an unknown address'}"
    subscriber = find_subscriber(email)
    created = False
    if subscriber is None:
        subscriber, created = _create_pending(email, preferences, note)
    if created:
        send_confirmation(subscriber)
        return SignupResult.CREATED
    if subscriber.status in NOT_YET_JOINED:
        if subscriber.confirmed_at is None:
            _apply_preferences(subscriber, preferences)
            subscriber.consent_note = note[:200]
            subscriber.save(update_fields=[*PREFERENCE_FIELDS, "consent_note", "updated_at"])
        else:
            subscriber.signup_request = signup_request(preferences, note)
            subscriber.save(update_fields=["signup_request", "updated_at"])
        sent = send_confirmation(subscriber)
        return SignupResult.CONFIRMATION_SENT if sent else SignupResult.THROTTLED
    if subscriber.status in JOINED:
        send_already_subscribed(subscriber)
        return SignupResult.ALREADY_SUBSCRIBED
    return SignupResult.BLOCKED


def signup_request(preferences, note):
    """What a signup asks for, as ``Subscriber.signup_request`` keeps it until it is confirmed."""
    return {
        "preferences": {name: preferences[name] for name in PREFERENCE_FIELDS if name in preferences},
        "consent_note": note[:200],
    }


def resend_confirmation(email):
    """The "send it again" form: like signing up again, but never creates anyone."""
    subscriber = find_subscriber(email)
    if subscriber is None or is_blocked(email):
        return SignupResult.IGNORED
    if subscriber.status in NOT_YET_JOINED:
        sent = send_confirmation(subscriber)
        return SignupResult.CONFIRMATION_SENT if sent else SignupResult.THROTTLED
    if subscriber.status in JOINED:
        send_already_subscribed(subscriber)
        return SignupResult.ALREADY_SUBSCRIBED
    return SignupResult.BLOCKED


def can_confirm(subscriber, requested_at=None):
    """May a confirmation link requested at ``requested_at`` (a UNIX time) activate them?

    Pending: yes. Unsubscribed: only with a link requested after they left, so
    an old link cannot undo an unsubscription. Anything else: no.
    """
    if subscriber.status == Status.PENDING:
        return True
    if subscriber.status == Status.UNSUBSCRIBED and requested_at is not None:
        left = subscriber.unsubscribed_at
        try:
            return left is None or datetime.fromtimestamp(requested_at, tz=UTC) > left
        except (TypeError, ValueError, OverflowError, OSError):  # not a UNIX time
            return False
    return False


def confirm_subscriber(subscriber, requested_at=None):
    """Activate a subscriber who followed their confirmation link; True once they are in.

    Idempotent: an active or paused subscriber is already confirmed.
    """
    if subscriber.status in JOINED:
        return True
    if not can_confirm(subscriber, requested_at):
        return False
    now = timezone.now()
    request = subscriber.signup_request or {}
    note = f"{request.get('consent_note', subscriber.consent_note)}; confirmed by email link {now:%Y-%m-%d %H:%M} UTC"
    with transaction.atomic():
        Subscriber.objects.filter(pk=subscriber.pk, status=subscriber.status).update(
            status=Status.ACTIVE,
            confirmed_at=now,
            unsubscribed_at=None,
            unsubscribed_via="",
            consent_note=note.lstrip("; ")[:200],
            signup_request=None,
            updated_at=now,
            **request.get("preferences", {}),  # the preference fields only (``signup_request``)
        )
        Suppression.objects.filter(email_hash=email_hash(subscriber.email)).exclude(
            reason__in=BLOCKING_SUPPRESSIONS
        ).delete()
    subscriber.refresh_from_db()
    return subscriber.status in JOINED


# --- Steering ---------------------------------------------------------------


def update_preferences(subscriber, preferences):
    _apply_preferences(subscriber, preferences)
    subscriber.save(update_fields=[*PREFERENCE_FIELDS, "updated_at"])
    return subscriber


def _move(subscriber, from_statuses, to_status, **fields):
    moved = _move_by_id(subscriber.pk, from_statuses, to_status, **fields)
    subscriber.refresh_from_db()
    return moved


def _move_by_id(subscriber_id, from_statuses, to_status, **fields):
    """One conditional UPDATE; True if the subscriber was in ``from_statuses``."""
    moved = Subscriber.objects.filter(pk=subscriber_id, status__in=from_statuses).update(
        status=to_status, updated_at=timezone.now(), **fields
    )
    return bool(moved)


def pause(subscriber):
    return _move(subscriber, [Status.ACTIVE], Status.PAUSED)


def resume(subscriber):
    """Resume a pause, or re-join after unsubscribing.

    Only reachable through the preferences link, which was mailed to an
    address that confirmed before: the same proof a confirmation link gives.
    """
    if subscriber.confirmed_at is None:
        return False
    return _move(
        subscriber,
        [Status.PAUSED, Status.UNSUBSCRIBED],
        Status.ACTIVE,
        unsubscribed_at=None,
        unsubscribed_via="",
        signup_request=None,  # a signup since they left is not theirs to take up
    )


def revoke_links(subscriber, asked_by_reader=False):
    """Rotate the secret so every link mailed so far stops working, and mail a new one.

    The secret is rotated whatever the status: that is what revokes the links. The new
    link is mailed to an active or paused reader; to a pending or unsubscribed one only when
    they asked for it themselves (an operator's revoke must not email people who never
    confirmed or who left); and never to a bounced, complained or suppressed address.

    Unsubscribe links are the exception: they keep working (see ``tokens.read_token``).
    """
    subscriber.token_secret = new_token_secret()
    subscriber.new_email = ""  # its link was one of those revoked
    subscriber.save(update_fields=["token_secret", "new_email", "updated_at"])
    if subscriber.status not in (JOINED + NOT_YET_JOINED if asked_by_reader else JOINED):
        return NewLinkResult.NOT_EMAILED
    context = _email_context(subscriber, preferences_url=preferences_url(subscriber))
    try:
        send_email("new_link", context, subscriber.email, "Your new Paperboy preferences link")
    except Exception:
        logger.exception("Could not send the new link to subscriber %s", subscriber.pk)
        return NewLinkResult.EMAIL_FAILED
    return NewLinkResult.EMAILED


# --- Moving to a new address -------------------------------------------------


class AddressChangeResult(enum.Enum):
    REQUESTED = "requested"  # the answer to every accepted request, whether a link went out or not
    SAME = "same"
    THROTTLED = "throttled"
    NOT_ALLOWED = "not allowed"


class AddressMoveResult(enum.Enum):
    MOVED = "moved"
    TAKEN = "taken"  # another reader, who confirmed it, has the address
    BLOCKED = "blocked"  # the address bounced, complained or was suppressed
    STALE = "stale"  # not the address asked for last (or the move is done)
    NOT_ALLOWED = "not allowed"


def can_change_address(subscriber):
    return subscriber.confirmed_at is not None and subscriber.status in MOVABLE


def address_waiting(subscriber):
    """The new address whose link may still move the reader, or "": once the link has
    expired, the preferences page no longer says it waits (the reader asks again)."""
    sent_at = subscriber.address_change_sent_at
    if not subscriber.new_email or sent_at is None:
        return ""
    expired = sent_at < timezone.now() - timedelta(seconds=NEW_ADDRESS_MAX_AGE)
    return "" if expired else subscriber.new_email


def _confirmed_holder(subscriber, email):
    """Another reader with ``email`` who ever confirmed it (``_holds_the_address``)."""
    other = Subscriber.objects.with_email(email).exclude(pk=subscriber.pk).first()
    return other if other is not None and _holds_the_address(other) else None


def _holds_the_address(other):
    """Whether a move must leave ``other``'s address to them: a signup never confirmed holds
    nothing a move would take from anyone (``_move_to`` deletes it)."""
    return other.confirmed_at is not None or other.status != Status.PENDING


def request_address_change(subscriber, email):
    """Start moving ``subscriber`` to ``email``: the address is kept as ``new_email`` and a
    link that moves them is mailed to it (a worker sends it, at most once per ten minutes).

    The answer is ``REQUESTED`` whether or not the link went out: for an address another
    reader has, or one on the suppression list, nothing is sent, and the page must not tell
    whoever holds a preferences link who else subscribes. Their digests keep going to the
    old address until the link is followed."""
    if not can_change_address(subscriber):
        return AddressChangeResult.NOT_ALLOWED
    if email.lower() == subscriber.email.lower():
        return AddressChangeResult.SAME
    previous = subscriber.address_change_sent_at
    if not _claim_email_slot(subscriber, "address_change_sent_at"):
        return AddressChangeResult.THROTTLED
    Subscriber.objects.filter(pk=subscriber.pk).update(new_email=email, updated_at=timezone.now())
    subscriber.new_email = email
    obstacle = new_address_obstacle(subscriber, email)
    if obstacle:
        logger.info("No new-address link sent for subscriber %s: the address is %s", subscriber.pk, obstacle)
    else:
        _hand_over(subscriber, "confirm_new_address", previous)
    return AddressChangeResult.REQUESTED


def new_address_obstacle(subscriber, email):
    """Why no link would be mailed to ``email`` ("blocked", "taken"), or None: what
    ``request_address_change`` keeps from the reader, for an operator to be told."""
    if is_blocked(email):
        return "blocked"
    if _confirmed_holder(subscriber, email):
        return "taken"
    return None


def is_address_asked_for(subscriber, address_key):
    """Whether a new-address link carrying ``address_key`` is for the address the reader asked for last."""
    return bool(subscriber.new_email) and new_address_key(subscriber.new_email) == address_key


def confirm_new_address(subscriber, address_key):
    """Move ``subscriber`` to the new address whose link was followed (``address_key``:
    ``new_address_key`` of the address the link was made for). Interests, votes and the
    ledger stay theirs; every earlier link stops working (the preferences link with it,
    ``subscriber`` comes back with the new secret); a bounced reader is active again, the new
    address having just received our email. The old address is told, unless it bounced."""
    email = subscriber.new_email
    if not is_address_asked_for(subscriber, address_key):
        return AddressMoveResult.STALE
    if not can_change_address(subscriber):
        return AddressMoveResult.NOT_ALLOWED
    if is_blocked(email):
        return AddressMoveResult.BLOCKED
    old_email, old_status = subscriber.email, subscriber.status
    try:
        moved = _move_to(subscriber, email)
    except IntegrityError:  # another reader took the address meanwhile
        moved = AddressMoveResult.TAKEN
    if moved is not AddressMoveResult.MOVED:
        return moved
    subscriber.refresh_from_db()
    if old_status != Status.BOUNCED:
        tell_old_address(subscriber, old_email)
    return moved


def _move_to(subscriber, email):
    now = timezone.now()
    note = f"{subscriber.consent_note}; new address confirmed by email link {now:%Y-%m-%d %H:%M} UTC"
    with transaction.atomic():
        holder = Subscriber.objects.with_email(email).exclude(pk=subscriber.pk).select_for_update().first()
        if holder is not None:
            if _holds_the_address(holder):
                return AddressMoveResult.TAKEN
            holder.delete()
        moved = Subscriber.objects.filter(pk=subscriber.pk, new_email=email, status__in=MOVABLE).update(
            email=email,
            new_email="",
            token_secret=new_token_secret(),
            status=Case(When(status=Status.BOUNCED, then=Value(Status.ACTIVE)), default=F("status")),
            consent_note=note.lstrip("; ")[:200],
            updated_at=now,
        )
        Suppression.objects.filter(email_hash=email_hash(email)).exclude(reason__in=BLOCKING_SUPPRESSIONS).delete()
    return AddressMoveResult.MOVED if moved else AddressMoveResult.STALE


def tell_old_address(subscriber, old_email):
    """A note to the address a reader left: if someone else used a leaked preferences link
    to move them, this is how they find out. A worker sends it, tried again while the mail
    system defers it, as account emails are; without a broker, within the request."""
    from .tasks import send_address_changed_note

    try:
        send_address_changed_note.delay(subscriber.pk, old_email)
    except BrokerError:
        logger.warning("Queue unreachable: telling the old address of subscriber %s in the request", subscriber.pk)
        send_address_changed_note_now(subscriber, old_email)


def send_address_changed_note(subscriber_id, old_email, may_defer=False):
    """The worker's part of ``tell_old_address``, unless the reader has since been deleted or
    moved back to ``old_email``. ``may_defer``: raise ``AccountEmailDeferred`` when the mail
    system only deferred it."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None or subscriber.email.lower() == old_email.lower():
        logger.info("The note to the old address of subscriber %s is no longer due", subscriber_id)
        return False
    return send_address_changed_note_now(subscriber, old_email, may_defer=may_defer)


def send_address_changed_note_now(subscriber, old_email, may_defer=False):
    context = _email_context(subscriber, old_email=old_email)
    try:
        send_email("address_changed", context, old_email, "Your Paperboy digests go to a new address")
    except Exception as exc:
        if may_defer and deferred_by_the_mail_system(exc):
            logger.warning("The mail system deferred the note to the old address of subscriber %s: %s", subscriber.pk, exc)
            raise AccountEmailDeferred(str(exc)) from exc
        logger.exception("Could not tell the old address of subscriber %s about the move", subscriber.pk)
        return False
    return True


# --- Leaving ----------------------------------------------------------------


def unsubscribe(subscriber, via):
    """Stop every email to ``subscriber`` now; True if this call changed anything.

    Idempotent: unsubscribed, bounced, complained or suppressed subscribers are
    left as they are. ``via`` records how (page, one-click, preferences, webhook…).
    """
    return _move(subscriber, RECEIVING, Status.UNSUBSCRIBED, **_unsubscribed_fields(via))


def _unsubscribed_fields(via):
    return {"unsubscribed_at": timezone.now(), "unsubscribed_via": via[:32]}


def unsubscribe_by_id(subscriber_id, via):
    """``unsubscribe`` for a subscriber known only by id: one conditional UPDATE, no read.

    The RFC 8058 one-click path, where the answer is the same whatever happened;
    True if this call changed anything (False: already left, or no such subscriber).
    """
    return _move_by_id(subscriber_id, RECEIVING, Status.UNSUBSCRIBED, **_unsubscribed_fields(via))


def suppress(subscriber, reason):
    """Never email ``subscriber`` again, for ``reason``.

    ESP webhooks pass "bounced" or "complained"; any other reason (an
    operator's) gives the status "suppressed". The hashed address goes on
    the suppression list too, so that it stays blocked after the subscriber
    is deleted. A bounce leaves a complained subscriber (and entry) as they are.
    Idempotent: True if this call changed the subscriber's status.
    """
    status = SUPPRESSION_STATUSES.get(reason, Status.SUPPRESSED)
    kept = NOT_REPLACED_BY.get(reason, ())
    with transaction.atomic():
        moved = Subscriber.objects.filter(pk=subscriber.pk).exclude(status__in=[status, *kept]).update(
            status=status, updated_at=timezone.now()
        )
        suppress_email(subscriber.email, reason)
    subscriber.refresh_from_db()
    return bool(moved)


def suppress_email(email, reason):
    """Put a bare address on the suppression list, whether or not anyone subscribed it
    (an entry for a complaint stays one when the address bounces later)."""
    hashed = email_hash(email)
    entry, created = Suppression.objects.get_or_create(email_hash=hashed, defaults={"reason": reason[:32]})
    if not created:
        Suppression.objects.filter(pk=entry.pk).exclude(reason__in=NOT_REPLACED_BY.get(reason, ())).update(
            reason=reason[:32]
        )


class AddressSuppressed(enum.Enum):
    SUBSCRIBER = "subscriber suppressed"
    ALREADY = "subscriber already suppressed"
    ADDRESS = "address without a subscriber suppressed"


def suppress_address(email, reason):
    """Never email ``email`` again, for ``reason``: its subscriber if it has one (their status
    becomes the reason), else the bare address on the suppression list. For bounces reported
    by email, which no ESP webhook brings in."""
    subscriber = Subscriber.objects.with_email(email).first()
    if subscriber is None:
        suppress_email(email, reason)
        return AddressSuppressed.ADDRESS
    return AddressSuppressed.SUBSCRIBER if suppress(subscriber, reason) else AddressSuppressed.ALREADY


def reactivate(subscriber):
    """An operator's override: active again, suppression lifted.

    Refused for anyone who never confirmed: consent cannot be made up. The result is
    true unless refused, whether this call moved the subscriber or found them active.
    """
    if subscriber.confirmed_at is None:
        return ReactivationResult.REFUSED
    with transaction.atomic():
        moved = _move(
            subscriber,
            [s for s in Status if s != Status.ACTIVE],
            Status.ACTIVE,
            unsubscribed_at=None,
            unsubscribed_via="",
            signup_request=None,  # back as they were, like "Subscribe again"
        )
        Suppression.objects.filter(email_hash=email_hash(subscriber.email)).delete()
    return ReactivationResult.REACTIVATED if moved else ReactivationResult.ALREADY_ACTIVE


def delete_subscriber(subscriber):
    """Erase the subscriber with their deliveries and feedback, keeping only a hashed suppression.

    The hash stops an import from re-adding the address; an existing stronger
    reason (bounced, complained) is kept. The admin's history of the reader (who
    changed, suppressed or deleted them, and when) stays, named by id: each entry
    named them by their address.
    """
    pk = subscriber.pk
    with transaction.atomic():
        Suppression.objects.get_or_create(
            email_hash=email_hash(subscriber.email), defaults={"reason": "deleted"}
        )
        subscriber.delete()
        name_deleted_readers_in_history([pk])


def name_deleted_readers_in_history(pks):
    """Name the deleted readers ``pks`` by id in the admin's history, where each entry named
    them by their address."""
    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Subscriber), object_id__in=[str(pk) for pk in pks]
    ).update(object_repr=Concat(Value("deleted subscriber "), F("object_id")))


# --- Data rights ------------------------------------------------------------


def _iso(value):
    return value.isoformat() if value else None


def export_subscriber_data(subscriber):
    """Everything Paperboy holds about one subscriber, as JSON-ready data."""
    from digest.models import Delivery, Feedback
    from papers.models import Paper

    deliveries = list(
        Delivery.objects.filter(subscriber=subscriber)
        .select_related("edition")
        .order_by("created_at")
    )
    paper_ids = {pk for d in deliveries for pk in d.paper_ids}
    papers = Paper.objects.in_bulk(paper_ids)
    feedback = (
        Feedback.objects.filter(subscriber=subscriber)
        .select_related("paper")
        .order_by("created_at")
    )
    return {
        "exported_at": timezone.now().isoformat(),
        "profile": {
            "email": subscriber.email,
            "new_email": subscriber.new_email or None,
            "status": subscriber.status,
            "interests": subscriber.interest_terms,
            "categories": subscriber.categories,
            "frequency": subscriber.frequency,
            "max_papers": subscriber.max_papers,
            "send_hour": subscriber.send_hour,
            "timezone": subscriber.timezone,
            "always_send_top": subscriber.always_send_top,
            "consent": subscriber.consent_note,
            "signup_awaiting_confirmation": subscriber.signup_request,
            "created_at": _iso(subscriber.created_at),
            "confirmed_at": _iso(subscriber.confirmed_at),
            "unsubscribed_at": _iso(subscriber.unsubscribed_at),
            "updated_at": _iso(subscriber.updated_at),
        },
        "deliveries": [
            {
                "edition": str(d.edition),
                "status": d.status,
                "papers": [_paper_ref(papers.get(pk), pk) for pk in d.paper_ids],
                "sent_at": _iso(d.sent_at),
                "delivered_at": _iso(d.delivered_at),
                "opened_at": _iso(d.opened_at),
                "clicked_at": _iso(d.clicked_at),
            }
            for d in deliveries
        ],
        "feedback": [
            {"paper": _paper_ref(f.paper, f.paper_id), "vote": f.vote, "at": _iso(f.created_at)}
            for f in feedback
        ],
    }


def _paper_ref(paper, pk):
    if paper is None:
        return {"id": pk}
    return {"arxiv_id": paper.arxiv_id, "title": paper.title}


# --- Import -----------------------------------------------------------------

IMPORT_BATCH_SIZE = 250
# What an imported row with earlier consent counts as, by the status it starts in.
IMPORTED_WITH_CONSENT = {Status.ACTIVE: ImportResult.ACTIVE, Status.PAUSED: ImportResult.PAUSED}


def _imported_subscriber(email, preferences, confirmed_at=None, consent_note="", paused=False):
    subscriber = Subscriber(email=email)
    _apply_preferences(subscriber, preferences)
    if confirmed_at:
        subscriber.status = Status.PAUSED if paused else Status.ACTIVE
        subscriber.confirmed_at = confirmed_at
        subscriber.consent_note = (consent_note or "Imported with earlier consent")[:200]
    else:
        subscriber.consent_note = "Imported; awaiting confirmation"
    return subscriber


def import_subscriber(email, preferences, confirmed_at=None, consent_note="", paused=False):
    """Add one subscriber from an operator's list.

    With ``confirmed_at`` (earlier, recorded consent) they start active, or
    paused if ``paused`` (a reader who had paused their digests); without,
    pending, with a confirmation email, whatever ``paused`` says. Existing and
    suppressed addresses are left alone. (A whole file goes through ``import_rows``.)
    """
    if suppression_reason(email) is not None:
        return ImportResult.SUPPRESSED
    if find_subscriber(email) is not None:
        return ImportResult.EXISTS
    subscriber = _imported_subscriber(email, preferences, confirmed_at, consent_note, paused)
    try:
        with transaction.atomic():
            subscriber.save()
    except IntegrityError:
        return ImportResult.EXISTS
    if subscriber.status == Status.PENDING:
        send_confirmation(subscriber)
        return ImportResult.PENDING
    return IMPORTED_WITH_CONSENT[subscriber.status]


def _existing_addresses(lowered):
    """Which of these lower-cased addresses have a subscriber (by the case-insensitive index)."""
    return set(
        Subscriber.objects.annotate(email_lower=Lower("email"))
        .filter(email_lower__in=lowered)
        .values_list("email_lower", flat=True)
    )


def import_rows(rows, seen=None):
    """Import validated CSV rows (``csv_io.ImportRow``) as ``import_subscriber`` would, in bulk.

    The same rules, row by row: a suppressed address (any reason) is skipped,
    then one that exists or came earlier in the file (``seen``: lower-cased
    addresses, updated here); the rest are inserted in one statement (active, or
    paused for a confirmed row paused in the file, or pending), pending ones
    with their confirmation slot taken, then each pending subscriber is
    sent a confirmation email. Returns a Counter of ImportResult, plus
    "confirmation_failed" for emails the mail system refused (those rows are
    imported; their slot is released so "Resend confirmation" can work).
    """
    seen = set() if seen is None else seen
    counts = Counter()
    hashes = {row.email: email_hash(row.email) for row in rows}
    suppressed = set(
        Suppression.objects.filter(email_hash__in=set(hashes.values())).values_list(
            "email_hash", flat=True
        )
    )
    existing = _existing_addresses({row.email.lower() for row in rows})
    now = timezone.now()
    new = []
    for row in rows:
        key = row.email.lower()
        if hashes[row.email] in suppressed:
            counts[ImportResult.SUPPRESSED] += 1
        elif key in existing or key in seen:
            counts[ImportResult.EXISTS] += 1
        else:
            seen.add(key)
            subscriber = _imported_subscriber(
                row.email, row.preferences, row.confirmed_at, row.consent_note, row.paused
            )
            if subscriber.status == Status.PENDING:
                subscriber.confirmation_sent_at = now  # the email below; the slot is taken
            new.append(subscriber)
    if not new:
        return counts
    Subscriber.objects.bulk_create(new, ignore_conflicts=True)
    # An address signed up meanwhile made its row conflict: ours has the token secret we made.
    created = {
        (email.lower(), secret): pk
        for email, secret, pk in Subscriber.objects.annotate(email_lower=Lower("email"))
        .filter(email_lower__in=[s.email.lower() for s in new])
        .values_list("email", "token_secret", "pk")
    }
    connection = get_connection()  # one mail connection for the batch's confirmations
    try:
        for subscriber in new:
            pk = created.get((subscriber.email.lower(), subscriber.token_secret))
            if pk is None:
                counts[ImportResult.EXISTS] += 1
                continue
            subscriber.pk = pk
            subscriber._state.adding, subscriber._state.db = False, "default"
            if subscriber.status != Status.PENDING:
                counts[IMPORTED_WITH_CONSENT[subscriber.status]] += 1
                continue
            counts[ImportResult.PENDING] += 1
            context = _email_context(subscriber, confirm_url=confirm_url(subscriber))
            if not _send_or_release(
                subscriber, "confirmation_sent_at", None, "confirm", context, CONFIRM_SUBJECT,
                connection=connection,
            ):
                counts["confirmation_failed"] += 1
                connection.close()  # a failed send may leave it broken: the next one reconnects
    finally:
        connection.close()
    return counts


def queue_import(csv_text, filename="", uploaded_by=None):
    """Store an uploaded CSV for the import task, after the file-level checks only.

    Raises ``csv_io.ImportFileError`` for a file that cannot be imported at all
    (no email column, not CSV, too many rows); rows are checked by the task.
    """
    rows = csv_io.check_import_text(csv_text)
    return SubscriberImport.objects.create(
        csv_data=csv_text.encode(),
        filename=_storable(filename)[:255],
        uploaded_by=uploaded_by,
        rows_total=rows,
    )


def _storable(text):
    """PostgreSQL refuses NUL in text and JSON: a hostile cell must not stop the record."""
    return str(text).replace("\x00", "\ufffd")


def run_import(import_id):
    """The import task: validate every row, import the valid ones in batches, record the outcome.

    Progress (``rows_done`` and the counts) is saved after every batch. A task
    delivered again after its worker died resumes after the last saved batch
    (rows of the interrupted batch then count as existing); one delivered
    again after the import finished does nothing. Returns the counts, or None.
    """
    Import = SubscriberImport
    claimed = Import.objects.filter(
        pk=import_id, status__in=[Import.Status.QUEUED, Import.Status.RUNNING]
    ).update(status=Import.Status.RUNNING, started_at=Coalesce("started_at", timezone.now()))
    if not claimed:
        return None
    record = Import.objects.get(pk=import_id)
    progress = Import.objects.filter(pk=import_id)
    try:
        parsed = csv_io.parse_import_text(bytes(record.csv_data).decode("utf-8"))
    except csv_io.ImportFileError as error:
        progress.update(
            status=Import.Status.FAILED,
            failure=_storable(error),
            finished_at=timezone.now(),
            csv_data=b"",
        )
        return None
    progress.update(
        rows_total=parsed.total,
        rows_valid=len(parsed.rows),
        row_errors=[[line, _storable(message)] for line, message in parsed.errors],
        ignored_columns=[_storable(column) for column in parsed.ignored_columns],
    )
    done = record.rows_done
    seen = {row.email.lower() for row in parsed.rows[:done]}
    try:
        while done < len(parsed.rows):
            batch = parsed.rows[done : done + IMPORT_BATCH_SIZE]
            counts = import_rows(batch, seen)
            done += len(batch)
            progress.update(
                rows_done=done,
                imported_pending=F("imported_pending") + counts[ImportResult.PENDING],
                imported_active=F("imported_active") + counts[ImportResult.ACTIVE],
                imported_paused=F("imported_paused") + counts[ImportResult.PAUSED],
                skipped_existing=F("skipped_existing") + counts[ImportResult.EXISTS],
                skipped_suppressed=F("skipped_suppressed") + counts[ImportResult.SUPPRESSED],
                confirmation_failures=F("confirmation_failures") + counts["confirmation_failed"],
            )
    except Exception as error:  # a time limit, a lost database: say where it stopped
        logger.exception("Subscriber import %s stopped after %s rows", import_id, done)
        progress.update(
            status=Import.Status.FAILED,
            failure=_storable(f"Stopped after {done} of {len(parsed.rows)} rows: {error!r}"),
            finished_at=timezone.now(),
        )
        return None
    progress.update(status=Import.Status.DONE, finished_at=timezone.now(), csv_data=b"")
    record.refresh_from_db()
    return {
        "pending": record.imported_pending,
        "active": record.imported_active,
        "paused": record.imported_paused,
        "existing": record.skipped_existing,
        "suppressed": record.skipped_suppressed,
        "invalid": len(record.row_errors),
    }
