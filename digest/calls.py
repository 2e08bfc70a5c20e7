"""Claims per ESP call: the ledger of DIGEST_CLAIMS_PER_CALL.

A batch of readers is claimed by one ``SendCall`` row instead of a new version
of each reader's ``Delivery`` row; the deliveries stay ``pending`` while they
are sent, and the call holds their outcome, papers and message id. Writing a
row per reader beside the sending thread is what kept two send workers on two
cores at about 1.5 times one (docs/performance-log.md); a row per call of 250
readers is not.

The rule that sends a reader at most once:

- A delivery reaches the ESP only in a call whose claim saw it ``pending`` and
  in no live call (``sending``, ``sent`` or ``failed``, and not settled yet:
  settling writes the outcome on every row it carries, in the same transaction
  as it marks the call settled). Claims of an edition's
  readers, per call or per row, are made one at a time under the edition's lock
  (``claims_of``), each seeing those before it.
- A delivery's status is its own once it is not ``pending``; before that it is
  its live, unsettled call's, if it has one (``effective``).
- A call the ESP surely did not take is ``returned``: its readers may be claimed
  again. A reader whose own message the ESP surely did not take in a call it took
  (an SES bulk entry throttled) leaves the call before the call is marked sent
  (``release_recipients``): no longer carried, claimed again like the others. A
  call whose outcome is unknown stays ``sending`` and is failed by the stale
  sweep, never resent.
- An ESP event proving one message of a call sent can be applied before the
  worker records the call's answer: it settles the whole call as sent
  (``settle_call_of``). The answer, recorded after it, still decides the readers
  whose own message the ESP did not take: those rows, settled from the call and
  named by no event of their own, are written again (``settled_by_proof_of_another``).

Once a call is over, ``settle_calls`` copies its outcome onto its rows (the
beat's sweep does it for every finished call, an ESP webhook for the call of the
delivery it is about), so that everything else reads the ledger from its rows.
Until then the send path, ``past_papers``, the web view and the feed read a
row's outcome through its call.
"""

import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from subscriptions.models import Subscriber

from .models import Delivery, SendCall, WebhookEvent
from .sql import id_array

LIVE = (SendCall.Status.SENDING, SendCall.Status.SENT, SendCall.Status.FAILED)
FINISHED = (SendCall.Status.SENT, SendCall.Status.RETURNED, SendCall.Status.FAILED)
CLAIM_LOCK = 7301  # the advisory lock's first key; the second is the edition's id
STALE_REASON = "send outcome unknown (stale); not resent"
SETTLED_BY_WEBHOOK = "settled by the ESP's webhook"  # a row or call left in ``sending``, proved sent
SETTLE_CALLS_AT_ONCE = 40


def enabled():
    return settings.DIGEST_CLAIMS_PER_CALL


@contextmanager
def claims_of(edition_id):
    """A transaction holding ``edition_id``'s claim lock, taken before anything is read, so
    that a claim sees every claim of the edition made before it (PostgreSQL; elsewhere
    the database allows one writer at a time)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [CLAIM_LOCK, edition_id])
        yield


# --- Claiming ---------------------------------------------------------------------


def claim_call(edition_id, entries):
    """Claim a call for ``entries``, (delivery id, paper ids, why-lines) each.

    Returns (token, ids won): the deliveries still ``pending``, whose reader is
    still active, in no live call. No call is made when none is won.
    """
    token = uuid.uuid4().hex
    if not entries:
        return token, set()
    ids = sorted(delivery_id for delivery_id, _, _ in entries)
    papers = papers_text(entries)
    if connection.vendor == "postgresql":
        return token, claim_call_in_postgresql(edition_id, token, ids, papers)
    with claims_of(edition_id):
        return token, claim_call_in_orm(edition_id, token, ids, papers)


def papers_text(entries):
    """The call's papers and why-lines by delivery id, as JSON text (what settling writes onto
    its rows). orjson writes it in a sixth of the time ``json.dumps`` takes: a call carries
    hundreds of readers, and its claim is made in the send."""
    papers = {delivery_id: [paper_ids, reasons] for delivery_id, paper_ids, reasons in entries}
    return orjson.dumps(papers, option=orjson.OPT_NON_STR_KEYS).decode()


def claim_call_in_postgresql(edition_id, token, ids, papers):
    """One ``INSERT … SELECT``: each of the batch's rows by its primary key (``LATERAL …
    OFFSET 0``: else, with a day's rows its statistics have not seen, the planner scans the
    edition's), each reader's status by a scalar subquery on its primary key. The deliveries of
    live calls whose range overlaps the batch's are listed once (``carried``), not looked up
    again for each row. The papers go in as text: PostgreSQL does not parse them.

    The edition's lock is taken by a statement of its own before it, in the same query
    string: one round trip, the two statements in one transaction (or in the caller's),
    and the insert's snapshot taken once the lock is held, as in ``claims_of``.
    """
    live = [str(s) for s in LIVE]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s); "
            f"WITH carried AS MATERIALIZED (SELECT x.id::bigint AS id FROM {SendCall._meta.db_table} AS c "
            "CROSS JOIN LATERAL jsonb_array_elements_text(c.delivery_ids) AS x(id) WHERE c.edition_id = %s "
            "AND c.last_delivery_id >= %s AND c.first_delivery_id <= %s AND c.status = ANY(%s) "
            "AND c.settled_at IS NULL) "
            f"INSERT INTO {SendCall._meta.db_table} (edition_id, token, status, first_delivery_id, "
            "last_delivery_id, delivery_ids, papers, esp_message_id, recipient_message_ids, reason, created_at) "
            "SELECT %s, %s, %s, min(w.id), max(w.id), jsonb_agg(w.id ORDER BY w.id), %s, '', '{}'::jsonb, '', %s "
            f"FROM unnest(%s::bigint[]) AS b(id) CROSS JOIN LATERAL (SELECT d.id FROM {Delivery._meta.db_table} AS d "
            "WHERE d.id = b.id AND d.edition_id = %s AND d.status = %s "
            f"AND (SELECT s.status FROM {Subscriber._meta.db_table} AS s WHERE s.id = d.subscriber_id) = %s "
            "AND NOT EXISTS (SELECT 1 FROM carried WHERE carried.id = d.id) OFFSET 0) AS w "
            "HAVING count(*) > 0 RETURNING delivery_ids::text",
            [CLAIM_LOCK, edition_id, edition_id, ids[0], ids[-1], live, edition_id, token, SendCall.Status.SENDING,
             papers, timezone.now(), id_array(ids), edition_id, Delivery.Status.PENDING, Subscriber.Status.ACTIVE],
        )
        cursor.nextset()
        row = cursor.fetchone()
    return set(json.loads(row[0])) if row else set()


def claim_call_in_orm(edition_id, token, ids, papers):
    candidates = set(
        Delivery.objects.filter(
            pk__in=ids, edition_id=edition_id, status=Delivery.Status.PENDING,
            subscriber__status=Subscriber.Status.ACTIVE,
        ).values_list("pk", flat=True)
    )
    won = sorted(candidates - in_live_calls(edition_id, candidates))
    if won:
        SendCall.objects.create(
            edition_id=edition_id, token=token, first_delivery_id=won[0], last_delivery_id=won[-1],
            delivery_ids=won, papers=papers,
        )
    return set(won)


def live_calls_over(edition_id, ids):
    """The live, unsettled calls of ``edition_id`` whose range of ids overlaps ``ids``'. Once a
    call is settled its rows hold its outcome and it no longer speaks for them: a failed row
    an operator sends again is its own."""
    ids = list(ids)
    if not ids:
        return SendCall.objects.none()
    return SendCall.objects.filter(
        edition_id=edition_id, status__in=LIVE, settled_at__isnull=True,
        last_delivery_id__gte=min(ids), first_delivery_id__lte=max(ids),
    )


def in_live_calls(edition_id, ids):
    """Those of ``ids`` (deliveries of ``edition_id``) that a live call carries."""
    ids = set(ids)
    carried = set()
    for delivery_ids in live_calls_over(edition_id, ids).values_list("delivery_ids", flat=True):
        carried.update(delivery_ids)
    return ids & carried


# --- Outcomes ---------------------------------------------------------------------


def record_call_sent(token, message_ids):
    """The ESP took the call: ``message_ids`` per delivery id it took."""
    now = timezone.now()
    shared = set(message_ids.values())
    fields = {"status": SendCall.Status.SENT, "finished_at": now}
    if len(shared) == 1:
        fields["esp_message_id"] = str(shared.pop())[:300]
    else:
        fields["recipient_message_ids"] = {str(i): str(m)[:300] for i, m in message_ids.items()}
    if SendCall.objects.filter(token=token, status=SendCall.Status.SENDING).update(**fields):
        return
    if SendCall.objects.filter(PROVED_BY_A_WEBHOOK, token=token).update(**fields):
        record_message_ids_settled_without(token, message_ids)


# A call an ESP event proved sent before its answer was recorded (``settle_call_of``).
PROVED_BY_A_WEBHOOK = Q(status=SendCall.Status.SENT, reason=SETTLED_BY_WEBHOOK)


def record_message_ids_settled_without(token, message_ids):
    """The answer's message ids on the rows a webhook's proof settled before it came (so that
    later events without our metadata find them by id). Only after that race: a row per id."""
    by_id = {}
    for delivery_id, message_id in message_ids.items():
        by_id.setdefault(str(message_id)[:300], []).append(delivery_id)
    for message_id, ids in by_id.items():
        Delivery.objects.filter(pk__in=ids, send_token=token, esp_message_id="").update(esp_message_id=message_id)


def lock_call(token):
    """Hold call ``token``'s row until the transaction ends: a webhook proving it sent waits."""
    list(SendCall.objects.select_for_update().filter(token=token).values_list("pk", flat=True))


def settled_by_proof_of_another(token, ids):
    """The rows of ``ids`` that call ``token``, proved sent by an ESP event about another of
    its readers before its answer was recorded, was settled onto as sent, with no event of
    their own: what the answer says of them is what happened."""
    own_events = WebhookEvent.objects.filter(delivery=OuterRef("pk"))
    return Delivery.objects.filter(
        ~Exists(own_events), pk__in=list(ids), status=Delivery.Status.SENT, send_token=token,
        reason=SETTLED_BY_WEBHOOK,
    )


def fail_refused_recipients(token, ids, reason):
    """The rows of recipients the ESP refused in call ``token`` that it took: failed, on their
    own (the call still lists them; settling leaves rows that are no longer pending), also
    when a webhook's proof about another reader settled the call first."""
    failed = {"status": Delivery.Status.FAILED, "reason": reason[:300], "paper_ids": [], "reasons": {}}
    Delivery.objects.filter(pk__in=list(ids), status=Delivery.Status.PENDING).update(**failed, send_token=token)
    settled_by_proof_of_another(token, ids).update(**failed, sent_at=None, esp_message_id="")


def return_call(token, reason):
    """The ESP surely did not take the call: its readers may be claimed again. Their rows
    count the attempt and say why (a write per reader, only when the ESP defers)."""
    returned = SendCall.objects.filter(token=token, status=SendCall.Status.SENDING)
    ids = list(returned.values_list("delivery_ids", flat=True))
    if returned.update(status=SendCall.Status.RETURNED, reason=reason[:300], finished_at=timezone.now()):
        count_the_attempt(ids[0], reason)


def count_the_attempt(ids, reason):
    """The pending rows of ``ids`` an ESP call did not take: one attempt more, and why."""
    Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING).update(
        attempts=F("attempts") + 1, reason=reason[:300]
    )


def release_recipients(token, ids, reason):
    """The ESP took call ``token`` (still ``sending``) but surely not the messages of deliveries
    ``ids``: they leave the call, which no longer carries them nor holds their papers, so that
    settling it never writes them and a later call may claim them. Their rows count the attempt
    and say why, as in ``return_call``; a call left with no one is returned whole. When an ESP
    event about another reader settled the call first, their rows settled from it are pending
    again (the settling counted the attempt)."""
    with transaction.atomic():
        call = (SendCall.objects.select_for_update()
                .filter(Q(status=SendCall.Status.SENDING) | PROVED_BY_A_WEBHOOK, token=token).first())
        if call is None:
            return
        released = set(ids) & set(call.delivery_ids)
        kept = [delivery_id for delivery_id in call.delivery_ids if delivery_id not in released]
        if not kept and call.status == SendCall.Status.SENDING:
            return return_call(token, reason)
        if kept:
            papers = json.loads(call.papers or "{}")
            call.papers = json.dumps({key: value for key, value in papers.items() if int(key) not in released})
            call.delivery_ids, call.first_delivery_id, call.last_delivery_id = kept, min(kept), max(kept)
            call.save(update_fields=["delivery_ids", "papers", "first_delivery_id", "last_delivery_id"])
        count_the_attempt(sorted(released), reason)
        settled_by_proof_of_another(token, sorted(released)).update(
            status=Delivery.Status.PENDING, reason=reason[:300], send_token="", sending_at=None, sent_at=None,
            esp_message_id="", paper_ids=[], reasons={},
        )


def fail_call(token, reason):
    """The ESP refused the call for good: nothing reached its readers, so no papers are kept."""
    SendCall.objects.filter(token=token, status=SendCall.Status.SENDING).update(
        status=SendCall.Status.FAILED, reason=reason[:300], papers="{}", finished_at=timezone.now()
    )


def note_unknown_outcome(token, reason):
    """The call's outcome is unknown: it stays ``sending`` for the stale sweep, never resent."""
    SendCall.objects.filter(token=token, status=SendCall.Status.SENDING).update(reason=reason[:300])


def fail_stale_calls(now=None):
    """Calls in ``sending`` past DIGEST_SENDING_STALE_MINUTES: failed, their papers kept
    (they may have reached their readers), never resent. Returns how many readers they carried."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.DIGEST_SENDING_STALE_MINUTES)
    stale = SendCall.objects.filter(status=SendCall.Status.SENDING, created_at__lt=cutoff)
    carried = sum(len(ids) for ids in stale.values_list("delivery_ids", flat=True))
    stale.update(status=SendCall.Status.FAILED, reason=STALE_REASON, finished_at=now)
    return carried


# --- Settling: a finished call's outcome onto its rows -------------------------------


def settle_calls(calls=None):
    """Copy the outcome of finished, unsettled calls (all, or those of the ``calls``
    queryset) onto their rows still ``pending``; returns the number of calls settled."""
    pending = SendCall.objects.filter(settled_at__isnull=True, status__in=FINISHED)
    if calls is not None:
        pending = pending & calls
    ids = list(pending.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), SETTLE_CALLS_AT_ONCE):
        settle_call_ids(ids[start:start + SETTLE_CALLS_AT_ONCE])
    return len(ids)


def settle_call_ids(ids):
    """Settle the calls ``ids``. A settled call keeps its readers, outcome and message ids but not
    their papers: those are on the rows now, and kept they would store every digest's papers and
    why-lines a second time for as long as the ledger lives (13.5 KB per call of 250 readers as
    PostgreSQL compresses them, a tenth more than the rows' own 570 bytes each; bench/digest_scale.py)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            settle_in_postgresql(ids)
        else:
            for call in SendCall.objects.filter(pk__in=ids, settled_at__isnull=True, status__in=FINISHED):
                settle_in_orm(call)
        SendCall.objects.filter(pk__in=ids).update(settled_at=timezone.now(), papers="{}")


def settle_in_postgresql(ids):
    """One statement for the calls' rows; each call's papers parsed once (the CTE)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH c AS MATERIALIZED (SELECT id, status, token, reason, created_at, finished_at, esp_message_id, "
            f"recipient_message_ids, delivery_ids, papers::jsonb AS papers FROM {SendCall._meta.db_table} "
            "WHERE id = ANY(%s) AND settled_at IS NULL AND status = ANY(%s)), "
            "m AS (SELECT c.*, x.id AS key, x.id::bigint AS delivery_id "
            "FROM c CROSS JOIN LATERAL jsonb_array_elements_text(c.delivery_ids) AS x(id)) "
            f"UPDATE {Delivery._meta.db_table} AS d SET status = m.status, send_token = m.token, reason = m.reason, "
            "sending_at = m.created_at, sent_at = CASE WHEN m.status = %s THEN m.finished_at END, "
            "esp_message_id = COALESCE(m.recipient_message_ids ->> m.key, m.esp_message_id), "
            "paper_ids = COALESCE(m.papers -> m.key -> 0, '[]'::jsonb), "
            "reasons = COALESCE(m.papers -> m.key -> 1, '{}'::jsonb), attempts = d.attempts + 1, updated_at = %s "
            "FROM m WHERE d.id = m.delivery_id AND d.status = %s",
            [ids, [SendCall.Status.SENT, SendCall.Status.FAILED], SendCall.Status.SENT, timezone.now(),
             Delivery.Status.PENDING],
        )


def settle_in_orm(call):
    if call.status == SendCall.Status.RETURNED:
        return
    outcome = outcome_of_call(call)
    rows = list(Delivery.objects.filter(pk__in=call.delivery_ids, status=Delivery.Status.PENDING))
    for delivery in rows:
        outcome.apply_to(delivery)
    Delivery.objects.bulk_update(
        rows, ["status", "send_token", "reason", "sending_at", "sent_at", "esp_message_id", "paper_ids",
               "reasons", "attempts", "updated_at"],
    )


def settle_call_of(delivery, *, proof_of_sending=False):
    """Settle the call carrying ``delivery`` (pending) and return the row as settled.

    ``proof_of_sending``: something only a sent message causes (an ESP event about
    it) arrived before the call's answer was recorded, so a call still ``sending``
    was sent."""
    if delivery.status != Delivery.Status.PENDING:
        return delivery
    call = call_carrying(delivery)
    if call is None:
        return delivery
    if proof_of_sending and call.status == SendCall.Status.SENDING:
        SendCall.objects.filter(pk=call.pk, status=SendCall.Status.SENDING).update(
            status=SendCall.Status.SENT, finished_at=timezone.now(), reason=SETTLED_BY_WEBHOOK
        )
    settle_calls(SendCall.objects.filter(pk=call.pk))
    delivery.refresh_from_db()
    return delivery


# --- Reading a delivery's outcome through its call --------------------------------


@dataclass
class CallOutcome:
    """What a live call says of each delivery it carries."""

    status: str
    token: str
    reason: str
    sending_at: object
    sent_at: object
    esp_message_id: str
    recipient_message_ids: dict
    papers: dict

    def apply_to(self, delivery):
        """``delivery`` (pending, carried by this call) as the call's outcome makes it, in memory."""
        paper_ids, reasons = self.papers.get(str(delivery.pk)) or ([], {})
        delivery.status, delivery.send_token, delivery.reason = self.status, self.token, self.reason
        delivery.sending_at, delivery.sent_at = self.sending_at, self.sent_at
        delivery.esp_message_id = self.recipient_message_ids.get(str(delivery.pk), self.esp_message_id)
        delivery.paper_ids, delivery.reasons = paper_ids, reasons
        delivery.attempts += 1
        delivery.updated_at = timezone.now()
        return delivery


def outcome_of_call(call):
    return CallOutcome(
        status=call.status, token=call.token, reason=call.reason, sending_at=call.created_at,
        sent_at=call.finished_at if call.status == SendCall.Status.SENT else None,
        esp_message_id=call.esp_message_id, recipient_message_ids=call.recipient_message_ids,
        papers=json.loads(call.papers or "{}"),
    )


def call_carrying(delivery):
    """The live call that carries ``delivery``, or None."""
    for call in live_calls_over(delivery.edition_id, [delivery.pk]):
        if delivery.pk in call.delivery_ids:
            return call
    return None


def effective(deliveries):
    """``deliveries`` with each pending one that a live, unsettled call carries shown as the
    call makes it (in memory; nothing is written). Each call is read once. A queryset is read
    afresh (``all()``): the instances it may hold from an earlier read are not changed.

    The rows and their calls are read by separate statements, and a call settled in between
    (the beat's sweep, a webhook) is no longer live while its rows were read ``pending``: the
    rows no call speaks for are read again (settling writes the rows and marks the call in one
    transaction, so the second read sees what the call said)."""
    deliveries = list(deliveries.all() if isinstance(deliveries, QuerySet) else deliveries)
    pending = [d for d in deliveries if d.status == Delivery.Status.PENDING]
    by_edition = {}
    for delivery in pending:
        by_edition.setdefault(delivery.edition_id, []).append(delivery)
    for edition_id, rows in by_edition.items():
        ids = {d.pk for d in rows}
        for call in live_calls_over(edition_id, ids):
            carried = ids & set(call.delivery_ids)
            if carried:
                outcome = outcome_of_call(call)
                for delivery in rows:
                    if delivery.pk in carried:
                        outcome.apply_to(delivery)
    refresh_settled_meanwhile([d for d in pending if d.status == Delivery.Status.PENDING])
    return deliveries


def refresh_settled_meanwhile(rows):
    """``rows`` (read ``pending``) that are no longer pending now, given their current values."""
    if not rows:
        return
    by_id = {d.pk: d for d in rows}
    for current in Delivery.objects.filter(pk__in=list(by_id)).exclude(status=Delivery.Status.PENDING):
        for field in Delivery._meta.concrete_fields:
            setattr(by_id[current.pk], field.attname, getattr(current, field.attname))


def papers_in_unsettled_calls(subscriber_ids, excluding_edition, editions=None):
    """(subscriber id, paper ids) of the pending deliveries of these subscribers that a live,
    unsettled call of another edition carries (of ``editions`` only, when given): the papers
    that may have reached them though their rows do not say so yet.

    Few calls are unsettled once the beat's sweep has run; ``load_readers`` settles the
    finished ones first, so these are mostly calls in flight."""
    if editions is not None and not editions:
        return []
    calls = SendCall.objects.filter(settled_at__isnull=True, status__in=LIVE)
    if excluding_edition is not None:
        calls = calls.exclude(edition=excluding_edition)
    if editions is not None:
        calls = calls.filter(edition_id__in=list(editions))
    found = []
    for call in calls.only("id", "edition_id", "delivery_ids", "papers"):
        rows = dict(
            Delivery.objects.filter(
                pk__in=call.delivery_ids, subscriber_id__in=list(subscriber_ids), status=Delivery.Status.PENDING
            ).values_list("pk", "subscriber_id")
        )
        if rows:
            papers = json.loads(call.papers or "{}")
            found.extend((sid, (papers.get(str(pk)) or ([], {}))[0]) for pk, sid in rows.items())
    return found


def sent_delivery(subscriber, edition_id):
    """``subscriber``'s sent digest of ``edition_id`` (its row, or its row as its call says), or None."""
    rows = Delivery.objects.filter(
        subscriber=subscriber, edition_id=edition_id, status__in=[Delivery.Status.SENT, Delivery.Status.PENDING]
    ).select_related("edition", "subscriber")
    return next((d for d in effective(rows) if d.status == Delivery.Status.SENT), None)


def sent_deliveries(subscriber, limit):
    """``subscriber``'s latest ``limit`` sent digests, newest first, those of unsettled calls included.

    The rows still pending are read before the sent ones: a row the beat's sweep settles
    between the two reads is then in the second (and, if also in the first, shown once), where
    read the other way round it would be in neither.
    """
    rows = Delivery.objects.filter(subscriber=subscriber).select_related("edition", "subscriber")
    carried = [d for d in effective(rows.filter(status=Delivery.Status.PENDING)) if d.status == Delivery.Status.SENT]
    sent = list(rows.filter(status=Delivery.Status.SENT).order_by("-sent_at")[:limit])
    settled = {d.pk for d in sent}
    carried = [d for d in carried if d.pk not in settled]
    return sorted(sent + carried, key=lambda d: d.sent_at, reverse=True)[:limit]


def carried_by_calls_in_flight(edition):
    """The deliveries of ``edition`` that its calls still in ``sending`` carry (few: the calls
    in progress, and those whose outcome is unknown until the stale sweep)."""
    carried = set()
    for ids in SendCall.objects.filter(edition=edition, status=SendCall.Status.SENDING).values_list(
        "delivery_ids", flat=True
    ):
        carried.update(ids)
    return carried


def carried_counts(calls):
    """Per status of the live, unsettled ``calls`` (a queryset), how many of their rows are
    still ``pending``: the rows whose status is their call's. A refused recipient's row has its
    own status (``failed``) and is not counted here."""
    return carried_counts_within(calls, {"rows": (None, None)})["rows"]


def carried_counts_within(calls, windows):
    """``carried_counts`` for several windows of the rows' creation time at once, in one read of
    the calls' rows: ``windows`` maps a name to (since, before), either one None for no bound;
    returns each name's counts per status."""
    calls = calls.filter(settled_at__isnull=True, status__in=LIVE)
    counts = {name: {} for name in windows}
    if connection.vendor != "postgresql":
        for status, ids in calls.values_list("status", "delivery_ids"):
            for name, (since, before) in windows.items():
                rows = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING)
                rows = rows.filter(created_at__gte=since) if since is not None else rows
                rows = rows.filter(created_at__lt=before) if before is not None else rows
                counts[name][status] = counts[name].get(status, 0) + rows.count()
        return counts
    ids = list(calls.values_list("pk", flat=True))
    if not ids:
        return counts
    window = ("count(*) FILTER (WHERE d.created_at >= coalesce(%s, '-infinity'::timestamptz) "
              "AND d.created_at < coalesce(%s, 'infinity'::timestamptz))")
    params = [moment for bounds in windows.values() for moment in bounds]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.status, {', '.join([window] * len(windows))} FROM {SendCall._meta.db_table} AS c "
            "CROSS JOIN LATERAL jsonb_array_elements_text(c.delivery_ids) AS x(id) "
            f"JOIN {Delivery._meta.db_table} AS d ON d.id = x.id::bigint "
            "WHERE c.id = ANY(%s) AND d.status = %s GROUP BY c.status",
            [*params, ids, Delivery.Status.PENDING],
        )
        for status, *per_window in cursor.fetchall():
            for name, n in zip(windows, per_window):
                if n:
                    counts[name][status] = n
    return counts


def with_carried(counts, carried):
    """Row counts by status (``counts``) with the rows a call carries counted at their call's status."""
    counts = dict(counts)
    for status, n in carried.items():
        counts[Delivery.Status.PENDING] = counts.get(Delivery.Status.PENDING, 0) - n
        counts[status] = counts.get(status, 0) + n
    return counts
