"""Hard and soft bounces as Postmark and Amazon SES post them: only a hard bounce suppresses the reader.

anymail names Postmark's soft bounces and every SES bounce ``bounced``; the ESP's own
payload says whether the failure is permanent. It names ``bounced`` too the message
Mailgun drops for an address on one of its suppression lists; the reason says which.
"""

import base64
import json

import pytest
from django.test import Client

from digest.models import Delivery, WebhookEvent
from subscriptions import services
from subscriptions.models import Subscriber, Suppression, email_hash
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory
from tests.fakes import mailgun_webhooks
from tests.fakes.ses_webhooks import post_ses_event, ses_event

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "esp:webhook-password"
MAILGUN_SIGNING_KEY = "mailgun-webhook-signing-key"
MESSAGE_ID = "0a1b2c3d-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}


@pytest.fixture
def delivery():
    return Delivery.objects.create(subscriber=SubscriberFactory(interests=""), edition=built_edition(),
                                   status="sent", esp_message_id=MESSAGE_ID, paper_ids=[1])


def auth():
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(WEBHOOK_SECRET.encode()).decode()}


def postmark_bounce(delivery, kind, inactive):
    return {
        "RecordType": "Bounce", "ID": 4323372036854775807, "Type": kind, "TypeCode": 4096,
        "MessageID": MESSAGE_ID, "Description": "", "Details": "smtp;452 4.2.2 mailbox full",
        "Email": delivery.subscriber.email, "BouncedAt": "2026-11-20T07:15:00Z", "DumpAvailable": False,
        "Inactive": inactive, "CanActivate": True, "Subject": "Paperboy", "MessageStream": "daily-digests",
        "Metadata": {"delivery_id": str(delivery.pk)},
    }


def post_postmark(body):
    return Client().post("/anymail/postmark/tracking/", data=json.dumps(body), content_type="application/json",
                         **auth())


def post_ses_bounce(delivery, bounce_type, sub_type):
    event = ses_event(
        "Bounce", delivery.subscriber.email, MESSAGE_ID, type_field="notificationType",
        bounce={
            "bounceType": bounce_type, "bounceSubType": sub_type, "timestamp": "2026-11-20T07:15:00.000Z",
            "bouncedRecipients": [{"emailAddress": delivery.subscriber.email, "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "feedbackId": "0102015fd91a6479-feedback",
        },
    )
    return post_ses_event(event, f"sns-{bounce_type}-{sub_type}", WEBHOOK_SECRET)


def post_mailgun_drop(email, reason):
    body = mailgun_webhooks.dropped_for_suppression_list(MAILGUN_SIGNING_KEY, email, MESSAGE_ID, reason)
    return Client().post("/anymail/mailgun/tracking/", data=json.dumps(body), content_type="application/json",
                         **auth())


def status_of(delivery):
    return Subscriber.objects.get(pk=delivery.subscriber_id).status


@pytest.mark.parametrize("kind", ["SoftBounce", "VirusNotification"])
def test_a_postmark_soft_bounce_leaves_the_reader_active(delivery, kind):
    assert post_postmark(postmark_bounce(delivery, kind, inactive=False)).status_code == 200
    delivery.refresh_from_db()
    assert status_of(delivery) == "active" and delivery.bounced_at is None
    assert not Suppression.objects.exists() and not WebhookEvent.objects.exists()


@pytest.mark.parametrize(("kind", "inactive"), [("HardBounce", True), ("SoftBounce", True)])
def test_a_postmark_hard_bounce_or_a_bounce_that_deactivated_the_address_suppresses(delivery, kind, inactive):
    assert post_postmark(postmark_bounce(delivery, kind, inactive)).status_code == 200
    delivery.refresh_from_db()
    assert status_of(delivery) == "bounced" and delivery.bounced_at is not None
    assert Suppression.objects.get().reason == "bounced"


@pytest.mark.parametrize(("bounce_type", "sub_type"), [("Transient", "MailboxFull"), ("Undetermined", "Undetermined")])
def test_an_ses_transient_or_undetermined_bounce_leaves_the_reader_active(delivery, bounce_type, sub_type):
    assert post_ses_bounce(delivery, bounce_type, sub_type).status_code == 200
    delivery.refresh_from_db()
    assert status_of(delivery) == "active" and delivery.bounced_at is None
    assert not Suppression.objects.exists() and not WebhookEvent.objects.exists()


def test_an_ses_permanent_bounce_suppresses(delivery):
    assert post_ses_bounce(delivery, "Permanent", "General").status_code == 200
    delivery.refresh_from_db()
    assert status_of(delivery) == "bounced" and delivery.bounced_at is not None
    assert WebhookEvent.objects.get().outcome == f"delivery {delivery.pk} updated; subscriber suppressed (bounced)"


def test_a_mailgun_drop_for_its_unsubscribe_list_unsubscribes_the_reader(delivery):
    assert post_mailgun_drop(delivery.subscriber.email, "suppress-unsubscribe").status_code == 200
    subscriber = Subscriber.objects.get(pk=delivery.subscriber_id)
    delivery.refresh_from_db()
    assert (subscriber.status, subscriber.unsubscribed_via) == ("unsubscribed", "esp")
    assert not Suppression.objects.exists()
    assert delivery.status == "sent" and delivery.bounced_at is not None and delivery.complained_at is None
    assert WebhookEvent.objects.get().outcome == f"delivery {delivery.pk} updated; subscriber unsubscribed"


@pytest.mark.parametrize(("reason", "status"), [("suppress-complaint", "complained"), ("suppress-bounce", "bounced")])
def test_a_mailgun_drop_for_its_complaint_or_bounce_list_suppresses_the_reader_for_that_reason(
    delivery, reason, status
):
    assert post_mailgun_drop(delivery.subscriber.email, reason).status_code == 200
    delivery.refresh_from_db()
    assert status_of(delivery) == status
    assert Suppression.objects.get().reason == status
    assert delivery.status == "sent" and delivery.bounced_at is not None and delivery.complained_at is None
    assert WebhookEvent.objects.get().outcome == f"delivery {delivery.pk} updated; subscriber suppressed ({status})"


@pytest.mark.parametrize(("reason", "entry"), [("suppress-unsubscribe", "deleted"),
                                               ("suppress-complaint", "complained")])
def test_a_mailgun_list_drop_for_a_deleted_readers_address_is_no_bounce(delivery, reason, entry):
    email = delivery.subscriber.email
    services.delete_subscriber(delivery.subscriber)
    assert post_mailgun_drop(email, reason).status_code == 200
    assert Suppression.objects.get(email_hash=email_hash(email)).reason == entry


def postmark_subscription_change(delivery, reason, suppress_sending=True):
    """Postmark's Subscription change event: the address added to (or removed from) the stream's suppressions."""
    return {
        "RecordType": "SubscriptionChange", "MessageID": MESSAGE_ID if suppress_sending else None, "ServerID": 1,
        "MessageStream": "daily-digests", "ChangedAt": "2026-11-20T07:15:00Z", "Recipient": delivery.subscriber.email,
        "Origin": "Recipient", "SuppressSending": suppress_sending, "SuppressionReason": reason, "Tag": None,
        "Metadata": {"delivery_id": str(delivery.pk)} if suppress_sending else {},
    }


@pytest.mark.parametrize(("reason", "status"), [("ManualSuppression", "unsubscribed"), ("HardBounce", "bounced"),
                                                ("SpamComplaint", "complained")])
def test_a_postmark_subscription_change_stops_the_reader_for_its_reason(delivery, reason, status):
    assert post_postmark(postmark_subscription_change(delivery, reason)).status_code == 200
    assert status_of(delivery) == status


def test_a_postmark_reactivation_changes_nothing(delivery):
    services.suppress(delivery.subscriber, reason="bounced")
    assert post_postmark(postmark_subscription_change(delivery, None, suppress_sending=False)).status_code == 200
    assert status_of(delivery) == "bounced" and not WebhookEvent.objects.exists()
