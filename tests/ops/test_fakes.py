"""The imitations speak the real protocols: django-anymail's Mailgun backend and
webhook view accept them exactly as they would Mailgun's."""

from functools import partial

import pytest
import requests
from anymail.exceptions import AnymailRequestsAPIError
from anymail.message import AnymailMessage
from anymail.signals import tracking
from django.core.mail import get_connection

from tests.fakes import mailgun_webhooks as webhooks
from tests.fakes.mailgun import FakeMailgun
from tests.ops.stack import wait_until


@pytest.fixture
def esp(settings):
    with FakeMailgun() as fake:
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            "MAILGUN_API_KEY": fake.api_key,
            "MAILGUN_SENDER_DOMAIN": fake.domain,
            "MAILGUN_API_URL": fake.api_url,
            "REQUESTS_TIMEOUT": 1,
        }
        yield fake


def batch_message(recipients):
    message = AnymailMessage(
        subject="Your digest", body="Hello %recipient.name%", from_email="Paperboy <digest@mg.example.org>",
        to=recipients,
    )
    message.merge_data = {r: {"name": r.split("@")[0]} for r in recipients}
    message.merge_headers = {r: {"List-Unsubscribe": f"<https://site/u/{r.split('@')[0]}/>"} for r in recipients}
    message.connection = get_connection("anymail.backends.mailgun.EmailBackend")
    return message


def test_a_batch_send_is_recorded_with_each_recipients_variables_and_headers(esp):
    message = batch_message(["ada@example.org", "alan@example.org"])

    message.send()

    (request,) = esp.requests
    assert request.recipients == ["ada@example.org", "alan@example.org"]
    assert request.text_for("alan@example.org") == "Hello alan"
    assert request.headers_for("ada@example.org")["List-Unsubscribe"] == "<https://site/u/ada/>"
    assert message.anymail_status.message_id == request.message_id


def test_the_esp_can_fail_throttle_and_hang_then_recover(esp):
    esp.fail(500, times=1)
    esp.throttle(retry_after=7, times=1)
    esp.hang(3, times=1)

    errors = []
    for _ in range(3):
        with pytest.raises(AnymailRequestsAPIError) as caught:
            batch_message(["ada@example.org"]).send()
        errors.append(caught.value)
    batch_message(["ada@example.org"]).send()

    assert [e.status_code for e in errors[:2]] == [500, 429]
    assert errors[1].response.headers["Retry-After"] == "7"
    assert isinstance(errors[2].__cause__, requests.Timeout)
    assert [r.answer.status for r in esp.requests] == [500, 429, 200, 200]
    accepted_late = wait_until(lambda: esp.requests[2].accepted, 5)  # as a slow ESP would
    assert accepted_late and [r.accepted for r in esp.requests] == [False, False, True, True]


def test_the_esp_refuses_a_wrong_key_and_oversized_batches(esp, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_KEY": "wrong"}
    with pytest.raises(AnymailRequestsAPIError) as wrong_key:
        batch_message(["ada@example.org"]).send()
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_KEY": esp.api_key}
    with pytest.raises(AnymailRequestsAPIError) as too_many:
        batch_message([f"r{i}@example.org" for i in range(1001)]).send()

    assert wrong_key.value.status_code == 401
    assert too_many.value.status_code == 400


@pytest.mark.django_db  # the project's own tracking receivers run too
@pytest.mark.parametrize(
    "build, event_type",
    [
        (webhooks.permanent_bounce, "bounced"),
        (webhooks.temporary_failure, "deferred"),
        (webhooks.complaint, "complained"),
        (webhooks.unsubscribe, "unsubscribed"),
        (webhooks.delivered, "delivered"),
        *((partial(webhooks.dropped_for_suppression_list, reason=reason), "bounced")
          for reason in webhooks.SUPPRESSION_LISTS),
    ],
)
def test_webhook_payloads_are_accepted_and_understood_by_anymail(client, settings, build, event_type):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": "signing-key", "WEBHOOK_SECRET": "u:p"}
    received = []

    def collect(sender, event, esp_name, **kwargs):
        received.append(event)

    tracking.connect(collect, weak=False)
    try:
        response = client.post(
            "/anymail/mailgun/tracking/",
            data=build("signing-key", "ada@example.org", "<20261120.1@mg.example.org>"),
            content_type="application/json",
            HTTP_AUTHORIZATION="Basic dTpw",  # u:p
        )
    finally:
        tracking.disconnect(collect)

    assert response.status_code == 200
    (event,) = received
    assert event.event_type == event_type
    assert event.recipient == "ada@example.org"
    assert event.message_id == "<20261120.1@mg.example.org>"


def test_a_multipart_batch_is_read_field_for_field_and_a_broken_one_refused(esp):
    from urllib3 import encode_multipart_formdata

    from tests.fakes.mailgun import parse_form

    fields = [("to", "a@example.org"), ("to", "b@example.org"), ("h:X-Über", "ü\r\n--not-a-boundary"),
              ("recipient-variables", '{"a@example.org": {"html": "<p class=\\"x\\">é</p>"}}')]
    body, content_type = encode_multipart_formdata(fields)

    parsed = parse_form(content_type, body)

    assert parsed["to"] == ["a@example.org", "b@example.org"]
    assert parsed["h:X-Über"] == ["ü\r\n--not-a-boundary"]
    assert parsed["recipient-variables"] == [fields[-1][1]]
    broken = requests.post(f"{esp.api_url}/{esp.domain}/messages", data=body[: len(body) // 2],
                           headers={"Content-Type": content_type}, auth=("api", esp.api_key), timeout=5)
    assert broken.status_code == 400
    assert not esp.accepted_requests
