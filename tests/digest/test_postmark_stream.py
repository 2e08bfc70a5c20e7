"""Digests go out through Postmark's broadcast stream; one-to-one email stays in the default one.

anymail's own Postmark backend builds each call; only the HTTP request is answered here, as
Postmark answers it, and what would have been posted is kept.
"""

import json
from unittest import mock

import pytest
import requests

from digest.checks import postmark_digest_stream_set
from digest.sending import send_edition_to
from subscriptions.services import send_confirmation
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

API_URL = "https://postmark.invalid/"


@pytest.fixture
def postmark(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": "server-token", "POSTMARK_API_URL": API_URL}
    settings.POSTMARK_DIGEST_STREAM = "daily-digests"
    posted = []

    def answer(session, method, url, data=None, **kwargs):
        body = json.loads(data)
        posted.append((url.removeprefix(API_URL), body))
        messages = body["Messages"] if isinstance(body, dict) and "Messages" in body else body
        answers = [
            {"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{n}", "To": message["To"]}
            for n, message in enumerate(messages if isinstance(messages, list) else [messages])
        ]
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(answers if isinstance(messages, list) else answers[0]).encode()
        return response

    with mock.patch.object(requests.Session, "request", autospec=True, side_effect=answer):
        yield posted


def test_batched_digests_go_through_the_digest_stream(postmark, settings):
    settings.DIGEST_ESP_TEMPLATE_ID = "paperboy-digest"
    readers = [SubscriberFactory(interests=i) for i in ("diffusion models", "language models", "")]

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 3
    [(endpoint, body)] = postmark
    assert endpoint == "email/batchWithTemplates"
    assert [m["MessageStream"] for m in body["Messages"]] == ["daily-digests"] * 3


def test_digests_sent_one_by_one_go_through_the_digest_stream_too(postmark, settings):
    settings.DIGEST_ESP_TEMPLATE_ID = ""
    readers = [SubscriberFactory(interests=i) for i in ("diffusion models", "language models")]

    assert send_edition_to(built_edition(), [r.pk for r in readers]).sent == 2

    assert [endpoint for endpoint, _ in postmark] == ["email", "email"]
    assert [body["MessageStream"] for _, body in postmark] == ["daily-digests"] * 2


def test_a_confirmation_email_stays_in_the_default_stream(postmark):
    send_confirmation(SubscriberFactory(status="pending"))

    [(endpoint, body)] = postmark
    assert endpoint == "email" and "MessageStream" not in body


def test_postmark_without_a_digest_stream_is_warned_about(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.POSTMARK_DIGEST_STREAM = ""
    assert [w.id for w in postmark_digest_stream_set(None)] == ["digest.W003"]
    settings.POSTMARK_DIGEST_STREAM = "daily-digests"
    assert postmark_digest_stream_set(None) == []
