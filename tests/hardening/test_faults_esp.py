"""Faults at the ESP: 500s, 429 with Retry-After, and requests that hang past the
client's timeout, each for a while, then recovery.

The real stack: PostgreSQL, Redis, a real Celery worker, django-anymail's Mailgun
backend talking to the imitation Mailgun (``tests/fakes/mailgun.py``), which
records every request. Eight readers in chunks of two, so four ESP batches are
in play; the send task's retry base is 0.5 s (``DIGEST_RETRY_BASE_SECONDS``).
"""

import time

import pytest

from digest.models import Delivery
from digest.sending import reconcile_stale_deliveries
from django.utils import timezone
from tests import ledger
from tests.fakes.mailgun import Answer
from tests.hardening.faults_helpers import (  # noqa: F401  (fixtures)
    ESP_TIMEOUT_SECONDS,
    RETRY_BASE_SECONDS,
    addresses,
    assert_ledger_matches_esp,
    configure,
    count,
    esp_figures,
    fake_mailgun,
    make_readers,
    record_figures,
    recorded_sources,
    redis_url,
    request_times,
    retry_gaps,
    stack,
    statuses,
    wait_until,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

READERS = 8
TOLERANCE = 0.05  # seconds: clock granularity between the worker and the imitation ESP


def failed_answers(esp, status):
    return [r for r in esp.requests if r.answer.status == status]


def assert_backs_off(esp, readers, at_least=lambda attempt: 0.5 * 2**attempt * RETRY_BASE_SECONDS):
    """Each retry of a batch waited at least the lower bound of its backoff (jitter is ±50 %)."""
    retried = 0
    for address in addresses(readers):
        times = request_times(esp, address)
        for attempt, (before, after) in enumerate(zip(times, times[1:])):
            assert after - before >= at_least(attempt) - TOLERANCE, (address, attempt, after - before)
            retried += 1
    assert retried, "no batch was retried"


def run_outage(stack, recorded_sources, esp, readers, status):
    """Start the day's job with the ESP failing every request; recover after several failures."""
    configure(stack, recorded_sources, esp)
    stack.start_worker(concurrency=2)
    stack.send_task("digest.tasks.run_daily_job")
    assert wait_until(lambda: len(failed_answers(esp, status)) >= 8, 45), stack.logs()
    assert not esp.accepted_requests and not count("sent")
    recovered_at = time.time()
    esp.recover()
    assert wait_until(lambda: count("sent") == len(readers), 45), (stack.logs(), esp.requests)
    return recovered_at


@pytest.mark.django_db(transaction=True)
def test_esp_500s_for_a_while_then_recovers_everyone_gets_one_digest(stack, recorded_sources, fake_mailgun):
    readers = make_readers(READERS)
    fake_mailgun.fail(500)
    recovered_at = run_outage(stack, recorded_sources, fake_mailgun, readers, 500)

    assert fake_mailgun.accepted_per_recipient() == {email: 1 for email in addresses(readers)}
    assert all(r.received_at >= recovered_at for r in fake_mailgun.accepted_requests)
    assert_ledger_matches_esp(fake_mailgun, readers)
    assert_backs_off(fake_mailgun, readers)
    assert min(d.attempts for d in ledger.deliveries()) >= 2  # every batch was retried
    assert "digest send deferred" in stack.logs(tail=None)
    record_figures("esp-500", **esp_figures(fake_mailgun), ledger=statuses(), retry_gaps=retry_gaps(fake_mailgun, readers))


@pytest.mark.django_db(transaction=True)
def test_esp_429_with_retry_after_then_recovers_and_retry_after_is_respected(
    stack, recorded_sources, fake_mailgun
):
    readers = make_readers(READERS)
    retry_after = 2
    fake_mailgun.throttle(retry_after=retry_after)
    recovered_at = run_outage(stack, recorded_sources, fake_mailgun, readers, 429)

    assert fake_mailgun.accepted_per_recipient() == {email: 1 for email in addresses(readers)}
    assert all(r.received_at >= recovered_at for r in fake_mailgun.accepted_requests)
    assert_ledger_matches_esp(fake_mailgun, readers)
    # The ESP asked for 2 s between tries; the backoff alone would retry after 0.25 s.
    assert_backs_off(
        fake_mailgun, readers,
        at_least=lambda attempt: max(retry_after, 0.5 * 2**attempt * RETRY_BASE_SECONDS),
    )
    record_figures("esp-429", **esp_figures(fake_mailgun), ledger=statuses(), retry_gaps=retry_gaps(fake_mailgun, readers))


@pytest.mark.django_db(transaction=True)
def test_esp_hangs_past_the_timeout_then_recovers_nothing_is_sent_twice(stack, recorded_sources, fake_mailgun):
    """Two batches hang past the client's 1 s timeout; the rest go through at once.

    The first hung request is accepted by the imitation ESP after the client gave
    up: the ESP has the message but we do not know it. The second hung request
    ends in a 503: the ESP never took it. For both our rows stay ``sending``
    (outcome unknown), are never sent again (not by the retry, nor a later beat
    tick, nor the daily job run again) and are reconciled as ``failed`` once stale.
    So the readers of the first batch got exactly one digest, those of the second
    none (the at-most-once trade-off), everyone else exactly one, and no row the
    ESP did not accept is ``sent``.
    """
    readers = make_readers(READERS)
    hang = ESP_TIMEOUT_SECONDS + 3
    fake_mailgun.answer(Answer(delay=hang), times=1)
    fake_mailgun.answer(Answer(status=503, delay=hang), times=1)
    configure(stack, recorded_sources, fake_mailgun)
    worker = stack.start_worker(concurrency=2)
    stack.send_task("digest.tasks.run_daily_job")

    def hung():
        return [r for r in fake_mailgun.requests if r.answer.delay]

    assert wait_until(lambda: len(hung()) == 2, 45), stack.logs()
    late_accept, late_refusal = hung()
    assert wait_until(lambda: time.time() > late_refusal.received_at + hang + 0.5 and late_accept.accepted, hang + 5)
    hung_readers = len(late_accept.recipients) + len(late_refusal.recipients)
    assert wait_until(lambda: count("sent") == READERS - hung_readers, 45), stack.logs()

    requests_before = len(fake_mailgun.requests)
    stack.send_task("digest.tasks.enqueue_due_digests")  # a later beat tick
    stack.send_task("digest.tasks.run_daily_job")  # and the whole job again
    assert wait_until(
        lambda: worker.log().count("digest.tasks.enqueue_due_digests[") >= 2
        and worker.log().count("digest.tasks.run_daily_job[") >= 4, 30
    ), worker.log()[-3000:]  # received and succeeded: the second job and the tick are done
    assert wait_until(lambda: "enqueued count=0" in worker.log(), 10)

    assert len(fake_mailgun.requests) == requests_before, "something was sent again"
    expected = {email: 1 for email in addresses(readers) if email not in late_refusal.recipients}
    assert fake_mailgun.accepted_per_recipient() == expected
    unknown = Delivery.objects.filter(subscriber__email__in=late_accept.recipients + late_refusal.recipients)
    assert {d.status for d in ledger.deliveries(unknown)} == {"sending"}
    assert all(d.reason.startswith("outcome unknown") for d in ledger.deliveries(unknown))
    assert_ledger_matches_esp(fake_mailgun, readers)

    later = timezone.now() + timezone.timedelta(minutes=31)
    assert reconcile_stale_deliveries(later) == hung_readers
    assert {d.status for d in ledger.deliveries(unknown)} == {"failed"}
    assert count("sent") == READERS - hung_readers
    assert_ledger_matches_esp(fake_mailgun, readers)
    record_figures("esp-hang", **esp_figures(fake_mailgun), ledger=statuses(), hung_readers=hung_readers)
