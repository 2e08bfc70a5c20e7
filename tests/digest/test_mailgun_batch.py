"""Mailgun batch calls built directly (``digest.esp.MailgunBatch``) carry exactly the fields
anymail's Mailgun backend would send for the same batch, and speak its errors."""

import json
import logging
from html import unescape

import pytest
import requests
import time_machine
from anymail.exceptions import AnymailRequestsAPIError
from django.core.mail import get_connection

from digest.emails import BatchPart, build_batch_email
from digest.esp import ON_THE_FLY, MailgunBatch, batch_style
from digest.rendering import DigestRenderer
from digest.sending import classify_send_error, send_edition_to
from tests.digest.builders import built_edition
from tests.factories import PaperFactory, SubscriberFactory
from tests.fakes.mailgun import Answer, FakeMailgun, parse_multipart

pytestmark = pytest.mark.django_db

HOSTILE = '<b>"Über" & back\\slash\ttab</b> 👍'
ADDRESSES = ["plain@example.org", "First.Last+digest@Example.ORG", "zoë@exämple.org", "o'neil@example.org"]


@pytest.fixture
def mailgun(settings):
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_KEY": "key", "MAILGUN_SENDER_DOMAIN": "mg.example.org",
                        "MAILGUN_API_URL": "http://127.0.0.1:9/v3"}
    return get_connection()


def parts_for(subscribers, *, for_json):
    PaperFactory(title=HOSTILE, abstract=HOSTILE)
    edition = built_edition()
    renderer = DigestRenderer(edition)
    entries = [e.paper for e in edition.entries.select_related("paper").order_by("rank")]
    from digest.ranking import RankedPaper

    ranked = [RankedPaper(p, 1.0, 0.5, f"matches your interests: {HOSTILE}") for p in entries]
    parts = []
    for subscriber in subscribers:
        digest = renderer.render(subscriber, ranked, for_json=for_json)
        parts.append(BatchPart(to=subscriber.email, subject=digest.subject, text=digest.text, html=digest.html,
                               context=digest.context, metadata={"delivery_id": str(subscriber.pk)}))
    return parts


def anymail_fields(backend, parts):
    message = build_batch_email(parts, ON_THE_FLY)
    payload = backend.build_message_payload(message, backend.send_defaults)
    params = payload.get_request_params(backend.api_url)
    fields = {name: values if isinstance(values, list) else [values] for name, values in params["data"].items()}
    return params["url"], fields


def without_message_ids(fields):
    """Fields (name: values) with the recipient variables parsed and each Message-Id set aside."""
    (variables,) = [json.loads(value) for value in fields["recipient-variables"]]
    message_ids = [v.pop("h:Message-Id") for v in variables.values()]
    return {**fields, "recipient-variables": variables}, message_ids


def test_a_direct_batch_carries_exactly_the_fields_anymail_would_send(mailgun):
    subscribers = [SubscriberFactory(email=address) for address in ADDRESSES]
    with time_machine.travel("2026-12-01 06:00:00Z", tick=False):  # tokens carry the time
        plain = parts_for(subscribers, for_json=False)
        encoded = parts_for(subscribers, for_json=True)

    url, reference = anymail_fields(mailgun, plain)
    batch = MailgunBatch(mailgun, encoded)
    body = batch.body("b0undary")
    ours = parse_multipart("multipart/form-data; boundary=b0undary", body)

    expected, expected_ids = without_message_ids(reference)
    actual, actual_ids = without_message_ids(ours)
    assert batch.url() == url
    assert actual == expected
    assert len(set(actual_ids)) == len(subscribers) and all(i.startswith("<") for i in actual_ids)
    assert actual["recipient-variables"]["plain@example.org"]["html"] == plain[0].html


def test_a_direct_batch_is_accepted_by_the_imitation_mailgun_with_one_message_id_for_all(mailgun, settings):
    subscribers = [SubscriberFactory(email=address) for address in ADDRESSES[:2]]
    with FakeMailgun(domain="mg.example.org", api_key="key") as fake:
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_URL": fake.api_url}
        answer = MailgunBatch(get_connection(), parts_for(subscribers, for_json=True)).send()
        (request,) = fake.accepted_requests

    assert len(set(answer.message_ids)) == 1 and len(answer.message_ids) == 2
    assert [r.lower() for r in request.recipients] == [s.email.lower() for s in subscribers]
    html = request.html_for(subscribers[0].email)
    assert html.startswith("<!DOCTYPE html>") and "<b>" not in html
    assert f"Why: matches your interests: {HOSTILE}" in unescape(html)


def test_a_built_batch_lets_its_parts_go_and_still_answers_for_every_recipient(mailgun, settings):
    subscribers = [SubscriberFactory(email=address) for address in ADDRESSES[:3]]
    with FakeMailgun(domain="mg.example.org", api_key="key") as fake:
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_URL": fake.api_url}
        batch = MailgunBatch(get_connection(), parts_for(subscribers, for_json=True))
        batch.prepare()
        assert batch.parts is None and batch.headers is None  # the bodies live in the payload only
        answer = batch.send()
        (request,) = fake.accepted_requests

    assert len(answer.message_ids) == 3 and len(set(answer.message_ids)) == 1
    assert all(subscriber.email in unescape(request.html_for(subscriber.email)) for subscriber in subscribers)


def test_more_calls_in_flight_than_requests_pools_by_default_reuse_every_connection(mailgun, settings, caplog):
    settings.DIGEST_ESP_BATCH_LIMIT = 1
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 12  # requests keeps 10 connections per host unless told otherwise
    readers = [SubscriberFactory() for _ in range(24)]
    with FakeMailgun(domain="mg.example.org", api_key="key") as fake:
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_URL": fake.api_url}
        fake.answer(Answer(delay=0.3))  # so that the twelve calls overlap
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 24 and len(fake.accepted_requests) == 24
    assert "Connection pool is full" not in caplog.text  # a dropped connection is a new TCP (and TLS) handshake


@pytest.mark.parametrize("status, kind", [
    (500, "transient"), (429, "transient"), (400, "permanent"), (413, "permanent"),
    (401, "transient"), (403, "transient"), (404, "transient"),  # our account or domain, not the message
])
def test_a_refused_direct_batch_raises_anymails_error_with_the_status(mailgun, settings, status, kind):
    subscribers = [SubscriberFactory(email=ADDRESSES[0])]
    with FakeMailgun(domain="mg.example.org", api_key="key") as fake:
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_URL": fake.api_url}
        fake.fail(status=status)
        with pytest.raises(AnymailRequestsAPIError) as caught:
            MailgunBatch(get_connection(), parts_for(subscribers, for_json=True)).send()

    assert caught.value.status_code == status
    assert classify_send_error(caught.value) == kind


def test_an_unreachable_mailgun_is_a_transient_error(mailgun):
    subscribers = [SubscriberFactory(email=ADDRESSES[0])]
    with pytest.raises(AnymailRequestsAPIError) as caught:
        MailgunBatch(get_connection(), parts_for(subscribers, for_json=True)).send()

    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert classify_send_error(caught.value) == "transient"


@pytest.mark.parametrize("backend, direct", [
    ("anymail.backends.mailgun.EmailBackend", True),
    ("anymail.backends.test.EmailBackend", False),
])
def test_only_mailgun_itself_gets_direct_batches(settings, backend, direct):
    settings.EMAIL_BACKEND = backend
    assert batch_style().direct is direct


def test_with_anymail_send_defaults_batches_go_through_anymails_message(settings):
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "SEND_DEFAULTS": {"tags": ["digest"]}}
    assert batch_style().direct is False
