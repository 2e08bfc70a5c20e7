"""Sending digests at most once: the Delivery ledger decides, not the retry.

1. ``claim_deliveries`` inserts one ``pending`` row per (subscriber, edition);
   the unique constraint makes a second claim a no-op.
2. Each reader's digest is ranked and rendered from the edition's prepared
   vectors and paper blocks (``prepare_edition``: once per edition and process).
3. Right before the ESP call, ``start_sending_with_papers`` moves the rows of
   one ESP batch from ``pending`` to ``sending`` with one compare-and-swap
   UPDATE that stamps them with a fresh token; only the rows carrying that
   token are sent. Two workers, a retried task or a re-run never send a row
   twice. The same UPDATE writes the chosen papers to the row before the call,
   so a paper that may have reached the reader is never sent to them again.
4. The outcome is recorded: ``sent`` with each recipient's ESP message id,
   ``skipped`` with a reason, ``failed`` for a permanent refusal (a refused
   recipient is suppressed too), or back to ``pending`` when the ESP surely
   did not take the message (connection refused, 5xx, 429, an SES bulk entry
   throttled), so a retry may send it.
5. When the outcome is unknown (a timeout, a dropped connection, a worker that
   died) the rows stay in ``sending``; ``reconcile_stale_deliveries`` marks
   them ``failed`` after DIGEST_SENDING_STALE_MINUTES, never resends them.
   An ESP that times out may be failing for everyone, so the task then stops
   (after one unknown batch call, or a second unknown message one by one) and
   its retry sends what it did not try, after the backoff.
6. Before each block of readers the task asks whether an operator paused sending
   (``digest.pause``); if so it stops there, hands nothing more to the ESP, leaves the
   rest ``pending`` for the tick after the resume and ends without a retry.

With an ESP that batches (``digest.esp``) one API call carries a whole batch:
background threads claim, send and record each batch (steps 3 and 4) on the
sender's database connection while the sender composes the next one, with up
to DIGEST_ESP_CALLS_IN_FLIGHT calls in progress at once.
Otherwise each reader gets their own message over one connection.
"""

import gc
import json
import logging
import resource
import smtplib
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from operator import itemgetter

import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings
from django.contrib.postgres.aggregates import StringAgg
from django.core.mail import get_connection
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db import connection as db_connection
from django.db.models import BooleanField, Count, Exists, F, OuterRef, Q, Subquery, TextField, Value
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.db.models.functions import MD5, Cast, Concat
from django.db.models.signals import post_init, pre_init
from django.utils import timezone
from more_itertools import chunked
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from papers.models import Paper
from subscriptions.models import Subscriber

from . import calls, pause
from .allocator import keep_freed_memory
from .emails import BatchPart, build_batch_email, build_email
from .esp import (
    SES_DEFERRING_STATUSES,
    BatchAnswer,
    MailgunBatch,
    amazon_ses_batch_answer,
    batch_style,
    batches,
    digest_esp_extra,
    keep_connections_for,
    postmark_batch_answer,
    postmark_refuses_the_account,
)
from .models import Delivery, Edition, Feedback, SendCall
from .ranking import MODEL_MIN_LIKES, EditionRanker, RankRequest
from .rendering import DigestRenderer
from .sql import id_array

log = logging.getLogger(__name__)

ONE_BY_ONE_GROUP = 50
# Unknown outcomes a task weathers before it stops: a batch carries many readers, so one
# unknown call stops it; one by one, a single dropped connection is reconnected past.
UNKNOWN_OUTCOMES_TOLERATED = {"batch": 0, "one by one": 1}
READ_BLOCK_SIZE = 1000  # readers read and ranked at once; a task may hold many blocks
PROGRESS_EVERY = 500
IGNORED_PAPERS_LIMIT = 300
CHUNK_GC_THRESHOLD = 70_000
PREPARED_EDITIONS_KEPT = 4
REFUSED_STATUSES = {"rejected", "invalid"}
NOT_TAKEN_STATUSES = {"failed"}  # anymail's word for an SES bulk entry not accepted
NOT_TAKEN = "the ESP did not take this recipient's message"
NOT_TAKEN_NOW = "the ESP did not take this recipient's message this time (its rate, its quota or a pause)"
NOTHING_RELEVANT = "no paper passed the relevance threshold"
NOTHING_NEW = "no new papers in this edition"
PAUSED = "an operator paused digest sending"


class PhaseClock:
    """Seconds, rows, SQL queries and peak RSS per phase of sending, for benchmarks and logs.

    ``query_count`` is a callable returning a running query count (a benchmark
    installs one); without it queries are not counted.
    """

    def __init__(self):
        self.query_count = None
        self.lock = threading.Lock()  # batch threads add to it too
        self.reset()

    def reset(self):
        self.totals = {}

    def _entry(self, name):
        return self.totals.setdefault(name, {"seconds": 0.0, "rows": 0, "queries": 0, "peak_rss_mb": 0.0})

    def add(self, name, seconds, rows=1):
        with self.lock:
            entry = self._entry(name)
            entry["seconds"] += seconds
            entry["rows"] += rows

    @contextmanager
    def phase(self, name, rows=0):
        queries = self.query_count() if self.query_count else 0
        started = time.perf_counter()
        try:
            yield
        finally:
            queries = self.query_count() - queries if self.query_count else 0
            seconds = time.perf_counter() - started
            with self.lock:
                entry = self._entry(name)
                entry["seconds"] += seconds
                entry["rows"] += rows
                entry["queries"] += queries
                entry["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def summary(self):
        return {name: dict(entry) for name, entry in self.totals.items()}


PHASES = PhaseClock()


class SessionNotOpened(Exception):
    """The mail server could not be reached or would not open a session (connection, greeting,
    STARTTLS, login): no message was handed over."""


class TransientSendError(Exception):
    """The ESP did not take some messages this time, or the task stopped before trying them;
    their deliveries are pending again."""


class RecipientsDeferred(Exception):
    """The ESP took a call but not these recipients' messages, for now: deferred, as a call is."""


@dataclass
class SendReport:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    not_claimed: int = 0
    transient: list = field(default_factory=list)  # rows pending again for the task's retry
    # Rows a mail server deferred for their own recipient (greylisting, a full mailbox): pending
    # again for the task's retry too, but the task carries on with the other readers.
    deferred_alone: list = field(default_factory=list)
    retry_after: float = 0.0  # seconds the ESP asked us to wait (Retry-After), at most an hour
    unknown: list = field(default_factory=list)  # rows whose send outcome is unknown (left ``sending``)
    stopped: str = ""  # why the task stopped before trying all its readers ("" when it did not)

    @property
    def paused(self):
        """Whether the task stopped because sending is paused (``paused_before_block``)."""
        return self.stopped == PAUSED

    def must_stop(self, way):
        """Whether sending ``way`` ("batch", "one by one") stops now; if so, says why in ``stopped``."""
        if self.paused:
            return True
        if self.transient:
            self.stopped = "the ESP deferred a message"
        elif len(self.unknown) > UNKNOWN_OUTCOMES_TOLERATED[way]:
            self.stopped = "the outcome of a send is unknown"
        else:
            return False
        log.warning("digest sending stopped: %s; the task's retry sends the rest after its backoff", self.stopped)
        return True


# --- The ledger ---------------------------------------------------------------


def among(model, field, ids):
    """A filter: ``field`` is one of ``ids``.

    On PostgreSQL ``column = ANY(%s)`` with the ids as one array parameter: psycopg
    would parse a statement of 500 placeholders in Python on every call. Elsewhere
    ``field__in``.
    """
    ids = list(ids)
    if db_connection.vendor != "postgresql":
        return Q(**{f"{field}__in": ids})
    column = model._meta.get_field(field).column
    return RawSQL(
        f'"{model._meta.db_table}"."{column}" = ANY(%s::bigint[])', [id_array(ids)], output_field=BooleanField()
    )


def rows_per_subscriber(subscriber_ids, select, params):
    """The rows of ``select`` (which names the subscriber as ``s.id``) for each subscriber,
    each found by its own index lookup (PostgreSQL).

    ``LATERAL … OFFSET 0`` keeps the planner from joining the ids with a whole
    table or edition, which it does for 500 ids whenever its statistics have not
    seen the day's rows yet, or its cost model prefers reading everything.
    """
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"SELECT x.* FROM unnest(%s::bigint[]) AS s(id) CROSS JOIN LATERAL ({select} OFFSET 0) AS x",
            [id_array(subscriber_ids), *params],
        )
        return cursor.fetchall()


def from_jsonb(value):
    """A jsonb column read with a plain cursor: Django's connection loads it as text."""
    return json.loads(value) if isinstance(value, str) else value


def claim_deliveries(edition, subscriber_ids):
    """Create a pending delivery for each subscriber that has none for this edition.

    On PostgreSQL one ``INSERT … SELECT unnest(…) ON CONFLICT DO NOTHING``:
    no model instances, one parameter however many rows.
    """
    subscriber_ids = list(subscriber_ids)
    if not subscriber_ids:
        return
    if db_connection.vendor != "postgresql":
        rows = [Delivery(subscriber_id=sid, edition=edition) for sid in subscriber_ids]
        Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        return
    now = timezone.now()
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (subscriber_id, edition_id, status, paper_ids, reasons, "
            "reason, esp_message_id, send_token, attempts, created_at, updated_at) "
            "SELECT s, %s, %s, '[]'::jsonb, '{}'::jsonb, '', '', '', 0, %s, %s FROM unnest(%s::bigint[]) AS s "
            "ON CONFLICT (edition_id, subscriber_id) DO NOTHING",
            [edition.pk, Delivery.Status.PENDING, now, now, id_array(subscriber_ids)],
        )


def start_sending_batch(delivery_ids):
    """Compare-and-swap ``pending`` → ``sending`` for many rows at once.

    Returns (token, ids won): only rows still pending, whose subscriber is
    still active, are taken, and only by this caller.
    """
    token = uuid.uuid4().hex
    Delivery.objects.filter(
        Exists(Subscriber.objects.filter(pk=OuterRef("subscriber_id"), status=Subscriber.Status.ACTIVE)),
        pk__in=list(delivery_ids),
        status=Delivery.Status.PENDING,
    ).update(
        status=Delivery.Status.SENDING,
        sending_at=timezone.now(),
        attempts=F("attempts") + 1,
        send_token=token,
    )
    won = Delivery.objects.filter(pk__in=list(delivery_ids), send_token=token).values_list("pk", flat=True)
    return token, set(won)


def start_sending_with_papers(deliveries):
    """``start_sending_batch`` and ``write_papers`` in one statement on PostgreSQL.

    Each row is moved ``pending`` → ``sending`` (subscriber still active) and
    given its papers and why-lines by a single ``UPDATE … FROM
    jsonb_to_recordset(…) RETURNING id``: one new row version instead of two,
    no second read.
    """
    if db_connection.vendor != "postgresql":
        token, won = start_sending_batch([d.pk for d in deliveries])
        write_papers(token, [d for d in deliveries if d.pk in won])
        return token, won
    if not deliveries:
        return uuid.uuid4().hex, set()
    token, now = uuid.uuid4().hex, timezone.now()
    table, subscribers = Delivery._meta.db_table, Subscriber._meta.db_table
    batch = json.dumps([{"id": d.id, "paper_ids": d.paper_ids, "reasons": d.reasons} for d in deliveries])
    with db_connection.cursor() as cursor:
        # Rows are reached from the batch's ids by primary key, and the subscriber by a
        # scalar subquery on its primary key: a plan that holds whatever the statistics say.
        # Papers and why-lines travel as one JSON document (one parameter, no array quoting).
        cursor.execute(
            f"UPDATE {table} AS d SET status = %s, sending_at = %s, attempts = d.attempts + 1, send_token = %s, "
            f"paper_ids = v.paper_ids, reasons = v.reasons, updated_at = %s "
            f"FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, paper_ids jsonb, reasons jsonb) "
            f"WHERE d.id = v.id AND d.status = %s "
            f"AND (SELECT s.status FROM {subscribers} AS s WHERE s.id = d.subscriber_id) = %s "
            f"RETURNING d.id",
            [Delivery.Status.SENDING, now, token, now, batch, Delivery.Status.PENDING, Subscriber.Status.ACTIVE],
        )
        won = {row[0] for row in cursor.fetchall()}
    return token, won


def start_sending(delivery_id):
    """Compare-and-swap one row ``pending`` → ``sending``; True only for the caller that wins."""
    return delivery_id in start_sending_batch([delivery_id])[1]


def finish(delivery_id, status, **fields):
    Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.SENDING).update(status=status, **fields)


# What ranking and rendering read of a reader; the rest of the row is not loaded.
READER_FIELDS = ("email", "status", "interests", "categories", "max_papers", "always_send_top", "token_secret")
LEFT_MEANWHILE = "subscriber no longer active"


def pending_deliveries(edition, subscriber_ids):
    """The chunk's pending deliveries with their readers, but those a live ESP call carries
    (``digest.calls``); subscribers without a delivery yet are claimed first (a chunk is
    normally claimed when it is enqueued).

    Deliveries of subscribers who left meanwhile are skipped, never sent (the
    claim checks again, for a reader who leaves after this read).
    """
    rows = chunk_deliveries(edition, subscriber_ids)
    unclaimed = set(subscriber_ids) - {d.subscriber_id for d in rows}
    if unclaimed:
        # A reader deleted since the chunk was handed out took their pending row along: not claimed again.
        unclaimed = set(Subscriber.objects.filter(pk__in=sorted(unclaimed)).values_list("pk", flat=True))
        claim_deliveries(edition, sorted(unclaimed))
        rows = sorted(rows + chunk_deliveries(edition, unclaimed), key=lambda d: d.pk)
    pending, active = Delivery.Status.PENDING, Subscriber.Status.ACTIVE
    rows = [d for d in rows if d.status == pending]
    carried = calls.in_live_calls(edition.pk, [d.id for d in rows])
    deliveries, left = [], []
    for delivery in rows:
        if delivery.id not in carried:
            (deliveries if delivery.subscriber.status == active else left).append(delivery)
    if left:
        skip([d.id for d in left], LEFT_MEANWHILE, edition.pk)
    edition_field = Delivery._meta.get_field("edition")
    for delivery in deliveries:
        edition_field.set_cached_value(delivery, edition)  # its edition_id is edition's: no checks needed
    return deliveries


DELIVERY_FIELDS = ("id", "subscriber_id", "edition_id", "status")


def chunk_deliveries(edition, subscriber_ids):
    """The deliveries of ``edition`` to these subscribers, whatever their status, each with
    its reader (only ``READER_FIELDS`` loaded), in delivery order.

    On PostgreSQL one unique-index lookup per subscriber (``rows_per_subscriber``).
    """
    if db_connection.vendor != "postgresql":
        return list(
            Delivery.objects.filter(edition=edition, subscriber_id__in=list(subscriber_ids))
            .select_related("subscriber")
            .only(*DELIVERY_FIELDS, *(f"subscriber__{name}" for name in READER_FIELDS))
            .order_by("pk")
        )
    reader_fields = ("id", *READER_FIELDS)
    columns = [f"d.{name}" for name in DELIVERY_FIELDS] + [f"r.{name}" for name in reader_fields]
    rows = rows_per_subscriber(
        subscriber_ids,
        f"SELECT {', '.join(columns)} FROM {Delivery._meta.db_table} AS d "
        f"JOIN {Subscriber._meta.db_table} AS r ON r.id = d.subscriber_id "
        f"WHERE d.edition_id = %s AND d.subscriber_id = s.id",
        [edition.pk],
    )
    db, split, categories = db_connection.alias, len(DELIVERY_FIELDS), reader_fields.index("categories")
    # Set as the foreign key's descriptor caches it, without its checks and router calls per row.
    subscriber_field = Delivery._meta.get_field("subscriber")
    delivery_of = instance_loader(Delivery, db, DELIVERY_FIELDS)
    reader_of = instance_loader(Subscriber, db, reader_fields)
    deliveries = []
    for row in sorted(rows, key=itemgetter(0)):
        delivery = delivery_of(row[:split])
        reader = list(row[split:])
        reader[categories] = from_jsonb(reader[categories])
        subscriber_field.set_cached_value(delivery, reader_of(reader))
        deliveries.append(delivery)
    return deliveries


def instance_loader(model, db, attnames):
    """``model.from_db(db, attnames, values)`` as a function of the values, the other fields
    deferred, at a tenth of the cost; made once for many rows.

    ``from_db`` runs ``Model.__init__``, which walks every field of the model
    and sends ``pre_init``/``post_init``: 10 µs per instance, two instances per
    reader. When nothing listens to those signals (asked once here, not for
    every row) the instance is set up as ``__init__`` leaves it: the loaded
    values in ``__dict__`` (a deferred field is one absent from it), and a
    state saying it came from ``db``.
    """
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return lambda values: model.from_db(db, attnames, values)

    def load(values):
        instance = model.__new__(model)
        instance.__dict__.update(zip(attnames, values))
        state = instance._state = ModelState()
        state.adding, state.db = False, db
        return instance

    return load


def skip(delivery_ids, reason, edition_id):
    """Pending rows of ``edition_id`` that nothing will be sent to, but those a live call
    carries (under the edition's claim lock: a call claimed meanwhile wins)."""
    with calls.claims_of(edition_id):
        delivery_ids = set(delivery_ids) - calls.in_live_calls(edition_id, delivery_ids)
        return Delivery.objects.filter(among(Delivery, "id", delivery_ids), status=Delivery.Status.PENDING).update(
            status=Delivery.Status.SKIPPED, reason=reason[:300]
        )


def reconcile_stale_deliveries(now=None):
    """Rows (and ESP calls) stuck in ``sending`` past the timeout: the outcome is unknown,
    so they are marked failed (at most once) rather than sent again. Then every finished
    call's outcome is copied onto its rows (``calls.settle_calls``)."""
    cutoff = (now or timezone.now()) - timedelta(minutes=settings.DIGEST_SENDING_STALE_MINUTES)
    stale = stale_deliveries(cutoff).update(status=Delivery.Status.FAILED, reason=calls.STALE_REASON)
    stale += calls.fail_stale_calls(now)
    calls.settle_calls()
    return stale


def stale_deliveries(cutoff):
    """Rows in ``sending`` since before ``cutoff``, through their partial index."""
    return Delivery.objects.with_status(Delivery.Status.SENDING).filter(sending_at__lt=cutoff)


# --- What each reader gets --------------------------------------------------------


@dataclass
class PreparedEdition:
    """An edition's ranker (paper vectors) and renderer (paper blocks), shared by all readers."""

    key: tuple
    ranker: EditionRanker
    renderer: DigestRenderer


_prepared_editions = {}


def sendable_entries(edition):
    return edition.entries.filter(pulled=False, paper__block__isnull=True).order_by("rank")


def edition_entries(edition):
    return list(sendable_entries(edition).select_related("paper"))


def sendable_fingerprint(edition):
    """The (entry, paper, paper's last change) of every sendable entry, in rank order.

    On PostgreSQL the database joins them into one text and returns its MD5:
    one short row per block of readers instead of the edition's hundreds of
    timestamps parsed in Python (about 5% of a worker's time at 500 readers a block).
    The statement is compiled once per edition and process (``fingerprint_statement``).
    """
    if db_connection.vendor != "postgresql":
        return tuple(sendable_entries(edition).values_list("pk", "paper_id", "paper__updated_at"))
    with db_connection.cursor() as cursor:
        cursor.execute(*fingerprint_statement(edition.pk))
        n, fingerprint = cursor.fetchone() or (0, None)
    return {"n": n, "fingerprint": fingerprint}


@lru_cache(maxsize=PREPARED_EDITIONS_KEPT)
def fingerprint_statement(edition_id):
    """``sendable_fingerprint``'s SQL and parameters: compiling the ORM's expressions took
    more of a worker's time than PostgreSQL took to answer, once per block of readers."""
    listed = StringAgg(
        Concat(Cast("pk", TextField()), Value(":"), Cast("paper_id", TextField()), Value(":"),
               Cast("paper__updated_at", TextField()), output_field=TextField()),
        delimiter=",", order_by=("rank", "pk"),
    )
    grouped = sendable_entries(Edition(pk=edition_id)).order_by().values("edition_id")
    counted = grouped.annotate(n=Count("pk"), fingerprint=MD5(listed)).values_list("n", "fingerprint")
    return counted.query.sql_with_params()


def prepare_edition(edition):
    """The edition's vectors and paper blocks: computed once per process, reused by every chunk.

    Recomputed when an entry is pulled or blocked, a paper changes, or the
    settings that shape the vectors or the links do; checking costs one query
    (``sendable_fingerprint``).
    """
    key = (
        edition.pk, edition.date, edition.cadence, settings.DIGEST_EMBEDDER, settings.SITE_URL,
        sendable_fingerprint(edition),
    )
    prepared = _prepared_editions.get(edition.pk)
    if prepared is None or prepared.key != key:
        while len(_prepared_editions) >= PREPARED_EDITIONS_KEPT:
            _prepared_editions.pop(next(iter(_prepared_editions)))
        prepared = PreparedEdition(key, EditionRanker(edition_entries(edition)), DigestRenderer(edition))
        _prepared_editions[edition.pk] = prepared
    return prepared


@dataclass
class Readers:
    """What the ranking needs to know about a chunk of readers, loaded in a few queries."""

    history: dict
    liked: dict
    disliked: dict
    ignored: dict

    def rank(self, ranker, subscriber, **kwargs):
        return ranker.rank_for(subscriber, **self.profile(subscriber), **kwargs)

    def rank_all(self, ranker, subscribers):
        """``rank`` for many readers at once (``EditionRanker.rank_many``)."""
        return ranker.rank_many([RankRequest(s, **self.profile(s)) for s in subscribers])

    def profile(self, subscriber):
        sid = subscriber.id
        return {
            "exclude_ids": self.history.get(sid, ()),
            "liked": self.liked.get(sid, ()),
            "disliked": self.disliked.get(sid, ()),
            "ignored": self.ignored.get(sid, ()),
        }


def papers_already_sent(subscriber_ids, excluding_edition=None, editions=None):
    """Per subscriber, the papers of every digest that was (or may have been) handed to the ESP;
    with ``editions`` (ids), of the digests of those editions only."""
    sent = {}
    for subscriber_id, paper_ids in past_papers(subscriber_ids, excluding_edition, editions):
        sent.setdefault(subscriber_id, set()).update(paper_ids)
    for subscriber_id, paper_ids in calls.papers_in_unsettled_calls(subscriber_ids, excluding_edition, editions):
        sent.setdefault(subscriber_id, set()).update(paper_ids)
    return sent


def past_papers(subscriber_ids, excluding_edition, editions=None):
    """(subscriber id, paper ids) of each delivery past ``pending``, other editions only (and
    only of ``editions``, when given).

    On PostgreSQL each row is looked up in an index: with ``editions``, the
    unique (edition, subscriber) one for each pair, whatever the statistics
    say about a table whose rows were just replaced; else the subscriber one.
    """
    if editions is not None:
        editions = [pk for pk in editions if excluding_edition is None or pk != excluding_edition.pk]
        if not editions:
            return []
    if db_connection.vendor != "postgresql":
        rows = Delivery.objects.filter(subscriber_id__in=list(subscriber_ids)).exclude(status=Delivery.Status.PENDING)
        if excluding_edition is not None:
            rows = rows.exclude(edition=excluding_edition)
        if editions is not None:
            rows = rows.filter(edition_id__in=editions)
        return rows.values_list("subscriber_id", "paper_ids")
    table = Delivery._meta.db_table
    if editions is not None:
        select = (
            f"SELECT s.id, d.paper_ids FROM unnest(%s::bigint[]) AS e(id) CROSS JOIN LATERAL (SELECT paper_ids "
            f"FROM {table} WHERE edition_id = e.id AND subscriber_id = s.id AND status <> %s OFFSET 0) AS d"
        )
        params = [id_array(editions), Delivery.Status.PENDING]
    else:
        select = (
            f"SELECT s.id, paper_ids FROM {table} WHERE subscriber_id = s.id AND status <> %s "
            f"AND edition_id IS DISTINCT FROM %s"
        )
        params = [Delivery.Status.PENDING, excluding_edition.pk if excluding_edition is not None else None]
    rows = rows_per_subscriber(subscriber_ids, select, params)
    return [(sid, from_jsonb(paper_ids)) for sid, paper_ids in rows]


def editions_sharing_papers(edition):
    """The other editions whose digests may hold a paper of ``edition``: those built since its
    earliest paper was first seen. An edition takes only papers seen before it is built, so a
    digest of an older edition holds none of this one's papers, however many a reader got."""
    first_seen = Paper.objects.filter(editions=edition).order_by("first_seen_at").values("first_seen_at")[:1]
    since = Edition.objects.filter(built_at__gte=Subquery(first_seen)).exclude(pk=edition.pk)
    return list(since.values_list("pk", flat=True))


# What ranking reads of a paper a reader voted on: its id and the text it is embedded from.
VOTED_PAPER_FIELDS = ("id", "title", "abstract", "ai_keywords")


def feedback_papers(subscriber_ids):
    """Each reader's liked and disliked papers, newest vote first: the votes, then each paper
    voted on once, however many readers of the chunk voted on it, with only what ranking reads."""
    votes = list(Feedback.objects.filter(among(Feedback, "subscriber", subscriber_ids))
                 .values_list("subscriber_id", "paper_id", "vote"))
    papers = Paper.objects.only(*VOTED_PAPER_FIELDS).in_bulk({paper_id for _, paper_id, _ in votes})
    liked, disliked = {}, {}
    for subscriber_id, paper_id, vote in votes:
        (liked if vote > 0 else disliked).setdefault(subscriber_id, []).append(papers[paper_id])
    return liked, disliked


def ignored_papers(history, liked, disliked):
    """Papers sent to readers with a model (enough likes) that they did not vote on."""
    wanted = {}
    for sid, likes in liked.items():
        if len(likes) >= MODEL_MIN_LIKES:
            voted = {p.pk for p in (*likes, *disliked.get(sid, ()))}
            wanted[sid] = sorted(history.get(sid, set()) - voted, reverse=True)[:IGNORED_PAPERS_LIMIT]
    papers = Paper.objects.in_bulk({pid for ids in wanted.values() for pid in ids})
    return {sid: [papers[pid] for pid in ids if pid in papers] for sid, ids in wanted.items()}


def load_readers(edition, subscriber_ids):
    """What ranking needs to know of these readers for ``edition``.

    The papers already sent that matter are this edition's, so only digests of
    the editions that may share papers with it are read: a year of daily
    digests per reader would otherwise be read for every send. Readers with a
    model (MODEL_MIN_LIKES likes) have their whole history read, for the papers
    they were sent and never voted on. The finished ESP calls of the editions read
    are settled first (``calls.settle_calls``): then their rows say what they got.
    """
    liked, disliked = feedback_papers(subscriber_ids)
    sharing = editions_sharing_papers(edition)
    calls.settle_calls(SendCall.objects.filter(edition_id__in=sharing))
    history = papers_already_sent(subscriber_ids, excluding_edition=edition, editions=sharing)
    with_model = [sid for sid, likes in liked.items() if len(likes) >= MODEL_MIN_LIKES]
    whole = {}
    if with_model:
        calls.settle_calls(SendCall.objects.exclude(edition=edition))
        whole = papers_already_sent(with_model, excluding_edition=edition)
    return Readers(history, liked, disliked, ignored_papers(whole, liked, disliked))


@dataclass
class ComposedDigest:
    delivery: Delivery
    ranked: list
    part: BatchPart


def compose(deliveries, prepared, readers, skipped, *, for_json=False):
    """Rank and render each reader's digest; readers with nothing worth sending go to ``skipped``
    (their delivery ids by reason, recorded by the caller once the batches are sent).

    ``for_json``: bodies rendered for a JSON payload (``DigestRenderer.render``).
    """
    started = time.perf_counter()
    subscribers = [d.subscriber for d in deliveries]  # each through its descriptor once
    rankings = readers.rank_all(prepared.ranker, subscribers)
    PHASES.add("rank", time.perf_counter() - started, len(deliveries))
    for count, (delivery, subscriber, ranked) in enumerate(zip(deliveries, subscribers, rankings), start=1):
        if not ranked:
            skipped.setdefault(skip_reason(prepared), []).append(delivery.pk)
        else:
            started = time.perf_counter()
            part = batch_part(delivery, subscriber, prepared.renderer.render(subscriber, ranked, for_json=for_json))
            PHASES.add("render", time.perf_counter() - started)
            yield ComposedDigest(delivery, ranked, part)
        if count % PROGRESS_EVERY == 0:
            log.info("digests composed edition=%s progress=%d/%d", delivery.edition_id, count, len(deliveries))


def skip_reason(prepared):
    return NOTHING_RELEVANT if prepared.ranker.papers else NOTHING_NEW


def record_skipped(skipped, edition, report):
    """Readers no paper was worth sending to: their deliveries are ``skipped``, with why."""
    for reason, delivery_ids in skipped.items():
        with PHASES.phase("record", len(delivery_ids)):
            report.skipped += skip(delivery_ids, reason, edition.pk)
        log.info("digests skipped edition=%s count=%d reason=%s", edition.pk, len(delivery_ids), reason)


def batch_part(delivery, subscriber, digest):
    return BatchPart(
        to=subscriber.email, subject=digest.subject, text=digest.text, html=digest.html,
        context=digest.context, metadata={"delivery_id": str(delivery.id)},
    )


def claim_for_send(items, report):
    """CAS the rows of ``items``; keep the ones won and record their papers before any send.

    Under the edition's claim lock, and never a row that a live ESP call carries
    (``digest.calls``), so that claims per row and per call send no one twice."""
    set_papers(items)
    deliveries = [c.delivery for c in items]
    with PHASES.phase("select/claim"):
        if not deliveries:
            token, won = uuid.uuid4().hex, set()
        else:
            with calls.claims_of(deliveries[0].edition_id):
                carried = calls.in_live_calls(deliveries[0].edition_id, [d.pk for d in deliveries])
                token, won = start_sending_with_papers([d for d in deliveries if d.pk not in carried])
    report.not_claimed += len(items) - len(won)
    return token, [c for c in items if c.delivery.id in won]


def claim_call_for_send(items, report):
    """``claim_for_send`` with one claim for the whole ESP call (DIGEST_CLAIMS_PER_CALL): the
    rows are not written; the call holds their papers."""
    set_papers(items)
    entries = [(c.delivery.id, c.delivery.paper_ids, c.delivery.reasons) for c in items]
    with PHASES.phase("select/claim"):
        token, won = calls.claim_call(items[0].delivery.edition_id, entries) if items else (uuid.uuid4().hex, set())
    report.not_claimed += len(items) - len(won)
    return token, [c for c in items if c.delivery.id in won]


def set_papers(items):
    for c in items:
        c.delivery.paper_ids = [r.paper.id for r in c.ranked]
        c.delivery.reasons = Delivery.reasons_of(c.ranked)


def write_papers(token, deliveries):
    """Store each claimed row's papers and why-lines (PostgreSQL does it in the claim itself)."""
    if deliveries:
        Delivery.objects.filter(send_token=token).bulk_update(deliveries, ["paper_ids", "reasons"])


def claimed_rows(token, ids):
    """The rows of ``ids`` still in ``sending`` under the claim ``token``: the ones this send may record."""
    return Delivery.objects.filter(among(Delivery, "id", ids), send_token=token, status=Delivery.Status.SENDING)


def claim_still_held(token, delivery):
    """Stamp ``delivery``'s claim afresh right before its message; False once the claim is lost.

    One by one, a group's rows are claimed before its first message, and each message may take
    up to EMAIL_TIMEOUT (twice, reconnecting): the beat's stale sweep may fail the group's later
    rows meanwhile ("not resent"). Sent anyway, such a row would stay failed though sent, and an
    operator's resend would email it a second time."""
    return bool(claimed_rows(token, [delivery.pk]).update(sending_at=timezone.now()))


def record_sent(token, sent):
    """``sent``: (delivery, ESP message id) pairs."""
    now = timezone.now()
    rows = []
    for delivery, message_id in sent:
        delivery.status, delivery.sent_at, delivery.reason = Delivery.Status.SENT, now, ""
        delivery.esp_message_id = str(message_id or "")[:300]
        rows.append(delivery)
    by_message_id = {}
    for delivery in rows:
        by_message_id.setdefault(delivery.esp_message_id, []).append(delivery.pk)
    if len(by_message_id) <= 3:  # a batch call: one ESP message id for all its recipients
        for message_id, ids in by_message_id.items():
            claimed_rows(token, ids).update(status=Delivery.Status.SENT, sent_at=now, reason="",
                                            esp_message_id=message_id)
    else:
        Delivery.objects.filter(send_token=token, status=Delivery.Status.SENDING).bulk_update(
            rows, ["status", "sent_at", "reason", "esp_message_id"]
        )
    log_sent(rows, by_message_id)


def log_sent(rows, by_message_id):
    """A line per reader whose message has its own ESP id; a line per batch call whose id its
    readers share, with the line per reader at DEBUG. An INFO line costs a worker about 39 µs
    (redacting, formatting, writing), a tenth of its work per reader; the ledger holds the rest."""
    for delivery in rows:
        shared = len(by_message_id[delivery.esp_message_id]) > 1
        if not shared or log.isEnabledFor(logging.DEBUG):
            log.log(
                logging.DEBUG if shared else logging.INFO,
                "digest sent subscriber=%s edition=%s esp_message_id=%s papers=%d",
                delivery.subscriber_id, delivery.edition_id, delivery.esp_message_id, len(delivery.paper_ids),
            )
    for message_id, ids in by_message_id.items():
        if len(ids) > 1:
            log.info("digests sent edition=%s recipients=%d esp_message_id=%s",
                     rows[0].edition_id, len(ids), message_id)


# --- Errors -----------------------------------------------------------------------


def classify_send_error(exc):
    """'permanent', 'transient' (the ESP surely did not take it) or 'unknown'."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "permanent" if refused_for_good(exc) else "transient"
    if isinstance(exc, AnymailRecipientsRefused):
        return "permanent"
    if isinstance(exc, AnymailRequestsAPIError):
        status = exc.status_code
        if status is None:
            return "transient" if no_connection_made(exc.__cause__ or exc.__context__) else "unknown"
        if status == 429 or status >= 500 or status in ACCOUNT_REFUSED or postmark_refuses_the_account(exc.response):
            return "transient"
        return "permanent"
    if isinstance(exc, AnymailAPIError) and (boto_error(exc) or bulk_entries_refused(exc)):
        return classify_amazon_ses_error(exc)
    if isinstance(exc, NOTHING_SENT_FOR_NOW):
        return "transient"
    if isinstance(exc, (smtplib.SMTPServerDisconnected, TimeoutError)):
        return "unknown"
    if isinstance(exc, smtplib.SMTPResponseException):
        return "transient" if 400 <= exc.smtp_code < 500 else "permanent"
    return "unknown"


def no_connection_made(cause):
    """Whether an HTTP call failed before any connection was made (refused, or the name not
    resolved): then the ESP surely has nothing. A connection that broke after the request went
    out (the server closed it, or cut its answer) may have delivered it; a timeout, even one
    while connecting, is left unknown as well."""
    if not isinstance(cause, requests.ConnectionError) or isinstance(cause, requests.Timeout):
        return False
    reason = cause.args[0] if cause.args else None
    reason = reason.reason if isinstance(reason, MaxRetryError) else reason
    return isinstance(reason, (NewConnectionError, NameResolutionError))


# The ESP refused our account, not the message: a wrong or revoked API key (401), a sender domain
# or identity not allowed (403), a sending domain it does not know (404); over SMTP, a relay
# refusing our MAIL FROM (``SMTPSenderRefused``: a 5xx, this sender may not send through it; a 4xx,
# not now). It took nothing, and the fault is a setting an operator fixes: permanent, every reader
# of the day would be failed before the fix; transient, the task stops at the first such call and
# its retries (then the ticks' hand-outs of pending rows) send the digests once it is fixed.
ACCOUNT_REFUSED = {401, 403, 404}
# Errors after which nothing was sent and a later try may work, whatever their code.
NOTHING_SENT_FOR_NOW = (
    ConnectionRefusedError, smtplib.SMTPConnectError, SessionNotOpened, RecipientsDeferred, smtplib.SMTPSenderRefused,
)
# AWS's error codes for "too many requests", some of them answered with a 400.
AWS_THROTTLING_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException"}


def boto_error(exc):
    """The botocore error behind anymail's Amazon SES error, or None."""
    cause = exc.__cause__
    return cause if type(cause).__module__.startswith("botocore.") else None


def bulk_entries_refused(exc):
    """The results of a bulk call whose every entry SES refused with one status (anymail raises
    them as one error), or None."""
    response = exc.response
    return response.get("BulkEmailEntryResults") if isinstance(response, dict) else None


def classify_amazon_ses_error(exc):
    """``classify_send_error`` for Amazon SES, which anymail reaches through boto3: SES's HTTP
    status as for the other ESPs; a connection never made, deferred; a lost answer, unknown."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

    cause = boto_error(exc)
    if cause is None:
        return "transient" if bulk_entries_refused(exc)[0].get("Status") in SES_DEFERRING_STATUSES else "permanent"
    if isinstance(cause, ClientError):
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        throttled = cause.response.get("Error", {}).get("Code") in AWS_THROTTLING_CODES
        return "transient" if throttled or status == 429 or status >= 500 or status in ACCOUNT_REFUSED else "permanent"
    if isinstance(cause, (EndpointConnectionError, ConnectTimeoutError)):
        return "transient"
    return "unknown"


def retry_after_seconds(exc):
    """The ESP's ``Retry-After`` in seconds (429/503), capped at an hour; 0 when absent or a date."""
    response = getattr(exc, "response", None)
    try:
        return min(max(float(response.headers.get("Retry-After") or 0), 0.0), 3600.0)
    except (AttributeError, TypeError, ValueError):
        return 0.0


def refused_for_good(exc):
    """An SMTP server's refusal of the recipients is permanent only when every reply is a 5xx
    (no such user); a 4xx (greylisting, a full mailbox, a 421 closing the session) says later."""
    return all(500 <= code < 600 for code, _ in exc.recipients.values())


def deferred_for_the_recipient_alone(exc):
    """An SMTP server's 4xx to ``RCPT TO`` other than 421 (which closes the session): about this
    mailbox alone (greylisting, a full mailbox), so the task need not stop for the other readers.
    A mailbox full for days would otherwise hold back every reader after it in its task."""
    if not isinstance(exc, smtplib.SMTPRecipientsRefused):
        return False
    return all(400 <= code < 500 and code != 421 for code, _ in exc.recipients.values())


def refuses_recipient(exc):
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return refused_for_good(exc)
    return isinstance(exc, AnymailRecipientsRefused)


def suppress_refused(subscriber_ids):
    """The ESP refused these addresses for good: never email them again."""
    from subscriptions.services import suppress

    for subscriber in Subscriber.objects.filter(pk__in=subscriber_ids):
        suppress(subscriber, reason="bounced")


class RowClaims:
    """A failed call's outcome written on the rows its claim moved to ``sending``."""

    @staticmethod
    def deferred(token, ids, text):
        return_to_pending(claimed_rows(token, ids), text)

    @staticmethod
    def refused(token, ids, text):
        claimed_rows(token, ids).update(status=Delivery.Status.FAILED, reason=text, paper_ids=[], reasons={})

    @staticmethod
    def unknown(token, ids, text):
        claimed_rows(token, ids).update(reason=text[:300])


class CallClaims:
    """A failed call's outcome written on its claim (``digest.calls``), the rows untouched."""

    @staticmethod
    def deferred(token, ids, text):
        calls.return_call(token, text)

    @staticmethod
    def refused(token, ids, text):
        calls.fail_call(token, text)

    @staticmethod
    def unknown(token, ids, text):
        calls.note_unknown_outcome(token, text)


class RecipientsInCall(CallClaims):
    """Recipients of a call the ESP took whose own message it refused (their rows fail) or
    deferred (they leave the call, to be claimed again); the call stays sent for the others."""

    refused = staticmethod(calls.fail_refused_recipients)
    deferred = staticmethod(calls.release_recipients)


def record_send_error(token, deliveries, exc, report, claims=RowClaims):
    """Apply the outcome of a failed ESP call to the rows it carried (or to its claim)."""
    kind = classify_send_error(exc)
    text = f"{type(exc).__name__}: {exc}"[:300]
    ids = [d.pk for d in deliveries]
    if kind == "transient":
        claims.deferred(token, ids, text)
        if deferred_for_the_recipient_alone(exc):
            report.deferred_alone.extend(ids)
            log.warning("digest send deferred for its recipient deliveries=%s error=%s", ids_for_log(ids), text)
            return
        report.transient.extend(ids)
        report.retry_after = max(report.retry_after, retry_after_seconds(exc))
        log.warning("digest send deferred deliveries=%s send_token=%s error=%s", ids_for_log(ids), token, text)
    elif kind == "permanent":
        claims.refused(token, ids, text)
        report.failed += len(ids)
        if refuses_recipient(exc):
            suppress_refused([d.subscriber_id for d in deliveries])
        log.warning("digest send refused deliveries=%s send_token=%s error=%s", ids_for_log(ids), token, text)
    else:
        # Outcome unknown: the ESP may have accepted it. Left in ``sending`` for
        # reconcile_stale_deliveries; never resent blindly.
        claims.unknown(token, ids, f"outcome unknown: {text}")
        report.unknown.extend(ids)
        log.error("digest send outcome unknown deliveries=%s send_token=%s error=%s", ids_for_log(ids), token, text)


LOGGED_IDS = 10


def ids_for_log(ids):
    """The first few delivery ids of a batch and how many it had: a warning line naming all
    250 of a Mailgun call's rows is too long to read; the rest share its ``send_token``."""
    shown = ",".join(map(str, ids[:LOGGED_IDS]))
    return shown if len(ids) <= LOGGED_IDS else f"{shown},…({len(ids)} in all)"


def return_to_pending(rows, reason):
    """Claimed rows the ESP surely did not take, pending again for a retry (their papers unsaid)."""
    rows.update(status=Delivery.Status.PENDING, reason=reason[:300], paper_ids=[], reasons={})


def release_untried(token, deliveries, report):
    """Rows claimed but not tried once the task stopped: pending again, for its retry."""
    rows = claimed_rows(token, [d.pk for d in deliveries])
    return_to_pending(rows, f"not tried: the task stopped ({report.stopped})")
    report.transient.extend(d.pk for d in deliveries)


# --- Sending ----------------------------------------------------------------------


def esp_message_id(message, recipient=None):
    return esp_message_ids(message, [recipient])[0]


def esp_message_ids(message, recipients):
    """The ESP's message id for each recipient of ``message`` (the call's own id as fallback)."""
    status = getattr(message, "anymail_status", None)
    fallback = message.extra_headers.get("Message-ID", "")
    if status is None:
        return [fallback] * len(recipients)
    if status.message_id is not None and not isinstance(status.message_id, set):
        fallback = str(status.message_id)
    by_email = {email.lower(): s.message_id for email, s in (status.recipients or {}).items()}
    ids = []
    for recipient in recipients:
        found = by_email.get(recipient.lower()) if recipient is not None else None
        ids.append(str(found) if found is not None else fallback)
    return ids


def send_one(connection, message):
    """Send ``message`` over ``connection``, opened first if it is not (open is a no-op then):
    opened here, SMTP keeps one session for the task instead of one per message. The caller
    closes the connection. Failing to open it raises ``SessionNotOpened``: nothing was sent."""
    try:
        connection.open()
    except Exception as exc:  # whatever failed, the message never left
        raise SessionNotOpened(f"{type(exc).__name__}: {exc}") from exc
    message.connection = connection
    message.send()
    return esp_message_id(message)


def send_one_reconnecting(connection, message):
    """``send_one``; when the server defers the message, once more over a new connection.

    Any error closes the connection (a server that dropped it mid-message leaves it
    unusable), so the next message opens a new one. A deferral (an SMTP 4xx such as a
    server's limit of messages per session, an ESP's 429 or 5xx) means the message was
    not taken, so it is tried once more at once; a second deferral is the caller's.
    """
    for attempt in (1, 2):
        try:
            return send_one(connection, message)
        except Exception as exc:  # classified below and by the caller
            with suppress(Exception):  # failing to say goodbye too; the connection is dropped either way
                connection.close()
            if attempt == 2 or classify_send_error(exc) != "transient":
                raise


# An SMTP session left unused this long is checked (NOOP) before the next message: a relay may
# have ended it meanwhile, and a message sent into an ended session has an unknown outcome.
SMTP_IDLE_CHECK_SECONDS = 10


def close_if_ended_while_idle(connection, idle_since):
    """Close ``connection``, an SMTP session unused since ``idle_since``, if the relay no longer
    answers it, so that the next message opens a new session instead of finding out mid-send."""
    session = getattr(connection, "connection", None)
    if not isinstance(session, smtplib.SMTP) or time.monotonic() - idle_since < SMTP_IDLE_CHECK_SECONDS:
        return
    try:
        answered = session.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        answered = False
    if not answered:
        with suppress(Exception):  # saying goodbye to an ended session may fail too
            connection.close()


def send_individually(items, report):
    """One message per reader over one connection (SMTP, the outbox, ESPs without batching).

    The connection is opened once and kept; after an error the next message opens a
    new one (``send_one_reconnecting``). Once the server defers a message (SMTP 4xx, ESP
    429 or 5xx; an SMTP 4xx to one recipient's mailbox alone only returns that reader to
    pending), or a second message's outcome is unknown, no further one is
    tried, as in ``send_in_batches``: the rest of its group returns to pending, the
    rest of the task was never claimed, and the task's retry sends them after its
    backoff instead of this task pressing on against a server that said wait or
    stopped answering. Whether to stop is asked before the next message, so a task
    whose last message fails that way ends without stopping (and is not retried
    with nothing left to send, unless that message is to be retried).
    """
    connection = get_connection()
    esp_extra = digest_esp_extra()
    idle_since = time.monotonic()
    try:
        for group in chunked(items, ONE_BY_ONE_GROUP):
            if report.must_stop("one by one"):
                break  # a group composed, never claimed: its rows are still pending
            token, group = claim_for_send(group, report)
            for position, c in enumerate(group):
                if position and report.must_stop("one by one"):
                    release_untried(token, [later.delivery for later in group[position:]], report)
                    break
                if position and not claim_still_held(token, c.delivery):
                    continue  # the stale sweep failed it while earlier messages were sent
                message = build_email("digest", c.part.context, c.part.to, c.part.subject,
                                      bodies=(c.part.text, c.part.html), metadata=c.part.metadata,
                                      esp_extra=esp_extra)
                try:
                    close_if_ended_while_idle(connection, idle_since)
                    message_id = send_one_reconnecting(connection, message)
                except Exception as exc:  # classified; nothing is lost
                    record_send_error(token, [c.delivery], exc, report)
                else:
                    record_sent(token, [(c.delivery, message_id)])  # at once: no sweep finds it sending
                    report.sent += 1
                idle_since = time.monotonic()
            if report.stopped:
                break
    finally:
        connection.close()


def send_batch(connection, group, style, report, database_lock):
    """One batch, start to end: claim its rows, build the ESP call, make it, record the answer.

    Runs in a batch thread of ``send_in_batches``; returns the rows' outcome
    in ``report`` and raises only what is not an ESP error (the database failing).
    The claim and the record (the database and ``report``) are made holding
    ``database_lock``; building and making the call are not, so that calls of
    other batches may be in progress meanwhile.
    """
    per_call = calls.enabled()
    with database_lock:
        token, group = (claim_call_for_send if per_call else claim_for_send)(group, report)
    if not group:
        return
    parts = [c.part for c in group]
    with PHASES.phase("build ESP call", len(parts)):
        batch = MailgunBatch(connection, parts) if style.direct else AnymailBatch(connection, parts, style.fields)
        batch.prepare()
    del parts
    keep_only_what_recording_reads(group)
    started = time.perf_counter()
    try:
        answer = batch.send()
    except Exception as exc:  # classified; nothing is lost
        with database_lock:
            record_send_error(token, [c.delivery for c in group], exc, report, CallClaims if per_call else RowClaims)
        return
    PHASES.add("send", time.perf_counter() - started, len(group))
    with database_lock:
        (record_call_answer if per_call else record_answer)(token, group, answer, report)


def keep_only_what_recording_reads(group):
    """A batch's readers once its call is built: their rows (which know each reader's address),
    not their bodies (which the call holds), so that the batches in flight hold each body once."""
    for c in group:
        c.ranked = c.part = None


class AnymailBatch:
    """A batch as one anymail message, for the ESPs not called directly (and anymail's test backend)."""

    def __init__(self, connection, parts, fields):
        self.connection, self.parts, self.fields = connection, parts, fields
        self.message = None

    def prepare(self):
        self.message = build_batch_email(self.parts, self.fields, esp_extra=digest_esp_extra())
        self.message.connection = self.connection

    def send(self):
        """Post the call; its ``BatchAnswer``. Postmark's is read from each message's own result,
        also when anymail raises for the whole call over one message's error (a call of which
        Postmark took no message stays the error it was)."""
        try:
            self.message.send()
        except AnymailRequestsAPIError as exc:
            answer = postmark_batch_answer(exc.response, self.parts)
            if answer is None or not any(answer.message_ids):
                raise
            return answer
        response = self.message.anymail_status.esp_response
        return (postmark_batch_answer(response, self.parts) or amazon_ses_batch_answer(response, self.parts)
                or answer_of(self.message, self.parts))


def answer_of(message, parts):
    """The ``BatchAnswer`` anymail recorded on a sent batch message."""
    statuses = message.anymail_status.recipients.items()
    refused = frozenset(email.lower() for email, s in statuses if s.status in REFUSED_STATUSES)
    not_taken = frozenset(email.lower() for email, s in statuses if s.status in NOT_TAKEN_STATUSES)
    return BatchAnswer(esp_message_ids(message, [part.to for part in parts]), refused, not_taken)


@dataclass
class SplitAnswer:
    """A call's deliveries by what the ESP said of each: ``sent`` holds (delivery, message id)."""

    refused: list = field(default_factory=list)
    not_taken: list = field(default_factory=list)
    deferred: list = field(default_factory=list)
    sent: list = field(default_factory=list)


def split_answer(group, answer):
    """The deliveries whose recipient the ESP refused, those whose message it did not take, those
    whose message it did not take this time, and (delivery, message id) of the others."""
    if not answer.refused and not answer.not_taken and not answer.deferred:  # the usual answer: all taken
        return SplitAnswer(sent=[(c.delivery, message_id) for c, message_id in zip(group, answer.message_ids)])
    split = SplitAnswer()
    for c, message_id in zip(group, answer.message_ids):
        email = c.delivery.subscriber.email.lower()
        if email in answer.refused:
            split.refused.append(c.delivery)
        elif email in answer.not_taken:
            split.not_taken.append(c.delivery)
        elif email in answer.deferred:
            split.deferred.append(c.delivery)
        else:
            split.sent.append((c.delivery, message_id))
    return split


def recipients_refused():
    return AnymailRecipientsRefused("the ESP refused these recipients")


def recipients_deferred():
    return RecipientsDeferred(NOT_TAKEN_NOW)


def record_not_taken(token, deliveries, report, claims):
    """Recipients of a call the ESP took whose own message it did not: failed, never resent (the
    call was made), and not suppressed (nothing says their address is at fault)."""
    ids = [d.pk for d in deliveries]
    claims.refused(token, ids, NOT_TAKEN)
    report.failed += len(ids)
    log.warning("digest send not taken deliveries=%s send_token=%s error=%s", ids_for_log(ids), token, NOT_TAKEN)


def record_answer(token, group, answer, report):
    """Each recipient's status in the ESP's answer decides their row; a recipient deferred
    (``RecipientsDeferred``) is pending again, and the task stops for its retry as after a
    deferred call."""
    split = split_answer(group, answer)
    record_recipients_not_taken(token, split, report, RowClaims)
    with PHASES.phase("record", len(split.sent)):
        record_sent(token, split.sent)
    report.sent += len(split.sent)


def record_call_answer(token, group, answer, report):
    """``record_answer`` for a call claimed as a whole: one row written for the call, and one
    for each recipient the ESP refused or did not take (``RecipientsInCall``). Those are written
    first, in one transaction with marking the call sent, the call's row held: neither a sweep
    that settles the call once it is sent nor a webhook that proves it sent counts them as sent."""
    split = split_answer(group, answer)
    sent = {delivery.id: message_id for delivery, message_id in split.sent}
    all_taken = not (split.deferred or split.refused or split.not_taken)
    with nullcontext() if all_taken else transaction.atomic():
        if not all_taken:
            calls.lock_call(token)
            record_recipients_not_taken(token, split, report, RecipientsInCall)
        with PHASES.phase("record", len(sent)):
            calls.record_call_sent(token, sent)
    report.sent += len(sent)
    log.info("digests sent edition=%s recipients=%d esp_message_id=%s", group[0].delivery.edition_id, len(sent),
             answer.message_ids[0] if len(set(answer.message_ids)) == 1 else "(one per recipient)")


def record_recipients_not_taken(token, split, report, claims):
    """The recipients of a call the ESP took whose own message it deferred, refused or did not
    take, written as ``claims`` says (``RowClaims``, ``RecipientsInCall``)."""
    if split.deferred:
        record_send_error(token, split.deferred, recipients_deferred(), report, claims)
    if split.refused:
        record_send_error(token, split.refused, recipients_refused(), report, claims)
    if split.not_taken:
        record_not_taken(token, split.not_taken, report, claims)


def send_in_batches(items, style, report, database_lock):
    """One ESP call per batch, each claimed, made and recorded in a batch thread while this
    thread composes the next batch.

    Up to DIGEST_ESP_CALLS_IN_FLIGHT batches are in flight; the next is handed
    over once the oldest is recorded, and every batch handed over is waited
    for, also after an error (the first error is raised once they are all
    done). The batch threads use this thread's database connection, one at a
    time: each holds ``database_lock`` to claim and to record, and this thread
    holds it to read the next block of readers (``composed_blocks``). Waiting
    for PostgreSQL and the ESP overlaps ranking and rendering instead of adding
    to them, and with more than one call in flight the ESP's answer time
    overlaps too. Once the ESP has deferred a call (429, 5xx) no further batch
    is handed over: the rest of the task stays pending for its retry, which
    waits out the backoff and the ESP's Retry-After.
    """
    connection = get_connection()
    calls = max(1, settings.DIGEST_ESP_CALLS_IN_FLIGHT)
    database = connections[DEFAULT_DB_ALIAS]
    database.inc_thread_sharing()
    pool = ThreadPoolExecutor(max_workers=calls, thread_name_prefix="esp-batch", initializer=use_database,
                              initargs=(database,))
    in_flight = deque()
    try:
        for number, group in enumerate(batches(items, style.max_recipients, lambda c: c.part), start=1):
            if number == 1:
                # Here, once: a batch thread that opened it would close it after its call; and
                # not before there is a batch (a retried task often finds nothing pending).
                connection.open()
                keep_connections_for(connection, calls)
            while len(in_flight) >= calls:
                wait_for_batch(in_flight.popleft())
            if report.must_stop("batch"):
                break
            in_flight.append(pool.submit(send_batch, connection, group, style, report, database_lock))
            log.info("digest batch handed to a batch thread batch=%d recipients=%d", number, len(group))
    except BaseException:
        finish_batches(in_flight)
        raise
    else:
        error = finish_batches(in_flight)
        if error is not None:
            raise error
    finally:
        pool.shutdown()
        database.dec_thread_sharing()
        connection.close()


def use_database(database):
    """The batch thread's database connection is the sending thread's (``send_in_batches``)."""
    connections[database.alias] = database


def wait_for_batch(future):
    waited = time.perf_counter()
    try:
        future.result()
    finally:
        PHASES.add("wait for batch", time.perf_counter() - waited, 0)


def finish_batches(in_flight):
    """Wait for every batch still in flight; return the first one's error (the others are logged)."""
    error = None
    while in_flight:
        try:
            wait_for_batch(in_flight.popleft())
        except Exception as exc:  # the others are still waited for
            if error is None:
                error = exc
            else:
                log.error("digest batch also failed error=%s", exc)
    return error


def send_edition_to(edition, subscriber_ids, *, prepared=None):
    """Send ``edition`` to the given subscribers: claim, rank, render, send, record.

    A subscriber named twice is sent to once: each id would otherwise find the same
    pending delivery (one index lookup per id), and the claim wins a row for every
    item that carries it. Raises TransientSendError after the chunk when some
    deliveries must be retried; a chunk stopped by the operator's pause is not
    retried (``report.paused``).
    """
    with fewer_collections():
        return send_chunk(edition, list(dict.fromkeys(subscriber_ids)), prepared)


@contextmanager
def fewer_collections():
    """The cyclic garbage collector runs a hundredth as often while a chunk is sent.

    Ranking and rendering allocate millions of short-lived containers that
    reference counting frees anyway. With the default threshold (a collection
    per 700 allocations, an older generation every 10 of those) collecting took
    about a quarter of ranking's time in the benchmark. Garbage cycles are
    still collected, less often; the threshold is restored after the chunk.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], CHUNK_GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def paused_before_block(report):
    """Whether an operator paused sending (one query on a one-row table, asked before each block
    of readers, never per reader); if so the task stops: ``report.stopped`` says so.

    The batches composed from earlier blocks and not yet handed to a batch thread are never
    claimed (their rows stay ``pending``); calls already made or handed over are not recalled.
    """
    with PHASES.phase("select/claim"):
        if not pause.sending_paused():
            return False
    report.stopped = PAUSED
    log.warning("digest sending stopped: %s; what the task did not hand to the ESP stays pending, "
                "for the beat's ticks after the resume", PAUSED)
    return True


def send_chunk(edition, subscriber_ids, prepared):
    keep_freed_memory()
    report = SendReport()
    style = batch_style()
    skipped = {}
    database_lock = threading.Lock()
    blocks = composed_blocks(edition, subscriber_ids, prepared, skipped, database_lock, report,
                             for_json=style is not None and style.direct)
    if style is None:
        send_individually(blocks, report)
    else:
        send_in_batches(blocks, style, report, database_lock)
    record_skipped(skipped, edition, report)
    log.info(
        "digest chunk done edition=%s sent=%d skipped=%d failed=%d deferred=%d not_claimed=%d",
        edition.pk, report.sent, report.skipped, report.failed, len(report.transient), report.not_claimed,
    )
    if report.paused:
        return report  # no retry: the tick after the resume hands out what is still pending
    if report.transient or report.deferred_alone or report.stopped:
        why = f" ({report.stopped})" if report.stopped else ""
        retried = len(report.transient) + len(report.deferred_alone)
        raise TransientSendError(f"{retried} deliveries to retry{why}", report)
    return report


def composed_blocks(edition, subscriber_ids, prepared, skipped, database_lock, report, *, for_json):
    """The task's digests, read and ranked READ_BLOCK_SIZE readers at a time.

    One stream for the whole task: the ESP calls of one block are still in
    flight while the next block is read and composed, so a task waits for its
    last answer once, not once per block. Memory stays that of one block. The
    reads take ``database_lock`` (the batch threads claim and record on the same
    connection); the edition is checked for changes once per block, as before,
    and so is the operator's pause switch: once sending is paused the stream
    ends there (``paused_before_block``).
    """
    for block in chunked(subscriber_ids, READ_BLOCK_SIZE):
        with database_lock:
            if paused_before_block(report):
                return
            with PHASES.phase("select/claim", len(block)):
                deliveries = pending_deliveries(edition, block)
            if not deliveries:
                continue
            block_prepared = prepared or prepare_edition(edition)
            with PHASES.phase("select/claim"):
                readers = load_readers(edition, [d.subscriber_id for d in deliveries])
        yield from compose(deliveries, block_prepared, readers, skipped, for_json=for_json)
