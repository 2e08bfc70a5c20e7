"""The daily job through django-anymail's real Mailgun backend, against an imitation
of Mailgun's HTTP API that records every request and can be made to fail.

The assertions hold whether the digest is sent one message per recipient or
in batches with recipient variables: each recipient is read as Mailgun would
deliver to them (``%recipient.…%`` substituted).
"""

import pytest
from digest.models import Delivery
from subscriptions import tokens
from subscriptions.models import Subscriber
from tests import ledger
from tests.fakes.mailgun import MAX_RECIPIENTS_PER_MESSAGE
from tests.ops.audience import addresses, make_audience
from tests.ops.conftest import mailgun_env, sources_env
from tests.ops.stack import wait_until

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

ESP_TIMEOUT_SECONDS = 1
RETRY_BASE_SECONDS = 2  # the send task backs off 1–3 s before its first retry, doubling
RETRY_WAIT_SECONDS = 40


def start_mailgun_stack(stack, recorded_sources, esp, *, web=False):
    readers, not_due = make_audience()
    stack.configure(
        **sources_env(recorded_sources), **mailgun_env(esp),
        ESP_TIMEOUT_SECONDS=ESP_TIMEOUT_SECONDS, DIGEST_SEND_BATCH_SIZE=2,
        DIGEST_RETRY_BASE_SECONDS=RETRY_BASE_SECONDS,
    )
    if web:
        stack.start_web()
    stack.start_worker()
    return readers, not_due


def sent_count():
    return ledger.count("sent")


def unsubscribe_target(stack, list_unsubscribe):
    """The subscriber a ``List-Unsubscribe: <…/unsubscribe/<token>/>, <mailto:…>`` header unsubscribes."""
    url = list_unsubscribe.split(">")[0].lstrip("<")
    prefix = f"{stack.site_url}/unsubscribe/"
    assert url.startswith(prefix), list_unsubscribe
    return tokens.read_token(url[len(prefix):].rstrip("/"), tokens.UNSUBSCRIBE, allow_revoked=True).subscriber


@pytest.mark.django_db(transaction=True)
def test_each_subscriber_gets_one_message_through_the_esp_api_with_their_own_headers(
    stack, recorded_sources, fake_mailgun
):
    readers, _ = start_mailgun_stack(stack, recorded_sources, fake_mailgun)
    stack.send_task("digest.tasks.run_daily_job")
    assert wait_until(lambda: sent_count() == len(readers), 60), stack.logs()

    assert fake_mailgun.accepted_per_recipient() == {email: 1 for email in addresses(readers)}
    assert any(len(request.recipients) > 1 for request in fake_mailgun.accepted_requests)  # batches
    for request in fake_mailgun.accepted_requests:
        assert request.domain == "mg.example.org" and request.api_key == "test"
        assert 1 <= len(request.recipients) <= MAX_RECIPIENTS_PER_MESSAGE
        assert request.value("from") == "Paperboy <digest@mg.example.org>"
        for email in request.recipients:
            subscriber = Subscriber.objects.get(email__iexact=email)
            headers = request.headers_for(email)
            assert unsubscribe_target(stack, headers["List-Unsubscribe"]) == subscriber
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert request.personalise(request.value("subject"), email).startswith("Paperboy ")
            text = request.text_for(email)
            assert email in text.lower()
            assert not [other for other in addresses(readers) if other != email and other in text.lower()]
            assert ledger.of(subscriber).esp_message_id == request.message_id
    logs = stack.logs(tail=None).lower()
    assert not [email for email in addresses(readers) if email in logs]  # ids, never addresses


@pytest.mark.django_db(transaction=True)
def test_esp_errors_are_retried_and_a_timeout_is_never_resent(stack, recorded_sources, fake_mailgun):
    readers, _ = start_mailgun_stack(stack, recorded_sources, fake_mailgun)
    fake_mailgun.fail(500, times=1)
    fake_mailgun.throttle(retry_after=1, times=1)
    fake_mailgun.hang(ESP_TIMEOUT_SECONDS + 2, times=1)  # accepted, but after the client gave up
    stack.send_task("digest.tasks.run_daily_job")

    def settled():
        hung = [r for r in fake_mailgun.requests if r.answer.delay]
        return hung and hung[0].accepted and sent_count() == len(readers) - len(hung[0].recipients)

    assert wait_until(settled, RETRY_WAIT_SECONDS), stack.logs()
    requests_before = len(fake_mailgun.requests)
    stack.send_task("digest.tasks.enqueue_due_digests")  # a later beat tick
    stack.send_task("digest.tasks.run_daily_job")  # and the job again
    wait_until(lambda: False, 4)  # nothing may be sent meanwhile

    failed = [r for r in fake_mailgun.requests if r.answer.status in (500, 429)]
    hung = next(r for r in fake_mailgun.requests if r.answer.delay)
    assert sorted(r.answer.status for r in failed) == [429, 500]
    assert len(fake_mailgun.requests) == requests_before
    assert fake_mailgun.accepted_per_recipient() == {email: 1 for email in addresses(readers)}
    for request in failed:  # retried until accepted
        assert ledger.count("sent", Delivery.objects.filter(subscriber__email__in=request.recipients)) == len(
            request.recipients
        )
    unknown = ledger.deliveries(Delivery.objects.filter(subscriber__email__in=hung.recipients))
    assert {d.status for d in unknown} == {"sending"}
    assert all(d.reason.startswith("outcome unknown") for d in unknown)
