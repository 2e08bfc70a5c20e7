"""The same ESP webhook event delivered three times, out of order: applied once.

The real stack: gunicorn receiving Mailgun's signed tracking webhooks, a Celery
worker applying the engagement events, PostgreSQL and Redis. Three readers got
their digest through the imitation Mailgun; then, for the first, ``clicked``,
``opened`` and ``delivered`` (which happened in the opposite order), for the
second ``unsubscribed`` and for the third a permanent bounce are each posted
three times, shuffled (Mailgun retries and does not promise any order).
"""

import random
from datetime import datetime, timezone as dt_timezone

import pytest

from digest.models import Delivery, WebhookEvent
from subscriptions.models import Subscriber
from tests.fakes import mailgun_webhooks as webhooks
from tests.hardening.faults_helpers import (  # noqa: F401  (fixtures)
    SIGNING_KEY,
    TRACKING_PATH,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
    accepted_recipients,
    configure,
    count,
    fake_mailgun,
    make_readers,
    record_figures,
    recorded_sources,
    redis_url,
    stack,
    wait_until,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

REPEATS = 3


def at(body, moment):
    """``body`` as having happened at ``moment`` (the signature covers only its own block)."""
    body["event-data"]["timestamp"] = moment
    return body


@pytest.mark.django_db(transaction=True)
def test_each_webhook_event_three_times_out_of_order_is_applied_once(stack, recorded_sources, fake_mailgun):
    readers = make_readers(3)
    configure(stack, recorded_sources, fake_mailgun)
    stack.start_web()
    stack.start_worker(concurrency=2)
    stack.send_task("digest.tasks.run_daily_job")
    assert wait_until(lambda: count("sent") == 3, 60), stack.logs()
    ids = accepted_recipients(fake_mailgun)
    engaged, leaving, bouncing = (s.email.lower() for s in sorted(readers, key=lambda s: s.pk))

    base = datetime.now(dt_timezone.utc).timestamp() - 600
    delivered = at(webhooks.delivered(SIGNING_KEY, engaged, ids[engaged]), base + 1)
    opened = at(webhooks.event(SIGNING_KEY, "opened", engaged, ids[engaged]), base + 2)
    clicked = at(webhooks.event(SIGNING_KEY, "clicked", engaged, ids[engaged], url="https://arxiv.org/abs/1"), base + 3)
    unsubscribed = at(webhooks.unsubscribe(SIGNING_KEY, leaving, ids[leaving]), base + 4)
    bounced = at(webhooks.permanent_bounce(SIGNING_KEY, bouncing, ids[bouncing]), base + 5)
    events = [clicked, opened, delivered, unsubscribed, bounced]
    posts = [body for body in events for _ in range(REPEATS)]
    random.Random(7).shuffle(posts)
    posts = [clicked, opened, *posts]  # the latest first, whatever the shuffle did

    answers = [stack.post(TRACKING_PATH, json=body, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD)).status_code for body in posts]
    assert answers == [200] * len(posts), stack.logs()
    assert wait_until(lambda: WebhookEvent.objects.filter(applied_at__isnull=False).count() == len(events), 20), (
        list(WebhookEvent.objects.values("event_type", "applied_at")), stack.logs()
    )
    assert WebhookEvent.objects.count() == len(events)  # one row per event, however often it came

    delivery = Delivery.objects.get(subscriber__email__iexact=engaged)
    moment = lambda seconds: datetime.fromtimestamp(base + seconds, dt_timezone.utc)  # noqa: E731
    assert (delivery.delivered_at, delivery.opened_at, delivery.clicked_at) == (moment(1), moment(2), moment(3))
    assert Subscriber.objects.get(email__iexact=leaving).status == "unsubscribed"
    assert Subscriber.objects.get(email__iexact=leaving).unsubscribed_via == "esp"
    assert Subscriber.objects.get(email__iexact=bouncing).status == "bounced"
    assert Subscriber.objects.get(email__iexact=engaged).status == "active"
    logs = stack.logs(tail=None)
    for event_type in ("delivered", "opened", "clicked", "unsubscribed", "bounced"):
        assert logs.count(f"webhook event applied esp=Mailgun type={event_type} ") == 1, event_type
    assert "webhook event repeated" in logs
    assert fake_mailgun.accepted_per_recipient() == {a: 1 for a in ids}  # and nobody got mail twice
    record_figures("webhooks-repeated", posted=len(posts), stored=WebhookEvent.objects.count(),
                   applied=sum(logs.count(f"webhook event applied esp=Mailgun type={t} ") for t in
                               ("delivered", "opened", "clicked", "unsubscribed", "bounced")),
                   repeats_seen=logs.count("webhook event repeated"))
