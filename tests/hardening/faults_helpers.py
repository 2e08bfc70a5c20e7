"""Shared pieces of the fault-injection tests (``test_faults_*.py``).

The real stack comes from the operations suite (``tests/ops``): its fixtures
are re-exported here so a fault test module can ``from … import`` them, and its
``Stack`` starts and always stops gunicorn and the Celery workers. What is
added here: an audience of readers who all get a digest, the settings that make
retries fast, a helper to terminate PostgreSQL backends, and checks made at the
imitation ESP (what it accepted, per recipient) rather than only in our tables.
"""

import json
import os
import time

import psycopg
from django.db import connection
from django.utils import timezone

from digest.models import Delivery
from tests import ledger
from tests.factories import SubscriberFactory
from tests.fakes.sources import RecordedSourceServer, Route, SourceHandler
from tests.ops.conftest import (  # noqa: F401  (fixtures, re-exported)
    fake_mailgun,
    mailgun_env,
    recorded_sources,
    redis_url,
    sources_env,
    stack,
)
from tests.ops.stack import wait_until  # noqa: F401

ESP_TIMEOUT_SECONDS = 1
RETRY_BASE_SECONDS = 0.5  # first retry after 0.25–0.75 s, then 0.5–1.5 s, 1–3 s …
SIGNING_KEY = "key-webhook-signing-test"
WEBHOOK_USER, WEBHOOK_PASSWORD = "mailgun", "webhook-password"
TRACKING_PATH = "/anymail/mailgun/tracking/"


def make_readers(count):
    """``count`` active daily subscribers, each of whom gets a digest from the recorded papers."""
    return SubscriberFactory.create_batch(count, interests="")


def addresses(subscribers):
    return sorted(s.email.lower() for s in subscribers)


def configure(stack, sources, esp, *, batch_size=2, esp_timeout=ESP_TIMEOUT_SECONDS, **env):
    """The production sources (recorded) and Mailgun (imitated), small chunks, fast retries."""
    stack.configure(
        **sources_env(sources), **mailgun_env(esp),
        ESP_TIMEOUT_SECONDS=esp_timeout, DIGEST_SEND_BATCH_SIZE=batch_size,
        DIGEST_RETRY_BASE_SECONDS=RETRY_BASE_SECONDS,
        MAILGUN_WEBHOOK_SIGNING_KEY=SIGNING_KEY, WEBHOOK_SECRET=f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
        **env,
    )


def statuses():
    """{status: count} over the whole Delivery ledger."""
    counts = {}
    for delivery in ledger.deliveries():
        counts[delivery.status] = counts.get(delivery.status, 0) + 1
    return counts


def count(status):
    return ledger.count(status)


def accepted_recipients(esp):
    """{address: message id} for every recipient of a request the ESP accepted."""
    return {address: r.message_id for r in esp.accepted_requests for address in r.recipients}


def assert_ledger_matches_esp(esp, readers):
    """At most once at the ESP, and nothing ``sent`` that the ESP did not accept.

    Every ``sent`` row carries the message id of an accepted request that
    holds its recipient; a row whose recipient the ESP accepted but that is not
    ``sent`` is an unknown outcome (``sending``, or ``failed`` once reconciled),
    never ``pending`` (which a later run would send again).
    """
    per_recipient = esp.accepted_per_recipient()
    twice = {a: n for a, n in per_recipient.items() if n > 1}
    assert not twice, f"the ESP accepted these more than once: {twice}"
    assert set(per_recipient) <= set(addresses(readers)), "the ESP got mail for someone not due"
    accepted = accepted_recipients(esp)
    for delivery in ledger.deliveries():
        email = delivery.subscriber.email.lower()
        if delivery.status == Delivery.Status.SENT:
            assert email in accepted, f"delivery {delivery.pk} is sent but the ESP never accepted it"
            if delivery.reason != "settled by the ESP's webhook":
                assert delivery.esp_message_id == accepted[email], delivery.pk
        elif email in accepted:
            assert delivery.status in (Delivery.Status.SENDING, Delivery.Status.FAILED), (
                f"delivery {delivery.pk} was accepted by the ESP but is {delivery.status}"
            )


def request_times(esp, address):
    """When the ESP received each request holding ``address`` (seconds since the epoch)."""
    return [r.received_at for r in esp.requests if address in r.recipients]


def terminate_backends(database_url):
    """pg_terminate_backend on every other session of the test database; returns how many."""
    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            [own_backend_pid()],
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def own_backend_pid():
    """This test process's own PostgreSQL session (kept alive: the test reads through it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def age_pending_rows(minutes=16):
    """Make pending rows look ``minutes`` old, as a later beat tick would find them.

    ``requeue_orphaned`` re-hands pending rows older than 15 minutes (their task
    was lost); the tests age the rows rather than wait a quarter of an hour.
    """
    return Delivery.objects.filter(status=Delivery.Status.PENDING).update(
        created_at=timezone.now() - timezone.timedelta(minutes=minutes)
    )


class FaultySourceHandler(SourceHandler):
    def do_GET(self):
        delay = self.server.owner.hang_for(self.path)
        if delay:
            time.sleep(delay)  # past the client's timeout; the answer then goes nowhere
        super().do_GET()


class FaultySourceServer(RecordedSourceServer):
    """The recorded-source server, plus routes that hang and routes serving given bytes."""

    handler_class = FaultySourceHandler

    def __init__(self):
        super().__init__()
        self.hangs = {}

    def serve_bytes(self, prefix, body, content_type):
        with self._lock:
            self.routes = [r for r in self.routes if r.prefix != prefix]
            self.routes.append(Route(prefix, body, content_type))

    def hang(self, prefix, seconds):
        with self._lock:
            self.hangs[prefix] = seconds

    def hang_for(self, path):
        with self._lock:
            return max((s for p, s in self.hangs.items() if path.startswith(p)), default=0)


def record_figures(fault, **figures):
    """Append this run's figures for ``fault`` to $FAULTS_REPORT (JSON lines), when set.

    docs/reliability.md's Faults table is filled from such a file.
    """
    path = os.environ.get("FAULTS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"fault": fault, **figures}, default=str) + "\n")


def esp_figures(esp):
    """What the imitation ESP saw: requests by answer, and recipients accepted."""
    answers = {}
    for request in esp.requests:
        key = "accepted" if request.accepted else str(request.answer.status)
        answers[key] = answers.get(key, 0) + 1
    return {"esp_requests": answers, "recipients_accepted": sum(esp.accepted_per_recipient().values())}


def retry_gaps(esp, readers):
    """{retry number: (shortest, longest) wait in seconds} between a batch's requests at the ESP."""
    gaps = {}
    for address in addresses(readers):
        times = request_times(esp, address)
        for attempt, (before, after) in enumerate(zip(times, times[1:]), start=1):
            gaps.setdefault(attempt, []).append(after - before)
    return {n: (round(min(g), 2), round(max(g), 2)) for n, g in sorted(gaps.items())}
