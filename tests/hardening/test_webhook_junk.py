"""Junk posted to any ESP webhook URL (/anymail/<esp>/tracking/, /anymail/<esp>/inbound/, ...) is a 4xx.

Scanners post whatever they like to these public URLs. anymail's views expect
the ESP's own format and, given anything else, raise from their parsers; the
site refuses such a request with a 400 and a warning line, never a 500 with a
traceback. Errors of the site's own (a database failure while storing a
genuine event) are still a 500, which an ESP retries.
"""

import base64
import json
import logging

import anymail.urls
import pytest
from django.db import DatabaseError
from django.test import Client
from django.urls import reverse

from digest.models import WebhookEvent

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailWarning"),  # insecure or deprecated ESPs
]

WEBHOOK_SECRET = "esp:webhook-password"
WEBHOOK_PATHS = [
    "/anymail" + reverse(pattern.name, urlconf="anymail.urls") for pattern in anymail.urls.urlpatterns
] + ["/anymail/mailgun/inbound_mime/"]
TRACKING_PATHS = [path for path in WEBHOOK_PATHS if path.endswith("/tracking/")]
JUNK = [
    ("", "application/json"),
    ("not json", "application/json"),
    ("{", "application/json"),
    ("[]", "application/json"),
    ('"a string"', "application/json"),
    ("null", "application/json"),
    ("42", "application/json"),
    ('{"unexpected": "shape"}', "application/json"),
    ('[{"event": 1}, "x"]', "application/json"),
    ('{"signature": "x", "event-data": []}', "application/json"),
    ('{"Type": "Notification", "MessageId": "m", "Message": "{"}', "application/json"),
    (b"\xff\xfe{}", "application/json"),
    ("event=delivered&token=t", "application/x-www-form-urlencoded"),
    ("some text", "text/plain"),
    ("--boundary\r\nnot a part\r\n", "multipart/form-data; boundary=boundary"),
    ("<xml/>", "application/xml"),
]


def basic_auth(secret):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


CALLERS = {
    "no WEBHOOK_SECRET configured": ("", {}),
    "no credentials": (WEBHOOK_SECRET, {}),
    "wrong credentials": (WEBHOOK_SECRET, basic_auth("esp:guess")),
    "the right credentials": (WEBHOOK_SECRET, basic_auth(WEBHOOK_SECRET)),
}


def post_junk(path, body, content_type, headers):
    return Client(raise_request_exception=False).generic("POST", path, body, content_type=content_type, **headers)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_junk_posted_to_any_esp_webhook_is_never_a_server_error(settings, path, caller):
    secret, headers = CALLERS[caller]
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": secret}

    answers = {(body, content_type): post_junk(path, body, content_type, headers).status_code for body, content_type in JUNK}

    assert {junk: status for junk, status in answers.items() if status >= 500} == {}
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("path", TRACKING_PATHS)
def test_a_malformed_body_to_a_tracking_webhook_is_a_bad_request(settings, path):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ""}
    assert post_junk(path, "not json", "application/json", {}).status_code == 400


def test_an_unknown_sns_message_type_is_a_bad_request(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ""}
    response = post_junk("/anymail/amazon_ses/tracking/", '{"a": 1}', "application/json", {})
    assert response.status_code == 400


def test_anymail_still_asks_sns_for_credentials(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    response = post_junk("/anymail/amazon_ses/tracking/", '{"a": 1}', "application/json", {})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


def test_a_refused_request_is_one_warning_line_without_the_body(settings, caplog):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ""}
    body = '{"Type": "secret-looking-payload@example.org"}'

    with caplog.at_level(logging.INFO):
        response = post_junk("/anymail/amazon_ses/tracking/", body, "text/plain", {})

    assert response.status_code == 400
    records = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.levelno for record in records] == [logging.WARNING]
    assert "/anymail/amazon_ses/tracking/" in records[0].getMessage()
    assert "secret-looking-payload" not in caplog.text


def failing_store(event, esp_name):
    raise DatabaseError("the database is unavailable")


def test_a_database_failure_while_storing_a_genuine_event_is_still_a_server_error(settings, monkeypatch):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    monkeypatch.setattr("digest.webhooks.store_event", failing_store)
    event = {"RecordType": "Bounce", "Type": "HardBounce", "MessageID": "0a1b2c3d-0000-4000-8000-000000000002",
             "Email": "reader@example.org", "BouncedAt": "2026-11-20T07:15:00Z", "ID": 1}

    response = post_junk("/anymail/postmark/tracking/", json.dumps(event), "application/json", basic_auth(WEBHOOK_SECRET))

    assert response.status_code == 500
