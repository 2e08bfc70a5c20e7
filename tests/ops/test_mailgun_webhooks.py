"""Mailgun's tracking webhooks, posted to the running site for messages it really sent.

Each event is signed with the webhook signing key and carries the basic-auth
credentials of WEBHOOK_SECRET, as Mailgun's would when configured as
``https://user:password@host/anymail/mailgun/tracking/``. The site stores each
event and a worker applies it, so the tests wait (bounded) for the outcome.
"""

import pytest

from subscriptions.models import Subscriber
from tests import ledger
from tests.fakes import mailgun_webhooks as webhooks
from tests.ops.conftest import mailgun_env, sources_env
from tests.ops.stack import wait_until

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

SIGNING_KEY = "key-webhook-signing-test"
WEBHOOK_USER, WEBHOOK_PASSWORD = "mailgun", "webhook-password"
TRACKING_PATH = "/anymail/mailgun/tracking/"


@pytest.fixture
def sent_through_mailgun(stack, recorded_sources, fake_mailgun):
    """Five subscribers whose digest went out through the imitation ESP; {email: message id}."""
    from tests.factories import SubscriberFactory

    SubscriberFactory.create_batch(5, interests="")
    stack.configure(
        **sources_env(recorded_sources), **mailgun_env(fake_mailgun),
        MAILGUN_WEBHOOK_SIGNING_KEY=SIGNING_KEY, WEBHOOK_SECRET=f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
    )
    stack.start_web()
    stack.start_worker()
    stack.send_task("digest.tasks.run_daily_job")
    assert wait_until(lambda: ledger.count("sent") == 5, 60), stack.logs()
    return {
        email: request.message_id
        for request in fake_mailgun.accepted_requests
        for email in request.recipients
    }


def post_event(stack, body, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD)):
    return stack.post(TRACKING_PATH, json=body, auth=auth)


def status_of(email):
    return Subscriber.objects.get(email__iexact=email).status


@pytest.mark.django_db(transaction=True)
def test_bounce_complaint_and_unsubscribe_events_suppress_the_subscriber(stack, sent_through_mailgun):
    bounced, complained, unsubscribed, deferred, delivered = sorted(sent_through_mailgun)
    events = [
        webhooks.permanent_bounce(SIGNING_KEY, bounced, sent_through_mailgun[bounced]),
        webhooks.complaint(SIGNING_KEY, complained, sent_through_mailgun[complained]),
        webhooks.unsubscribe(SIGNING_KEY, unsubscribed, sent_through_mailgun[unsubscribed]),
        webhooks.temporary_failure(SIGNING_KEY, deferred, sent_through_mailgun[deferred]),
        webhooks.delivered(SIGNING_KEY, delivered, sent_through_mailgun[delivered]),
    ]

    answers = [post_event(stack, body).status_code for body in events]
    expected = {bounced: "bounced", complained: "complained", unsubscribed: "unsubscribed"}
    applied = wait_until(lambda: {email: status_of(email) for email in expected} == expected, 20)

    assert answers == [200] * 5, stack.logs()
    assert applied, ({email: status_of(email) for email in expected}, stack.logs())
    assert status_of(deferred) == "active"  # a soft bounce is retried by Mailgun, not suppressed
    assert status_of(delivered) == "active"


@pytest.mark.django_db(transaction=True)
def test_webhooks_without_the_secret_or_the_signature_change_nothing(stack, sent_through_mailgun):
    email = sorted(sent_through_mailgun)[0]
    genuine = webhooks.complaint(SIGNING_KEY, email, sent_through_mailgun[email])
    forged = webhooks.complaint("not-the-signing-key", email, sent_through_mailgun[email])

    without_auth = post_event(stack, genuine, auth=None)
    wrong_password = post_event(stack, genuine, auth=(WEBHOOK_USER, "guess"))
    bad_signature = post_event(stack, forged)

    wait_until(lambda: status_of(email) != "active", 3)  # give a wrongly accepted event time to apply

    assert without_auth.status_code in (400, 401, 403)
    assert wrong_password.status_code in (400, 401, 403)
    assert bad_signature.status_code in (400, 401, 403)
    assert status_of(email) == "active"
