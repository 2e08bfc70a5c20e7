"""ESP tracking webhooks (``/anymail/<esp>/tracking/``): recorded fast, applied once by Celery.

anymail validates each request (WEBHOOK_SECRET basic auth, plus the ESP's
signature where it has one) and sends every event to ``record_tracking_event``.
The receiver stores the event under its ``event_id`` (unique; events
without one get a key made from their content), so a repeated event is
stored once. Engagement events (delivered, opened, clicked: nearly one per
email) are handed to Celery (``digest.tasks.apply_webhook_event``) and the
ESP gets its answer at once. Events that must stop our email (bounced,
complained, unsubscribed: rare) are applied before answering, so the
subscriber is suppressed immediately even while the queues are busy with a
send; if that fails, the ESP's retry brings the event back.

``apply_event`` runs each stored event at most once (the row is locked and
marked applied in one transaction):

* ``bounced`` (anymail's name for a hard bounce) and ``complained`` suppress
  the subscriber; ``unsubscribed`` unsubscribes them. anymail also calls some
  temporary failures ``bounced`` (Postmark's soft bounces, Amazon SES's
  transient and undetermined ones); those are taken as the deferrals they are
  (``is_soft_bounce``) and change nothing, as Mailgun's temporary failures do.
  Mailgun's ``bounced`` for a message it dropped because the address is on its
  unsubscribe or complaint list is stamped on the delivery as a bounce, and
  unsubscribes the reader or suppresses them as complained (``mailgun_list_drop``);
* ``delivered``, ``opened`` and ``clicked`` stamp the delivery; an open implies
  delivery and a click an open, and the earliest time wins, so events arriving
  out of order or twice change nothing. Any of them, and a bounce, complaint or
  unsubscribe too, also settles a delivery left in ``sending`` (outcome unknown)
  as ``sent``: the ESP has it; so too one the stale sweep has failed meanwhile
  for that unknown outcome. A click
  also records which paper of the digest it was for (``clicked_paper``), so
  that the dashboard counts clicks per paper with one aggregate query;
* ``failed`` and ``rejected`` (Amazon SES: its stored template failed to render
  the message, or it rejected the message) fail the delivery with the ESP's
  reason (``fail_unsent_delivery``); it is not resent, and the reader is left
  alone: nothing says their address is at fault.
"""

import hashlib
import logging
from datetime import timedelta

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import EventType
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config.times import in_utc
from papers.models import Paper
from subscriptions.models import Subscriber

from . import calls
from .models import Delivery, SendCall, WebhookEvent
from .rendering import paper_links
from .retention import PRUNE_BATCH, deleted_in_batches

log = logging.getLogger(__name__)


TIMESTAMP_FIELDS = {
    EventType.DELIVERED: ["delivered_at"],
    EventType.OPENED: ["delivered_at", "opened_at"],
    EventType.CLICKED: ["delivered_at", "opened_at", "clicked_at"],
    EventType.BOUNCED: ["bounced_at"],
    EventType.COMPLAINED: ["complained_at"],
}
SUPPRESSING = {EventType.BOUNCED: "bounced", EventType.COMPLAINED: "complained"}
STOPPING = {*SUPPRESSING, EventType.UNSUBSCRIBED}
# A message the ESP took and then did not send: Amazon SES could not render its stored template
# (``failed``) or rejected the message (``rejected``: a virus). Nothing the reader did.
NOT_SENT = {EventType.FAILED, EventType.REJECTED}
HANDLED = {*TIMESTAMP_FIELDS, EventType.UNSUBSCRIBED, *NOT_SENT}
# Events only a message the ESP took can cause: a hard bounce and a list drop too (it tried,
# or refused it after taking the call), a complaint, an unsubscribe through its link.
PROOF_OF_SENDING = {EventType.DELIVERED, EventType.OPENED, EventType.CLICKED, *STOPPING}
TAKEN_BY_THE_ESP = PROOF_OF_SENDING | NOT_SENT  # events that show the ESP had the call
MAILGUN_LIST_REASONS = {"suppress-unsubscribe": EventType.UNSUBSCRIBED, "suppress-complaint": EventType.COMPLAINED}


def plain(value, limit):
    """``value`` as text a database stores: no NUL bytes nor lone surrogates, at most ``limit`` long."""
    text = str(value or "").replace("\x00", "")
    return text.encode("utf-8", "ignore").decode("utf-8")[:limit]


def event_key(event, esp_name):
    """The ESP's event id, or a digest of the event's content for ESPs that send none."""
    if event.event_id:
        return plain(f"{esp_name}:{event.event_id}", 200)
    parts = [esp_name, event.event_type, event.message_id, event.recipient,
             event.timestamp.isoformat() if event.timestamp else "", event.click_url]
    content = "|".join(plain(p, 1000) for p in parts)
    return f"{plain(esp_name, 40)}:sha256:" + hashlib.sha256(content.encode()).hexdigest()


def record_tracking_event(sender, event, esp_name, **kwargs):
    """anymail's tracking signal receiver: store the event once, apply it now or through Celery."""
    if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        raise AnymailWebhookValidationFailure("tracking webhooks are refused until WEBHOOK_SECRET is set")
    if event.event_type not in HANDLED or is_soft_bounce(event, esp_name):
        return
    stored = store_event(event, esp_name)
    if stored.applied_at is not None:
        log.info("webhook event repeated esp=%s type=%s", esp_name, event.event_type)
    elif event.event_type in STOPPING:
        apply_event(stored.pk)
    else:
        from .tasks import apply_webhook_event

        transaction.on_commit(lambda: apply_webhook_event.delay(stored.pk))


def is_soft_bounce(event, esp_name):
    """Whether a ``bounced`` event is a temporary failure that anymail names a bounce.

    Mailgun's temporary failures already come as ``deferred``. Postmark's bounce
    webhook names soft bounces (a full mailbox) and virus notifications ``bounced``
    too: only a ``HardBounce``, or a bounce that made Postmark deactivate the address
    (``Inactive``), stops it sending. Amazon SES's bounces are all ``bounced``; only a
    ``Permanent`` one is a hard bounce (``Transient``: a full mailbox, a message too
    large; ``Undetermined``: SES could not tell).
    """
    if event.event_type != EventType.BOUNCED or not isinstance(event.esp_event, dict):
        return False
    raw = event.esp_event
    if esp_name == "Postmark" and raw.get("RecordType") == "Bounce":
        return raw.get("Type") != "HardBounce" and raw.get("Inactive") is not True
    if esp_name == "Amazon SES" and isinstance(raw.get("bounce"), dict):
        return raw["bounce"].get("bounceType") != "Permanent"
    return False


def mailgun_list_drop(event, esp_name):
    """For a message Mailgun dropped because the address is on its unsubscribe or complaint
    list, what the reader did: ``unsubscribed`` or ``complained``; else None.

    Mailgun does not send to an address on one of its suppression lists: it reports a
    permanent ``failed`` event whose reason names the list, and anymail calls every such
    event ``bounced``. Only ``suppress-bounce`` (an address that bounced before) is a
    bounce: the reader on the unsubscribe list left through Mailgun, the one on the
    complaint list reported an earlier email as spam. The delivery is stamped as a
    bounce either way: the message was not delivered.
    """
    if esp_name != "Mailgun" or event.event_type != EventType.BOUNCED or not isinstance(event.esp_event, dict):
        return None
    data = event.esp_event.get("event-data")
    return MAILGUN_LIST_REASONS.get(data.get("reason")) if isinstance(data, dict) else None


def event_time(event, esp_name):
    """When the ESP says the event happened, in UTC (``config.times``); None when it gave no
    time, or one outside years 1-9999 in UTC: the event is kept, and dated when it arrived."""
    if event.timestamp is None:
        return None
    utc = in_utc(event.timestamp)
    if utc is None:
        log.warning("webhook event time out of range esp=%s type=%s", esp_name, event.event_type)
    return utc


def store_event(event, esp_name):
    """The stored row for ``event``: new, or the one a repeat of it finds."""
    key = event_key(event, esp_name)
    reader_event = mailgun_list_drop(event, esp_name)
    try:
        with transaction.atomic():
            return WebhookEvent.objects.create(
                event_id=key,
                esp=plain(esp_name, 40),
                event_type=event.event_type,
                recipient=plain(event.recipient, 254),
                message_id=plain(event.message_id, 300),
                occurred_at=event_time(event, esp_name),
                details={
                    "metadata": {plain(k, 100): plain(v, 300) for k, v in (event.metadata or {}).items()},
                    "reject_reason": plain(event.reject_reason, 40),
                    "description": plain(event.description, 500),
                    **({"click_url": plain(event.click_url, 2000)} if event.click_url else {}),
                    **({"reader_event": reader_event} if reader_event else {}),
                },
            )
    except IntegrityError:
        return WebhookEvent.objects.get(event_id=key)


def find_delivery(event):
    """The delivery an event is about: by the delivery id we sent as metadata, else by message id."""
    recipient = Q(subscriber__email__iexact=event.recipient) if event.recipient else Q()
    delivery_id = str(event.details.get("metadata", {}).get("delivery_id", ""))
    if delivery_id.isascii() and delivery_id.isdigit():
        found = Delivery.objects.filter(recipient, pk=int(delivery_id)).first()
        if found is not None:
            return found
    if event.message_id:
        bare = event.message_id.strip("<>")
        found = Delivery.objects.filter(
            recipient, esp_message_id__in=[bare, f"<{bare}>"]
        ).order_by("-pk").first()
        if found is None and event.recipient:
            found = delivery_in_call(recipient, [bare, f"<{bare}>"])
        return found
    return None


def delivery_in_call(recipient, message_ids):
    """The recipient's delivery in the ESP call of that message id, before the call is settled."""
    for call in SendCall.objects.filter(esp_message_id__in=message_ids).order_by("-pk")[:5]:
        found = Delivery.objects.filter(recipient, pk__in=call.delivery_ids).first()
        if found is not None:
            return found
    return None


def find_subscriber(event, delivery):
    if delivery is not None:
        return delivery.subscriber
    if event.recipient:
        return Subscriber.objects.with_email(event.recipient).first()
    return None


# A delivery whose call's outcome is unknown: still ``sending``, or failed for that by the stale sweep.
OUTCOME_UNKNOWN = Q(status=Delivery.Status.SENDING) | Q(status=Delivery.Status.FAILED, reason=calls.STALE_REASON)


def stamp_delivery(delivery, event):
    """Set each timestamp the event implies, unless an earlier one is already there."""
    moment = event.occurred_at or event.received_at
    for name in TIMESTAMP_FIELDS.get(event.event_type, []):
        Delivery.objects.filter(
            Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gt": moment}), pk=delivery.pk
        ).update(**{name: moment})
    if event.event_type in PROOF_OF_SENDING:
        Delivery.objects.filter(OUTCOME_UNKNOWN, pk=delivery.pk).update(
            status=Delivery.Status.SENT, sent_at=moment, reason=calls.SETTLED_BY_WEBHOOK
        )
    elif event.event_type in NOT_SENT:
        fail_unsent_delivery(delivery, event)


def fail_unsent_delivery(delivery, event):
    """The ESP took the message and did not send it: the delivery is failed with the ESP's words.
    Nothing resends it by itself (a broken stored template fails every message alike): an operator
    fixes the cause, then resends the failed deliveries from the admin. The reader is left as they are."""
    said = event.details.get("description") or event.details.get("reject_reason") or event.event_type
    reason = f"the ESP did not send it ({event.event_type}): {said}"[:300]
    failed = Delivery.objects.filter(OUTCOME_UNKNOWN | Q(status=Delivery.Status.SENT), pk=delivery.pk).update(
        status=Delivery.Status.FAILED, sent_at=None, reason=reason
    )
    if failed:
        log.warning("digest not sent by the ESP delivery=%s esp=%s type=%s reason=%s",
                    delivery.pk, event.esp, event.event_type, plain(said, 200))


def clicked_paper(delivery, url):
    """The paper of ``delivery`` whose link ``url`` is (a trailing slash aside), or None.

    Clicks on other links of the digest (unsubscribe, preferences, the edition
    page) are for no paper. When papers of one digest share a link (a code
    repository), the click counts for the first of them in the digest.
    """
    wanted = comparable_url(url)
    if not wanted or not delivery.paper_ids:
        return None
    papers = Paper.objects.in_bulk(delivery.paper_ids)
    for paper_id in delivery.paper_ids:
        paper = papers.get(paper_id)
        if paper is not None and any(comparable_url(link) == wanted for _, link in paper_links(paper)):
            return paper
    return None


def comparable_url(url):
    return str(url or "").strip().rstrip("/")


def reader_event_type(event):
    """What the stored event does to the reader: its own type, unless it was stored with
    another (``mailgun_list_drop``)."""
    return event.details.get("reader_event") or event.event_type


def change_subscriber(subscriber, event_type):
    from subscriptions import services

    if event_type in SUPPRESSING:
        services.suppress(subscriber, reason=SUPPRESSING[event_type])
        return f"subscriber suppressed ({SUPPRESSING[event_type]})"
    if event_type == EventType.UNSUBSCRIBED:
        services.unsubscribe(subscriber, via="esp")
        return "subscriber unsubscribed"
    return ""


def suppress_address(address, event_type):
    """A bounce or complaint for an address nobody subscribes (a reader deleted since, say):
    the address goes on the suppression list, so that a later signup with it is refused."""
    from subscriptions import services

    services.suppress_email(address, SUPPRESSING[event_type])
    return f"address suppressed ({SUPPRESSING[event_type]}), no subscriber"


def apply_event(event_pk):
    """Apply one stored event, once; returns what it did."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().filter(pk=event_pk, applied_at__isnull=True).first()
        if event is None:
            return "already applied"
        delivery = find_delivery(event)
        subscriber = find_subscriber(event, delivery)
        outcomes = []
        paper = None
        if delivery is not None:
            delivery = calls.settle_call_of(delivery, proof_of_sending=event.event_type in TAKEN_BY_THE_ESP)
            stamp_delivery(delivery, event)
            outcomes.append(f"delivery {delivery.pk} updated")
            if event.event_type == EventType.CLICKED:
                paper = clicked_paper(delivery, event.details.get("click_url"))
        reader_event = reader_event_type(event)
        if subscriber is not None:
            outcomes.append(change_subscriber(subscriber, reader_event))
        elif reader_event in SUPPRESSING and event.recipient:
            outcomes.append(suppress_address(event.recipient, reader_event))
        outcome = "; ".join(o for o in outcomes if o) or "no matching delivery or subscriber"
        WebhookEvent.objects.filter(pk=event.pk).update(
            applied_at=timezone.now(), delivery=delivery, clicked_paper=paper, outcome=outcome[:200]
        )
    log.info("webhook event applied esp=%s type=%s outcome=%s", event.esp, event.event_type, outcome)
    return outcome


def prune_webhook_events(now=None, batch_size=PRUNE_BATCH):
    """Delete applied events received more than WEBHOOK_EVENT_RETENTION_DAYS ago, a batch at
    a time (short transactions, however many there are); returns how many.

    A delivery keeps what its events stamped on it; an event not applied yet is
    kept whatever its age, for an operator to look at.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    old = WebhookEvent.objects.filter(received_at__lt=cutoff, applied_at__isnull=False).order_by("received_at")
    deleted = deleted_in_batches(old, batch_size)
    log.info("webhook events pruned count=%d older_than=%s", deleted, cutoff.isoformat())
    return deleted
