"""The ESP tracking webhook (/anymail/mailgun/tracking/) refuses wrong credentials.

Mailgun's events must carry both the WEBHOOK_SECRET basic-auth credentials and
an HMAC signature made with MAILGUN_WEBHOOK_SIGNING_KEY. Anything less is a
400 and stores no event; a replayed genuine event is stored once.
"""

import base64
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.test import Client
from anymail.signals import AnymailTrackingEvent
from django.utils import timezone
from hypothesis import assume, example, given
from hypothesis import strategies as st

from digest.webhooks import record_tracking_event

from digest.models import WebhookEvent
from subscriptions.models import Subscriber
from tests.factories import SubscriberFactory
from tests.fakes import mailgun_webhooks as webhooks

from .strategies import HARDENING, hostile_text, json_values

pytestmark = pytest.mark.django_db

TRACKING = "/anymail/mailgun/tracking/"
SIGNING_KEY = "key-webhook-signing-test"
USER, PASSWORD = "mailgun", "webhook-password"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": f"{USER}:{PASSWORD}",
        "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }
    return settings


@pytest.fixture
def reader():
    return SubscriberFactory(email="reader@example.org")


def basic(user, password):
    raw = f"{user}:{password}".encode("utf-8", "surrogatepass")
    return "Basic " + base64.b64encode(raw).decode()


def post(body, authorization=basic(USER, PASSWORD), content_type="application/json"):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body)
    return Client().generic("POST", TRACKING, data, content_type=content_type, **headers)


def test_a_genuine_complaint_is_stored_once_and_suppresses_the_reader(reader):
    event = webhooks.complaint(SIGNING_KEY, reader.email, "20261120.1@mg.example.org")

    first, replayed = post(event), post(event)

    assert first.status_code == replayed.status_code == 200
    assert WebhookEvent.objects.count() == 1
    reader.refresh_from_db()
    assert reader.status == "complained"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(USER, "guess"),
        basic("someone", PASSWORD),
        basic(USER, PASSWORD + " "),
        basic(USER, ""),
        "Basic not-base64!",
        "Bearer " + PASSWORD,
        basic(USER, PASSWORD).lower(),
        "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
    ],
    ids=["none", "wrong-password", "wrong-user", "trailing-space", "empty-password",
         "not-base64", "bearer", "lower-cased", "binary"],
)
def test_wrong_basic_auth_is_a_400_and_stores_nothing(reader, authorization):
    event = webhooks.complaint(SIGNING_KEY, reader.email, "20261120.1@mg.example.org")

    response = post(event, authorization=authorization)

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()
    reader.refresh_from_db()
    assert reader.status == "active"


def test_right_credentials_with_a_forged_signature_are_a_400_and_store_nothing(reader):
    forged = webhooks.complaint("not-the-signing-key", reader.email, "20261120.1@mg.example.org")
    unsigned = {"event-data": forged["event-data"]}
    stale = webhooks.complaint(SIGNING_KEY, reader.email, "20261120.1@mg.example.org")
    stale["signature"]["token"] = "another-token"  # the signature no longer matches

    answers = [post(body).status_code for body in (forged, unsigned, stale)]

    assert answers == [400, 400, 400]
    assert not WebhookEvent.objects.exists()
    reader.refresh_from_db()
    assert reader.status == "active"


def test_without_a_configured_secret_every_event_is_refused(reader, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ""}
    event = webhooks.complaint(SIGNING_KEY, reader.email, "20261120.1@mg.example.org")

    response = post(event, authorization=None)

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_body_over_the_size_limit_is_a_400(reader, settings):
    event = webhooks.complaint(SIGNING_KEY, reader.email, "20261120.1@mg.example.org")
    event["event-data"]["padding"] = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)

    assert post(event).status_code in (400, 413)
    assert not WebhookEvent.objects.exists()


@HARDENING
@given(
    user=hostile_text,
    password=hostile_text,
    body=st.one_of(json_values, st.binary(max_size=300)),
)
def test_any_wrong_credentials_with_any_body_are_refused_without_a_row(user, password, body):
    if (user, password) == (USER, PASSWORD):
        return
    payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8", "surrogatepass")

    response = post(payload, authorization=basic(user, password))

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


# Any time in any zone: at either end of Python's years, an offset can take it out of them in UTC.
offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
event_times = st.one_of(
    st.none(), st.datetimes(timezones=st.one_of(st.timezones(), st.builds(dt_timezone, offsets)))
)
event_types = st.one_of(
    st.sampled_from(["delivered", "opened", "clicked", "bounced", "complained", "unsubscribed",
                     "deferred", "rejected", "unknown"]),
    hostile_text,
)


@HARDENING
@given(
    event_type=event_types,
    event_id=st.one_of(st.none(), hostile_text),
    recipient=st.one_of(st.none(), st.just("reader@example.org"), hostile_text),
    message_id=st.one_of(st.none(), hostile_text),
    metadata=st.dictionaries(hostile_text, json_values, max_size=3),
    description=st.one_of(st.none(), hostile_text),
    at=event_times,
)
@example(event_type="complained", event_id="x" * 500, recipient="reader@example.org",
         message_id="<" + "m" * 400 + ">", metadata={"delivery_id": "1" * 30}, description=None, at=None)
@example(event_type="opened", event_id=None, recipient="READER@example.org", message_id=None,
         metadata={"delivery_id": [1]}, description="d" * 1000, at=None)
@example(event_type="delivered", event_id="late", recipient="reader@example.org", message_id=None, metadata={},
         description=None, at=datetime(9999, 12, 31, 23, 59, tzinfo=dt_timezone(-timedelta(hours=1))))
def test_the_receiver_stores_or_ignores_any_authenticated_event_without_an_error(
    reader, event_type, event_id, recipient, message_id, metadata, description, at
):
    """Our receiver, called the way anymail calls it, with whatever the ESP's event holds.

    The text fields are the kind an ESP sends: printable (no NUL, which PostgreSQL
    cannot store; anymail has already parsed the JSON)."""
    printable = [t for t in (event_type, event_id, recipient, message_id, description) if t]
    printable += [str(k) + str(v) for k, v in metadata.items()]
    assume(not any("\x00" in t or any(0xD800 <= ord(c) <= 0xDFFF for c in t) for t in printable))
    event = AnymailTrackingEvent(
        event_type=event_type, timestamp=at, event_id=event_id, recipient=recipient,
        message_id=message_id, metadata=metadata, description=description, tags=[], esp_event={},
    )
    before = WebhookEvent.objects.count()

    record_tracking_event(sender=None, event=event, esp_name="mailgun")

    assert WebhookEvent.objects.count() - before in (0, 1)
    assert all(stored.received_at for stored in WebhookEvent.objects.all())  # every row reads back


@pytest.mark.parametrize("field", ["recipient", "description", "metadata"])
def test_an_authenticated_event_with_a_nul_byte_is_stored_without_it(reader, field):
    fields = {"recipient": "reader@example.org", "description": "", "metadata": {}}
    fields[field] = {"note": "a\x00b"} if field == "metadata" else "a\x00b"
    event = AnymailTrackingEvent(
        event_type="delivered", timestamp=timezone.now(), event_id="nul-1",
        message_id="<m@mg.example.org>", tags=[], esp_event={}, **fields,
    )
    record_tracking_event(sender=None, event=event, esp_name="mailgun")

    stored = WebhookEvent.objects.get()
    assert "\x00" not in stored.recipient + json.dumps(stored.details)


@pytest.mark.parametrize(
    "body",
    [
        {"signature": {"timestamp": "\u00e9", "token": "x", "signature": "y"}},
        {"signature": []},
        [1],
    ],
    ids=["non-ascii-timestamp", "signature-not-an-object", "body-not-an-object"],
)
def test_a_malformed_signature_block_behind_the_right_password_stores_nothing(reader, body):
    """anymail's Mailgun view answers these with a 500 (UnicodeEncodeError, TypeError) rather
    than a 400; only a caller holding WEBHOOK_SECRET gets that far, and nothing is stored."""
    client = Client(raise_request_exception=False)
    response = client.generic(
        "POST", TRACKING, json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=basic(USER, PASSWORD),
    )
    assert response.status_code in (400, 500)
    assert not WebhookEvent.objects.exists()


def test_without_a_signing_key_an_event_signed_with_an_empty_key_is_refused(settings, reader):
    from django.conf import settings as live

    settings.ANYMAIL = {k: v for k, v in live.ANYMAIL.items() if not k.startswith("MAILGUN_") or k == "MAILGUN_API_URL"}
    settings.ANYMAIL["WEBHOOK_SECRET"] = f"{USER}:{PASSWORD}"
    forged = webhooks.complaint("", reader.email, "20261120.1@mg.example.org")

    assert post(forged).status_code == 400
    assert WebhookEvent.objects.count() == 0
    reader.refresh_from_db()
    assert reader.status == "active"


def test_empty_mailgun_keys_in_the_environment_are_left_out_of_the_settings():
    import subprocess
    import sys

    code = ("import django; django.setup(); from django.conf import settings; "
            "print(sorted(k for k in settings.ANYMAIL if 'KEY' in k))")
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "MAILGUN_WEBHOOK_SIGNING_KEY": "", "MAILGUN_API_KEY": "",
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"
