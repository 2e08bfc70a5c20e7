"""Digests batched through Postmark's ``/email/batchWithTemplates``: each message's own answer.

Postmark answers a batch 200 with one result per message, in the order sent, each with its own
``ErrorCode`` (0 when taken). anymail's own Postmark backend builds each call; only the HTTP
request is answered here, as Postmark answers it.
"""

import json
from unittest import mock

import pytest
import requests
from anymail.exceptions import AnymailRequestsAPIError

from digest.models import SendCall
from digest.sending import TransientSendError, classify_send_error, send_edition_to
from subscriptions.models import Subscriber
from tests import ledger
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

API_URL = "https://postmark.invalid/"
INACTIVE = ("You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: {}. "
            "Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual "
            "suppression. ")


@pytest.fixture
def postmark(settings):
    """Postmark answering each message with ``answers[n]`` (a callable of the message), else taken."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": "server-token", "POSTMARK_API_URL": API_URL}
    settings.POSTMARK_DIGEST_STREAM = "daily-digests"
    settings.DIGEST_ESP_TEMPLATE_ID = "paperboy-digest"
    answers = {}
    posted = []

    def answer(session, method, url, data=None, **kwargs):
        messages = json.loads(data)["Messages"]
        posted.append(messages)
        results = [answers[n](message) if n in answers else taken(n, message) for n, message in enumerate(messages)]
        response = requests.Response()
        response.status_code, response._content = 200, json.dumps(results).encode()
        return response

    with mock.patch.object(requests.Session, "request", autospec=True, side_effect=answer):
        yield answers, posted


def taken(n, message):
    return {"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{n}", "To": message["To"],
            "SubmittedAt": "2026-11-20T06:00:00Z"}


@pytest.fixture
def readers():
    return [SubscriberFactory(interests=i) for i in ("diffusion models", "language models", "")]


def reader_of(posted, n, readers):
    return next(r for r in readers if r.email == posted[0][n]["To"])


@pytest.mark.parametrize("per_call", [True, False])
def test_a_message_postmark_did_not_take_for_its_own_error_fails_alone(postmark, readers, settings, per_call):
    settings.DIGEST_CLAIMS_PER_CALL = per_call
    answers, posted = postmark
    answers[1] = lambda message: {"ErrorCode": 300, "Message": "Invalid metadata content. Metadata field values "
                                                                 "must be strings."}

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    not_taken = reader_of(posted, 1, readers)
    assert report.sent == 2 and report.failed == 1
    assert ledger.of(not_taken).status == "failed"
    assert {ledger.of(r).esp_message_id for r in readers if r != not_taken} == {"pm-0", "pm-2"}
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}


def test_an_inactive_recipient_is_refused_even_when_postmark_does_not_name_the_address(postmark, readers):
    answers, posted = postmark
    answers[1] = lambda message: {"ErrorCode": 406, "Message": INACTIVE.format("").replace(": .", ".")}

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    refused = reader_of(posted, 1, readers)
    assert report.sent == 2 and report.failed == 1
    assert ledger.of(refused).status == "failed" and ledger.count("sent") == 2
    assert Subscriber.objects.get(pk=refused.pk).status == "bounced"


def test_an_inactive_recipient_named_by_postmark_is_refused(postmark, readers):
    answers, posted = postmark
    answers[0] = lambda message: {"ErrorCode": 406, "Message": INACTIVE.format(message["To"])}

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    refused = reader_of(posted, 0, readers)
    assert report.sent == 2 and report.failed == 1
    assert ledger.of(refused).status == "failed"
    assert Subscriber.objects.get(pk=refused.pk).status == "bounced"


def test_a_batch_of_which_postmark_took_no_message_fails_as_a_whole(postmark, readers):
    answers, _ = postmark
    for n in range(3):
        answers[n] = lambda message: {"ErrorCode": 1101, "Message": "Template not found."}

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.failed == 3 and ledger.count("failed") == 3
    assert SendCall.objects.get().status == "failed"
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}


def test_a_batch_postmark_refuses_for_the_account_is_retried_not_failed(postmark, readers):
    answers, posted = postmark
    for n in range(len(readers)):
        answers[n] = lambda message: {"ErrorCode": 405, "Message": "Not allowed to send: out of credits."}
    edition, ids = built_edition(), [r.pk for r in readers]

    with pytest.raises(TransientSendError):
        send_edition_to(edition, ids)
    assert {ledger.of(r).status for r in readers} == {"pending"}

    answers.clear()  # credits bought
    assert send_edition_to(edition, ids).sent == 3 and ledger.count("sent") == 3


@pytest.mark.parametrize(("code", "kind"), [(405, "transient"), (412, "transient"), (300, "permanent")])
def test_a_422_from_postmark_is_retried_only_when_it_names_the_account(settings, code, kind):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    response = requests.Response()
    response.status_code, response._content = 422, json.dumps({"ErrorCode": code, "Message": "…"}).encode()
    error = AnymailRequestsAPIError("Postmark refused", status_code=422, response=response)

    assert classify_send_error(error) == kind
