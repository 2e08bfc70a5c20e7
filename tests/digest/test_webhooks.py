"""ESP tracking webhooks, as Mailgun posts them to /anymail/mailgun/tracking/."""

import base64
import hashlib
import hmac
import importlib
import io
import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from anymail.signals import AnymailTrackingEvent
from django.apps import apps as django_apps
from django.core.management import call_command

from digest.models import Delivery, WebhookEvent
from digest.sending import reconcile_stale_deliveries
from digest.webhooks import prune_webhook_events, record_tracking_event
from subscriptions.models import Subscriber, Suppression, email_hash
from tests.digest.builders import built_edition
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

SIGNING_KEY = "webhook-signing-key"
WEBHOOK_SECRET = "mailgun:webhook-password"
URL = "/anymail/mailgun/tracking/"
POSTMARK_URL = "/anymail/postmark/tracking/"
MESSAGE_ID = "<20261120071500.1@mg.example.org>"
T0 = 1_795_000_000  # seconds since the epoch


@pytest.fixture(autouse=True)
def mailgun_webhooks(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


@pytest.fixture
def delivery():
    subscriber = SubscriberFactory(interests="")
    return Delivery.objects.create(
        subscriber=subscriber, edition=built_edition(), status="sent", esp_message_id=MESSAGE_ID, paper_ids=[1]
    )


def mailgun_event(event, recipient, *, at=T0, token=None, key=SIGNING_KEY, metadata=None, message_id=MESSAGE_ID,
                  **fields):
    token = token or secrets.token_hex(16)
    signature = hmac.new(key.encode(), f"{T0}{token}".encode(), hashlib.sha256).hexdigest()
    data = {
        "event": event, "timestamp": at, "recipient": recipient, "id": secrets.token_hex(8),
        "message": {"headers": {"message-id": message_id.strip("<>"), "to": recipient}},
        "user-variables": metadata or {}, **fields,
    }
    return {"signature": {"timestamp": str(T0), "token": token, "signature": signature}, "event-data": data}


def post(client, body, secret=WEBHOOK_SECRET, url=URL):
    headers = {}
    if secret:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(secret.encode()).decode()
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def post_and_apply(client, django_capture_on_commit_callbacks, body, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        return post(client, body, **kwargs)


def moment(seconds):
    return datetime.fromtimestamp(seconds, tz=UTC)


def test_delivered_opened_and_clicked_stamp_the_delivery(client, django_capture_on_commit_callbacks, delivery):
    email = delivery.subscriber.email
    for event, at in (("delivered", T0), ("opened", T0 + 60), ("clicked", T0 + 120)):
        assert post_and_apply(client, django_capture_on_commit_callbacks,
                              mailgun_event(event, email, at=at, url="https://arxiv.org/abs/1")).status_code == 200
    delivery.refresh_from_db()
    assert (delivery.delivered_at, delivery.opened_at, delivery.clicked_at) == (moment(T0), moment(T0 + 60), moment(T0 + 120))
    assert delivery.subscriber.status == "active"
    assert WebhookEvent.objects.filter(applied_at__isnull=False).count() == 3


def test_events_out_of_order_keep_the_earliest_times(client, django_capture_on_commit_callbacks, delivery):
    email = delivery.subscriber.email
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("clicked", email, at=T0 + 300, url="https://x.org"))
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("opened", email, at=T0 + 100))
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("delivered", email, at=T0))
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("delivered", email, at=T0 + 900))
    delivery.refresh_from_db()
    assert delivery.delivered_at == moment(T0)
    assert delivery.opened_at == moment(T0 + 100)
    assert delivery.clicked_at == moment(T0 + 300)


def test_a_click_keeps_the_url_clicked_and_other_events_store_none(client, django_capture_on_commit_callbacks,
                                                                  delivery):
    email = delivery.subscriber.email
    post_and_apply(client, django_capture_on_commit_callbacks,
                   mailgun_event("clicked", email, url="https://arxiv.org/abs/2511.00001"))
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("opened", email, at=T0 + 5))

    details = dict(WebhookEvent.objects.values_list("event_type", "details"))
    assert details["clicked"]["click_url"] == "https://arxiv.org/abs/2511.00001"
    assert "click_url" not in details["opened"]


def test_a_click_records_the_paper_of_the_digest_whose_link_was_clicked(client, django_capture_on_commit_callbacks):
    first, second, elsewhere = PaperFactory.create_batch(3, code_url="https://github.com/lab/shared")
    second.hf_url = f"https://huggingface.co/papers/{second.arxiv_id}"
    second.save()
    subscriber = SubscriberFactory(interests="")
    Delivery.objects.create(subscriber=subscriber, edition=built_edition(), status="sent",
                            esp_message_id=MESSAGE_ID, paper_ids=[second.pk, first.pk])
    clicks = {
        "pdf": f"{first.pdf_url}/",  # a trailing slash aside
        "hf": second.hf_url,
        "shared": "https://github.com/lab/shared",  # both papers' code: the first in the digest
        "elsewhere": elsewhere.arxiv_url,  # not a paper of this digest
        "unsubscribe": "https://paperboy.example/unsubscribe/abc/",
    }
    for n, url in enumerate(clicks.values()):
        post_and_apply(client, django_capture_on_commit_callbacks,
                       mailgun_event("clicked", subscriber.email, at=T0 + n, url=url))
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("opened", subscriber.email))

    papers = dict(WebhookEvent.objects.filter(event_type="clicked").values_list("details__click_url", "clicked_paper"))
    assert [papers[url] for url in clicks.values()] == [first.pk, second.pk, second.pk, None, None]
    assert WebhookEvent.objects.get(event_type="opened").clicked_paper is None
    assert WebhookEvent.objects.filter(applied_at__isnull=True).count() == 0


def test_a_click_on_a_delivery_not_found_records_no_paper(client, django_capture_on_commit_callbacks):
    paper = PaperFactory()
    subscriber = SubscriberFactory(interests="")

    unknown = mailgun_event("clicked", subscriber.email, message_id="<unknown@mg.example.org>", url=paper.arxiv_url)
    post_and_apply(client, django_capture_on_commit_callbacks, unknown)

    event = WebhookEvent.objects.get()
    assert event.applied_at is not None and (event.delivery, event.clicked_paper) == (None, None)


def test_a_repeated_event_is_stored_and_applied_once(client, django_capture_on_commit_callbacks, delivery):
    body = mailgun_event("opened", delivery.subscriber.email, at=T0 + 50)
    post_and_apply(client, django_capture_on_commit_callbacks, body)
    Delivery.objects.filter(pk=delivery.pk).update(opened_at=None)  # so a second application would show
    assert post_and_apply(client, django_capture_on_commit_callbacks, body).status_code == 200
    delivery.refresh_from_db()
    assert delivery.opened_at is None
    assert WebhookEvent.objects.count() == 1


def test_the_receiver_only_records_engagement_events_and_celery_applies_them(
    client, django_capture_on_commit_callbacks, delivery
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        post(client, mailgun_event("delivered", delivery.subscriber.email))
    stored = WebhookEvent.objects.get()
    assert stored.applied_at is None and len(callbacks) == 1

    callbacks[0]()  # what the broker would run

    stored.refresh_from_db()
    delivery.refresh_from_db()
    assert stored.applied_at is not None and stored.delivery == delivery and delivery.delivered_at == moment(T0)


def test_a_hard_bounce_suppresses_the_subscriber_at_once(client, delivery):
    email = delivery.subscriber.email
    assert post(client, mailgun_event("failed", email, severity="permanent", reason="bounce")).status_code == 200
    delivery.refresh_from_db()
    assert delivery.subscriber.status == "bounced" and delivery.bounced_at == moment(T0)
    assert Suppression.objects.filter(email_hash=email_hash(email), reason="bounced").exists()


def test_a_bounce_for_a_deleted_readers_address_puts_it_on_the_suppression_list(client, delivery):
    from subscriptions import services

    email = delivery.subscriber.email
    services.delete_subscriber(delivery.subscriber)  # their "deleted" suppression does not block
    assert post(client, mailgun_event("failed", email, severity="permanent", reason="bounce")).status_code == 200

    assert Suppression.objects.get(email_hash=email_hash(email)).reason == "bounced"
    assert WebhookEvent.objects.get().outcome == "address suppressed (bounced), no subscriber"
    assert services.request_subscription(email, {}) is services.SignupResult.BLOCKED


def test_a_bounce_for_the_address_a_reader_left_suppresses_that_address_not_the_reader(client, delivery):
    """A digest sent to the old address just before a move, bounced after it: the reader,
    now at their new address, keeps receiving (even with the delivery id in the metadata)."""
    from subscriptions import services

    reader, old = delivery.subscriber, delivery.subscriber.email
    services.request_address_change(reader, "moved@example.org")
    reader.refresh_from_db()
    assert services.confirm_new_address(reader, services.new_address_key("moved@example.org")).name == "MOVED"

    bounce = mailgun_event("failed", old, severity="permanent", reason="bounce", metadata={"delivery_id": delivery.pk})
    assert post(client, bounce).status_code == 200

    reader.refresh_from_db()
    assert (reader.email, reader.status) == ("moved@example.org", "active")
    assert Suppression.objects.get(email_hash=email_hash(old)).reason == "bounced"
    assert not services.is_blocked("moved@example.org")


def test_a_soft_bounce_changes_nothing(client, delivery):
    post(client, mailgun_event("failed", delivery.subscriber.email, severity="temporary", reason="generic"))
    delivery.refresh_from_db()
    assert delivery.subscriber.status == "active" and delivery.bounced_at is None
    assert not WebhookEvent.objects.exists()


def test_a_complaint_suppresses_the_subscriber(client, delivery):
    post(client, mailgun_event("complained", delivery.subscriber.email))
    delivery.refresh_from_db()
    assert delivery.subscriber.status == "complained" and delivery.complained_at == moment(T0)


def test_an_unsubscribe_event_unsubscribes(client, delivery):
    post(client, mailgun_event("unsubscribed", delivery.subscriber.email))
    subscriber = Subscriber.objects.get(pk=delivery.subscriber_id)
    assert subscriber.status == "unsubscribed" and subscriber.unsubscribed_via == "esp"


def test_an_unsubscribe_after_a_complaint_keeps_the_stronger_suppression(client, delivery):
    post(client, mailgun_event("complained", delivery.subscriber.email))
    post(client, mailgun_event("unsubscribed", delivery.subscriber.email))
    assert Subscriber.objects.get(pk=delivery.subscriber_id).status == "complained"


def test_a_hard_bounce_after_a_complaint_keeps_the_reader_complained(client, delivery):
    email = delivery.subscriber.email
    post(client, mailgun_event("complained", email))
    post(client, mailgun_event("failed", email, at=T0 + 60, severity="permanent", reason="bounce"))
    delivery.refresh_from_db()
    assert Subscriber.objects.get(pk=delivery.subscriber_id).status == "complained"
    assert Suppression.objects.get(email_hash=email_hash(email)).reason == "complained"
    assert delivery.complained_at == moment(T0) and delivery.bounced_at == moment(T0 + 60)


def test_an_event_finds_its_delivery_by_metadata_when_the_batch_shares_a_message_id(
    client, django_capture_on_commit_callbacks, delivery
):
    other = Delivery.objects.create(subscriber=SubscriberFactory(), edition=delivery.edition, status="sent",
                                    esp_message_id=MESSAGE_ID)
    post_and_apply(client, django_capture_on_commit_callbacks,
                   mailgun_event("delivered", other.subscriber.email, metadata={"delivery_id": str(other.pk)}))
    other.refresh_from_db()
    delivery.refresh_from_db()
    assert other.delivered_at == moment(T0) and delivery.delivered_at is None


@pytest.mark.parametrize("delivery_id", ["\u00b2", "\u0663"])  # "²", an Arabic-Indic 3: no ids of ours
def test_a_delivery_id_in_the_metadata_that_is_no_id_of_ours_falls_back_to_the_message_id(
    client, django_capture_on_commit_callbacks, delivery, delivery_id
):
    assert post_and_apply(client, django_capture_on_commit_callbacks,
                          mailgun_event("delivered", delivery.subscriber.email,
                                        metadata={"delivery_id": delivery_id})).status_code == 200
    delivery.refresh_from_db()
    assert delivery.delivered_at == moment(T0)


def test_proof_of_delivery_settles_a_delivery_whose_send_outcome_was_unknown(
    client, django_capture_on_commit_callbacks, delivery
):
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", reason="outcome unknown: timeout")
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("delivered", delivery.subscriber.email))
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_a_delivered_event_after_the_stale_sweep_failed_the_delivery_settles_it_as_sent(
    client, django_capture_on_commit_callbacks, delivery
):
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", sending_at=moment(T0 - 7200))
    reconcile_stale_deliveries()
    assert Delivery.objects.get(pk=delivery.pk).status == "failed"
    post_and_apply(client, django_capture_on_commit_callbacks,
                   mailgun_event("delivered", delivery.subscriber.email, at=T0 + 3600))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.sent_at) == ("sent", moment(T0 + 3600))


def test_a_delivered_event_leaves_a_delivery_failed_for_another_reason_failed(
    client, django_capture_on_commit_callbacks, delivery
):
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", reason="400 Bad Request")
    post_and_apply(client, django_capture_on_commit_callbacks, mailgun_event("delivered", delivery.subscriber.email))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.reason) == ("failed", "400 Bad Request")


@pytest.mark.parametrize(
    "body_key, secret",
    [
        ("not-the-signing-key", WEBHOOK_SECRET),  # forged signature
        (SIGNING_KEY, None),  # no basic auth
        (SIGNING_KEY, "mailgun:guess"),  # wrong password
    ],
)
def test_an_unauthenticated_event_is_refused_and_changes_nothing(client, delivery, body_key, secret):
    response = post(client, mailgun_event("complained", delivery.subscriber.email, key=body_key), secret=secret)
    assert 400 <= response.status_code < 500
    assert Subscriber.objects.get(pk=delivery.subscriber_id).status == "active"
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    "signature",
    ["not-an-object", None, ["a", "b"], {"timestamp": "x"}, {"timestamp": "ünïcode", "token": "t", "signature": "s"}],
)
def test_a_malformed_signature_block_is_refused_not_a_server_error(client, delivery, signature):
    body = {**mailgun_event("complained", delivery.subscriber.email), "signature": signature}

    response = post(client, body)

    assert response.status_code == 400
    assert Subscriber.objects.get(pk=delivery.subscriber_id).status == "active"
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("at", [1e20, float("inf")])
def test_a_signed_event_whose_time_python_cannot_hold_is_refused_not_a_server_error(client, delivery, at):
    response = post(client, mailgun_event("complained", delivery.subscriber.email, at=at))

    assert response.status_code == 400
    assert Subscriber.objects.get(pk=delivery.subscriber_id).status == "active"
    assert not WebhookEvent.objects.exists()


def postmark_delivery(delivery, delivered_at):
    return {
        "RecordType": "Delivery", "ServerID": 23, "MessageStream": "daily-digests", "MessageID": MESSAGE_ID,
        "Recipient": delivery.subscriber.email, "Tag": "", "DeliveredAt": delivered_at,
        "Details": "smtp;250 2.0.0 OK", "Metadata": {"delivery_id": str(delivery.pk)},
    }


@pytest.mark.parametrize("delivered_at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+01:00"])
def test_an_event_time_past_year_9999_or_before_year_1_in_utc_is_dropped_and_the_event_kept(
    client, django_capture_on_commit_callbacks, delivery, delivered_at
):
    """Such a time is valid in Python with its offset; stored as it is, no query could read the row back."""
    response = post_and_apply(client, django_capture_on_commit_callbacks, postmark_delivery(delivery, delivered_at),
                              url=POSTMARK_URL)

    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.occurred_at is None and stored.applied_at is not None and stored.delivery == delivery
    delivery.refresh_from_db()
    assert delivery.delivered_at == stored.received_at


def test_an_event_time_with_an_offset_postgresql_refuses_is_stored_in_utc(client, delivery):
    """Valid in Python (up to ±23:59); PostgreSQL takes offsets to ±15:59 and refused the insert."""
    response = post(client, postmark_delivery(delivery, "2026-11-20T07:15:00+20:00"), url=POSTMARK_URL)

    assert response.status_code == 200
    assert WebhookEvent.objects.get().occurred_at.isoformat() == "2026-11-19T11:15:00+00:00"


def test_events_are_refused_while_no_webhook_secret_is_configured(client, delivery, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ""}
    response = post(client, mailgun_event("complained", delivery.subscriber.email), secret=None)
    assert response.status_code == 400
    assert Subscriber.objects.get(pk=delivery.subscriber_id).status == "active"
    assert not WebhookEvent.objects.exists()


def test_text_a_database_cannot_store_is_cleaned_not_an_error(delivery):
    event = AnymailTrackingEvent(
        event_type="delivered", timestamp=moment(T0), event_id="nul\x00id", recipient="a\x00b@example.org",
        message_id="<m\x00@mg.example.org>", metadata={"note\x00": "a\x00b", "delivery_id": "\ud800"},
        description="bad \x00 byte", tags=[], esp_event={},
    )
    record_tracking_event(sender=None, event=event, esp_name="mailgun")
    stored = WebhookEvent.objects.get()
    assert stored.event_id == "mailgun:nulid" and stored.recipient == "ab@example.org"
    assert stored.details["metadata"] == {"note": "ab", "delivery_id": ""}


def test_click_events_applied_before_the_clicked_paper_was_kept_get_it_from_their_url():
    backfill = importlib.import_module("digest.migrations.0005_webhookevent_clicked_paper").record_clicked_papers
    first, second = PaperFactory.create_batch(2)
    subscriber = SubscriberFactory(interests="")
    delivery = Delivery.objects.create(subscriber=subscriber, edition=built_edition(), status="sent",
                                       paper_ids=[first.pk, second.pk])
    stored = {
        url: WebhookEvent.objects.create(
            event_id=f"old:{n}", esp="mailgun", event_type="clicked", delivery=delivery,
            details={"click_url": url} if url else {}, applied_at=moment(T0),
        )
        for n, url in enumerate([second.pdf_url + "/", "https://paperboy.example/unsubscribe/x/", ""])
    }

    backfill(django_apps, None)

    assert {url: event.clicked_paper_id for url, event in
            ((url, WebhookEvent.objects.get(pk=e.pk)) for url, e in stored.items())} == {
        second.pdf_url + "/": second.pk, "https://paperboy.example/unsubscribe/x/": None, "": None,
    }


def test_the_clicked_paper_backfill_reads_and_writes_a_batch_of_events_at_a_time(django_assert_max_num_queries):
    backfill = importlib.import_module("digest.migrations.0005_webhookevent_clicked_paper").record_clicked_papers
    papers = PaperFactory.create_batch(3)
    edition, subscribers = built_edition(), SubscriberFactory.create_batch(10, interests="")
    clicked = {}
    for n, subscriber in enumerate(subscribers):
        digest = papers[n % 3:] + papers[:n % 3]
        delivery = Delivery.objects.create(subscriber=subscriber, edition=edition, status="sent",
                                           paper_ids=[p.pk for p in digest])
        paper = digest[n % 2]
        event = WebhookEvent.objects.create(event_id=f"old:{n}", esp="mailgun", event_type="clicked",
                                            delivery=delivery, details={"click_url": paper.arxiv_url},
                                            applied_at=moment(T0))
        clicked[event.pk] = paper.pk

    with django_assert_max_num_queries(12):  # 10 events, 4 at a time: 3 batches of a read, a read, an update
        backfill(django_apps, None, batch_size=4)

    assert dict(WebhookEvent.objects.values_list("pk", "clicked_paper_id")) == clicked


def test_applied_events_past_the_retention_are_deleted_in_batches_and_the_rest_kept(settings, delivery):
    settings.WEBHOOK_EVENT_RETENTION_DAYS = 30
    now = moment(T0)

    def event(name, days_old, applied=True):
        return WebhookEvent.objects.create(
            event_id=name, esp="mailgun", event_type="opened", delivery=delivery,
            received_at=now - timedelta(days=days_old), applied_at=now if applied else None,
        )

    old = [event(f"old:{n}", 31 + n) for n in range(5)]
    kept = [event("recent", 29), event("old but not applied", 90, applied=False)]

    out = io.StringIO()
    with time_machine.travel(now, tick=False):
        assert prune_webhook_events(batch_size=2) == 5
        call_command("prune_webhook_events", stdout=out)

    assert set(WebhookEvent.objects.values_list("event_id", flat=True)) == {e.event_id for e in kept}
    assert not WebhookEvent.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert out.getvalue().startswith("webhook events deleted: 0 (older than 30 days)")
    delivery.refresh_from_db()  # the delivery keeps what the events told
    assert delivery.status == "sent"


def test_the_prune_command_names_a_retention_of_one_day_in_the_singular(settings):
    settings.WEBHOOK_EVENT_RETENTION_DAYS = 1
    out = io.StringIO()
    call_command("prune_webhook_events", stdout=out)
    assert out.getvalue() == "webhook events deleted: 0 (older than 1 day)\n"
