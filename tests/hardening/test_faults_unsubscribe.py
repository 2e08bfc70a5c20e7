"""An unsubscribe arriving while the subscriber's batch is in flight.

The real stack: gunicorn, PostgreSQL, Redis, one Celery worker, the imitation
Mailgun holding each batch for 1.5 s. Eight readers in chunks of two, sent one
chunk after the other. While the first batch is held by the ESP, four readers
leave: one of that batch (web page), and one of each later batch, by RFC 8058
one-click, by the web page, and by Mailgun's ``unsubscribed`` webhook.

No digest may reach the ESP after the unsubscribe was recorded; the reader of
the batch already handed over gets that one (the ESP had accepted it), nothing more.
"""

import time

import pytest

from subscriptions import services
from subscriptions.models import Subscriber
from tests import ledger as the_ledger
from tests.fakes import mailgun_webhooks as webhooks
from tests.fakes.mailgun import Answer
from tests.hardening.faults_helpers import (  # noqa: F401  (fixtures)
    SIGNING_KEY,
    TRACKING_PATH,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
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
    stack,
    statuses as ledger,
    wait_until,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

HELD_SECONDS = 1.5


def unsubscribe_path(subscriber):
    return f"/unsubscribe/{services.unsubscribe_token(subscriber)}/"


def requests_for(esp, subscriber):
    return [r for r in esp.requests if subscriber.email.lower() in r.recipients]


@pytest.mark.django_db(transaction=True)
def test_unsubscribe_while_the_batch_is_in_flight_nothing_is_sent_after_it(stack, recorded_sources, fake_mailgun):
    readers = sorted(make_readers(8), key=lambda s: s.pk)  # chunks go out in id order
    fake_mailgun.answer(Answer(delay=HELD_SECONDS))
    configure(stack, recorded_sources, fake_mailgun, esp_timeout=15)
    stack.start_web()
    stack.start_worker(concurrency=1)
    stack.send_task("digest.tasks.run_daily_job")

    assert wait_until(lambda: fake_mailgun.requests, 45), stack.logs()
    held = fake_mailgun.requests[0]
    in_held_batch = next(s for s in readers if s.email.lower() in held.recipients)
    later = [s for s in readers if s.email.lower() not in fake_mailgun.requests[0].recipients]
    one_click, web_page, by_webhook = later[0], later[2], later[4]  # three different later batches

    answers = [
        stack.post(unsubscribe_path(in_held_batch), data={}).status_code,
        stack.post(unsubscribe_path(one_click), data={"List-Unsubscribe": "One-Click"}).status_code,
        stack.post(unsubscribe_path(web_page), data={}).status_code,
        stack.post(
            TRACKING_PATH, json=webhooks.unsubscribe(SIGNING_KEY, by_webhook.email, "<yesterday.1@mg.example.org>"),
            auth=(WEBHOOK_USER, WEBHOOK_PASSWORD),
        ).status_code,
    ]
    assert answers == [200] * 4, stack.logs()
    assert not held.accepted and time.time() < held.received_at + HELD_SECONDS, "the batch was no longer in flight"
    left = [in_held_batch, one_click, web_page, by_webhook]
    for subscriber in left:
        subscriber.refresh_from_db()
        assert subscriber.status == Subscriber.Status.UNSUBSCRIBED

    def done():
        return count("pending") == 0 and count("sending") == 0

    assert wait_until(done, 45), stack.logs()

    for subscriber in left:
        after = [r for r in requests_for(fake_mailgun, subscriber) if r.received_at >= subscriber.unsubscribed_at.timestamp()]
        assert not after, f"{subscriber.unsubscribed_via}: a digest reached the ESP after the unsubscribe"
    assert [s.unsubscribed_via for s in left] == ["page", "one-click", "page", "esp"]
    expected = {email: 1 for email in addresses(readers) if email not in addresses(left[1:])}
    assert fake_mailgun.accepted_per_recipient() == expected  # the held batch's reader got theirs
    assert_ledger_matches_esp(fake_mailgun, readers)
    statuses = {s.email: the_ledger.of(s).status for s in left[1:]}
    assert set(statuses.values()) == {"skipped"}, statuses
    record_figures("unsubscribe-in-flight", **esp_figures(fake_mailgun), ledger=ledger(),
                   unsubscribed=[s.unsubscribed_via for s in left])
