"""Messages the ESP took and then did not send: Amazon SES's rendering failures (a stored template
that cannot render the message) and rejections. The delivery is failed with the ESP's reason and
never resent; the reader is left as they are."""

from datetime import timedelta
from unittest import mock

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from django.utils import timezone

from digest.models import Delivery, SendCall, WebhookEvent
from digest.sending import reconcile_stale_deliveries, send_edition_to
from digest.webhooks import apply_event
from subscriptions.models import Subscriber, Suppression
from tests.digest.builders import built_edition
from tests.digest.esp_answers import timeout_error
from tests.factories import SubscriberFactory
from tests.fakes.ses_webhooks import post_ses_event, ses_event

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "esp:webhook-password"
MESSAGE_ID = "0a1b2c3d-0000-4000-8000-000000000002"
RENDERING_ERROR = "Attribute 'html' is not present in the rendering data."


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def delivery():
    return Delivery.objects.create(subscriber=SubscriberFactory(interests=""), edition=built_edition(),
                                   status="sent", sent_at=timezone.now(), esp_message_id=MESSAGE_ID, paper_ids=[1])


def post_not_sent(recipient, event_type, details):
    return post_ses_event(ses_event(event_type, recipient, MESSAGE_ID, **details), f"sns-{event_type}", WEBHOOK_SECRET)


@pytest.mark.parametrize(("event_type", "details", "said"), [
    ("Rendering Failure", {"failure": {"errorMessage": RENDERING_ERROR, "templateName": "paperboy-digest"}},
     RENDERING_ERROR),
    ("Reject", {"reject": {"reason": "Bad content"}}, "Bad content"),
])
def test_a_message_ses_did_not_send_fails_its_delivery_and_leaves_the_reader_alone(
    delivery, django_capture_on_commit_callbacks, caplog, event_type, details, said
):
    with django_capture_on_commit_callbacks(execute=True):
        assert post_not_sent(delivery.subscriber.email, event_type, details).status_code == 200

    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.sent_at is None
    assert said in delivery.reason
    assert Subscriber.objects.get(pk=delivery.subscriber_id).status == "active"
    assert not Suppression.objects.exists()
    assert WebhookEvent.objects.get().applied_at is not None
    assert f"digest not sent by the ESP delivery={delivery.pk}" in caplog.text


def test_a_rendering_failure_does_not_undo_another_failure(delivery, django_capture_on_commit_callbacks):
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", reason="recipient refused")
    with django_capture_on_commit_callbacks(execute=True):
        post_not_sent(delivery.subscriber.email, "Rendering Failure", {"failure": {"errorMessage": RENDERING_ERROR}})

    delivery.refresh_from_db()
    assert (delivery.status, delivery.reason) == ("failed", "recipient refused")


def test_a_rendering_failure_settles_an_unknown_call_as_taken_and_fails_only_its_reader(batch_outbox, settings):
    settings.DIGEST_CLAIMS_PER_CALL = True
    readers = [SubscriberFactory(interests="diffusion models") for _ in range(2)]
    edition, ids = built_edition(), [r.pk for r in readers]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        send_edition_to(edition, ids)  # the call's answer lost: its outcome unknown
    unsent = Delivery.objects.get(subscriber=readers[0])

    event = WebhookEvent.objects.create(
        event_id="e-render", esp="Amazon SES", event_type="failed", recipient=readers[0].email, message_id="",
        occurred_at=timezone.now(), details={"metadata": {"delivery_id": str(unsent.pk)}, "description": RENDERING_ERROR},
    )
    apply_event(event.pk)

    assert SendCall.objects.get().status == "sent"  # SES had the call
    assert dict(Delivery.objects.values_list("subscriber_id", "status")) == {ids[0]: "failed", ids[1]: "sent"}
    assert reconcile_stale_deliveries(timezone.now() + timedelta(hours=1)) == 0
    assert send_edition_to(edition, ids).sent == 0 and batch_outbox == []  # neither is sent again
