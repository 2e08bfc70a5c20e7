"""Faults in the machinery: a send worker killed with SIGKILL mid-batch, Redis
restarted during the fan-out, PostgreSQL dropping every connection mid-run.

The real stack: PostgreSQL, Redis, real Celery workers (and beat), the imitation
Mailgun answering slowly so each fault lands while batches are in flight.
Twelve readers in chunks of two: six ESP batches. Every check is made at the
imitation ESP (what it accepted, per recipient), not only in our tables.

Tasks lost with the fault (the killed worker's unacknowledged task waits for
the broker's two-hour visibility timeout; Redis without persistence loses its
queue) leave their rows ``pending``; the next beat tick's ``requeue_orphaned``
hands out rows pending for over 15 minutes. The tests age those rows by 16
minutes instead of waiting a quarter of an hour.
"""

import os
import signal
import time

import pytest

from digest.models import Delivery
from digest.sending import reconcile_stale_deliveries
from django.utils import timezone
from tests import ledger
from tests.fakes.mailgun import Answer
from tests.hardening.faults_helpers import (  # noqa: F401  (fixtures)
    addresses,
    age_pending_rows,
    assert_ledger_matches_esp,
    configure,
    count,
    esp_figures,
    fake_mailgun,
    make_readers,
    record_figures,
    recorded_sources,
    redis_url,
    stack,
    statuses,
    terminate_backends,
    wait_until,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

READERS = 12
SLOW_ESP_SECONDS = 1.0


def in_flight(esp):
    """Requests the imitation ESP is still holding (neither accepted nor refused yet)."""
    return [r for r in esp.requests if r.answer.accepts and r.message_id is None]


def drained(esp, quiet=2.5):
    """Nothing pending, or the workers idle: no request held and none for ``quiet`` seconds."""
    if count("pending") == 0:
        return True
    return not in_flight(esp) and time.time() - max((r.received_at for r in esp.requests), default=0) > quiet


def settle_orphans(stack, esp, readers, timeout=30):
    """The next beat tick: pending rows (their task lost) are handed out again and sent.

    Waits until every reader's digest was accepted by the ESP, nothing is held
    there, and the ledger has stopped changing (each outcome recorded). Returns
    how many rows were orphaned.
    """
    orphans = count("pending")
    if orphans:
        age_pending_rows()
        stack.send_task("digest.tasks.enqueue_due_digests")
    everyone = set(addresses(readers))

    def settled():
        return count("pending") == 0 and set(esp.accepted_per_recipient()) == everyone and not in_flight(esp)

    assert wait_until(settled, timeout), (statuses(), esp.accepted_per_recipient(), stack.logs())

    def unchanged_for_a_second():
        before = statuses()
        time.sleep(1)
        return statuses() == before

    assert wait_until(unchanged_for_a_second, 10)
    return orphans


def assert_everyone_got_exactly_one(esp, readers):
    assert esp.accepted_per_recipient() == {email: 1 for email in addresses(readers)}
    assert_ledger_matches_esp(esp, readers)


def quiet_tick(stack, worker, esp):
    """One more beat tick after everything settled: nothing is sent again."""
    before = len(esp.requests)
    ticks = worker.log().count("Task digest.tasks.enqueue_due_digests[")
    stack.send_task("digest.tasks.enqueue_due_digests")
    assert wait_until(lambda: worker.log().count("Task digest.tasks.enqueue_due_digests[") > ticks, 20)
    assert len(esp.requests) == before, "a beat tick sent something again"


def reconcile_unknown(readers):
    """Rows left ``sending`` (outcome unknown) become ``failed`` once stale, never pending."""
    unknown = count("sending")
    assert reconcile_stale_deliveries(timezone.now() + timezone.timedelta(minutes=31)) == unknown
    assert count("sent") + count("failed") == len(readers)
    return unknown


@pytest.mark.django_db(transaction=True)
def test_send_worker_killed_mid_batch_then_a_new_worker_everyone_gets_exactly_one(
    stack, recorded_sources, fake_mailgun
):
    """SIGKILL lands while a batch is held by the slow ESP, which then accepts it:
    the ESP has it, our rows stay ``sending`` (never resent, reconciled failed);
    the batches not yet sent are sent by the new worker."""
    readers = make_readers(READERS)
    fake_mailgun.answer(Answer(delay=SLOW_ESP_SECONDS))
    configure(stack, recorded_sources, fake_mailgun, esp_timeout=15)
    first = stack.start_worker("sender1", concurrency=1)
    stack.send_task("digest.tasks.run_daily_job")

    assert wait_until(lambda: len(fake_mailgun.accepted_requests) >= 2 and in_flight(fake_mailgun), 45), stack.logs()
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)  # the worker and its pool child, killed at once
    assert first.process.returncode == -signal.SIGKILL
    killed_batch = in_flight(fake_mailgun)
    assert len(killed_batch) == 1
    fake_mailgun.answer(Answer(delay=0.2))  # the held request is accepted when its delay ends
    assert wait_until(lambda: killed_batch[0].accepted, 5)
    sent_before_restart = count("sent")
    assert sent_before_restart < READERS - len(killed_batch[0].recipients), "the kill came too late"

    second = stack.start_worker("sender2", concurrency=1)
    assert wait_until(lambda: any(n.startswith("sender2@") for n in stack.workers_answering()), 30), second.log()
    assert wait_until(lambda: drained(fake_mailgun), 30)  # lost tasks leave rows pending …
    orphans = settle_orphans(stack, fake_mailgun, readers)  # … until the next beat tick
    quiet_tick(stack, second, fake_mailgun)

    assert_everyone_got_exactly_one(fake_mailgun, readers)
    killed_rows = Delivery.objects.filter(subscriber__email__in=killed_batch[0].recipients)
    assert {d.status for d in ledger.deliveries(killed_rows)} == {"sending"}
    assert reconcile_unknown(readers) == len(killed_batch[0].recipients)
    record_figures("sigkill", **esp_figures(fake_mailgun), ledger=statuses(), sent_before_kill=sent_before_restart,
                   orphans_requeued=orphans)


@pytest.mark.django_db(transaction=True)
def test_redis_restarted_during_the_fan_out_resumes_on_the_next_beat_tick(
    stack, recorded_sources, fake_mailgun, redis_server
):
    """Redis (no persistence) is restarted after two batches: the queued send tasks
    are gone. The worker reconnects; beat's next tick re-hands the pending rows."""
    readers = make_readers(READERS)
    fake_mailgun.answer(Answer(delay=0.5))
    configure(stack, recorded_sources, fake_mailgun, esp_timeout=15)
    worker = stack.start_worker(concurrency=1)
    stack.send_task("digest.tasks.run_daily_job")

    assert wait_until(lambda: len(fake_mailgun.accepted_requests) >= 2, 45), stack.logs()
    redis_server.restart()
    pending_at_restart = count("pending")
    assert pending_at_restart > 0, "the restart came too late"
    assert wait_until(lambda: stack.workers_answering(), 30), stack.logs()  # reconnected
    stack.start_beat(2)  # the next ticks (every job every 2 s)
    orphans = settle_orphans(stack, fake_mailgun, readers, timeout=45)
    quiet_tick(stack, worker, fake_mailgun)

    assert_everyone_got_exactly_one(fake_mailgun, readers)
    unknown = reconcile_unknown(readers)
    record_figures("redis-restart", **esp_figures(fake_mailgun), ledger=statuses(), pending_at_restart=pending_at_restart,
                   orphans_requeued=orphans, unknown=unknown)


@pytest.mark.django_db(transaction=True)
def test_postgres_drops_every_connection_mid_run_no_duplicates_no_losses(
    stack, recorded_sources, fake_mailgun, test_database_url
):
    """pg_terminate_backend on every session while a batch is held by the ESP, twice.

    The worker's task fails recording the outcome: the ESP has the batch, our rows
    stay ``sending`` (never resent, reconciled failed). The next tasks reconnect;
    what was pending is sent (by its task, or the next beat tick)."""
    readers = make_readers(READERS)
    fake_mailgun.answer(Answer(delay=SLOW_ESP_SECONDS))
    configure(stack, recorded_sources, fake_mailgun, esp_timeout=15)
    worker = stack.start_worker(concurrency=1)
    stack.send_task("digest.tasks.run_daily_job")

    terminated = 0
    for accepted in (1, 3):
        assert wait_until(
            lambda: len(fake_mailgun.accepted_requests) >= accepted and in_flight(fake_mailgun), 45
        ), stack.logs()
        terminated += terminate_backends(test_database_url)
    assert terminated >= 2
    assert wait_until(lambda: drained(fake_mailgun), 30)
    orphans = settle_orphans(stack, fake_mailgun, readers)
    quiet_tick(stack, worker, fake_mailgun)

    assert_everyone_got_exactly_one(fake_mailgun, readers)
    assert "terminating connection due to administrator command" in worker.log() or "server closed" in worker.log()
    unknown = reconcile_unknown(readers)
    record_figures("pg-terminate", **esp_figures(fake_mailgun), ledger=statuses(), backends_terminated=terminated,
                   orphans_requeued=orphans, unknown=unknown)
