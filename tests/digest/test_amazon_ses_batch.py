"""Digests batched through Amazon SES's bulk send of a stored template (SES v2 ``SendBulkEmail``).

anymail's own Amazon SES backend and boto3 make each call, with the client settings Paperboy
gives them; only the endpoint is an imitation of SES on the loopback interface
(``tests.fakes.amazon_ses``), which records what it read and answers as SES does.
"""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from digest import calls, sending
from digest.models import Delivery, SendCall, WebhookEvent
from digest.sending import TransientSendError, reconcile_stale_deliveries, send_edition_to
from digest.webhooks import apply_event
from subscriptions.models import Subscriber
from tests import ledger
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory
from tests.fakes.amazon_ses import DROP, FakeSES, Refusal

pytestmark = pytest.mark.django_db


@pytest.fixture
def ses(settings):
    with FakeSES() as fake:
        settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
        settings.DIGEST_ESP_TEMPLATE_ID = "paperboy-digest"
        client_params = settings.ANYMAIL["AMAZON_SES_CLIENT_PARAMS"]
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            "AMAZON_SES_CLIENT_PARAMS": {**client_params, "endpoint_url": fake.base_url},
            "AMAZON_SES_SESSION_PARAMS": {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret"},
        }
        yield fake


@pytest.fixture
def readers():
    return [SubscriberFactory(interests=i) for i in ("diffusion models", "language models", "")]


def test_each_reader_gets_their_own_entry_in_one_bulk_call(ses, readers):
    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 3
    [call] = ses.calls
    assert call["DefaultContent"]["Template"]["TemplateName"] == "paperboy-digest"
    assert sorted(ses.recipients()) == sorted(r.email for r in readers)
    assert {ledger.of(r).esp_message_id for r in readers} == {"ses-1-0", "ses-1-1", "ses-1-2"}


def test_a_call_whose_answer_is_lost_is_made_once_and_never_again(ses, readers):
    """SES may have taken a call whose connection dropped before it answered: botocore must not
    send it again by itself (every reader of the batch would get a second digest)."""
    ses.script(DROP)

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert len(ses.calls) == 1
    assert report.sent == 0 and len(report.unknown) == 3
    assert {ledger.of(r).status for r in readers} == {"sending"}  # stale: failed, never resent


def every_entry(status):
    return lambda entries, results: [{"Status": status, "Error": "Maximum sending rate exceeded."} for _ in results]


def entries_answered(*statuses):
    """Each entry's result given by its Status, in order (SUCCESS keeps the entry's message id);
    the entries past ``statuses`` succeed."""

    def answer(entries, results):
        for n, status in enumerate(statuses):
            if status != "SUCCESS":
                results[n] = {"Status": status, "Error": f"{status} (imitated)"}
        return results

    return answer


@pytest.mark.parametrize("answer", [Refusal(429, "TooManyRequestsException"), Refusal(400, "Throttling"),
                                    Refusal(503, "ServiceUnavailable"), every_entry("ACCOUNT_THROTTLED"),
                                    every_entry("ACCOUNT_DAILY_QUOTA_EXCEEDED"),
                                    entries_answered("ACCOUNT_THROTTLED", "TRANSIENT_FAILURE", "ACCOUNT_THROTTLED"),
                                    Refusal(403, "AccessDeniedException")],
                         ids=["429", "400 Throttling", "503", "every entry throttled", "every entry over quota",
                              "every entry deferred, not all alike", "403"])
def test_a_deferred_call_returns_its_readers_to_pending_and_the_retry_sends_each_once(ses, readers, answer):
    ses.script(answer)
    edition, ids = built_edition(), [r.pk for r in readers]

    with pytest.raises(TransientSendError):
        send_edition_to(edition, ids)
    assert len(ses.calls) == 1 and {ledger.of(r).status for r in readers} == {"pending"}

    assert send_edition_to(edition, ids).sent == 3
    assert sorted(ses.recipients()) == sorted(r.email for r in readers * 2)  # the refused call, then the retry
    assert ledger.count("sent") == 3


def test_a_call_that_never_reached_ses_is_deferred(ses, readers, settings):
    client_params = settings.ANYMAIL["AMAZON_SES_CLIENT_PARAMS"]
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_CLIENT_PARAMS": {**client_params,
                                                                         "endpoint_url": "http://127.0.0.1:1"}}
    with pytest.raises(TransientSendError):
        send_edition_to(built_edition(), [r.pk for r in readers])
    assert {ledger.of(r).status for r in readers} == {"pending"}


def test_a_refused_call_fails_its_readers_at_once_without_blaming_them(ses, readers):
    ses.script(Refusal(400, "MessageRejected"))

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.failed == 3 and not report.unknown
    assert {ledger.of(r).status for r in readers} == {"failed"}
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}


def test_the_ses_client_waits_esp_timeout_seconds(settings):
    config = settings.ANYMAIL["AMAZON_SES_CLIENT_PARAMS"]["config"]
    timeout = settings.ANYMAIL["REQUESTS_TIMEOUT"]
    assert (config["connect_timeout"], config["read_timeout"]) == (timeout, timeout)


@pytest.mark.parametrize("per_call", [True, False])
def test_an_entry_ses_did_not_take_fails_alone_and_its_reader_is_not_blamed(ses, readers, settings, per_call):
    settings.DIGEST_CLAIMS_PER_CALL = per_call
    ses.script(entries_answered("SUCCESS", "MESSAGE_REJECTED"))

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    [call] = ses.calls
    not_taken = next(r for r in readers if r.email in call["BulkEmailEntries"][1]["Destination"]["ToAddresses"])
    assert report.sent == 2 and report.failed == 1
    assert ledger.of(not_taken).status == "failed" and ledger.count("sent") == 2
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}


# One call of six entries: two taken, two throttled, one failing for the moment, one rejected.
MIXED_ANSWER = ("SUCCESS", "ACCOUNT_THROTTLED", "MESSAGE_REJECTED", "TRANSIENT_FAILURE", "SUCCESS",
                "ACCOUNT_THROTTLED")


def readers_of_entries(call, readers, *statuses):
    """The readers whose entry of ``call`` was answered one of ``statuses`` in ``MIXED_ANSWER``."""
    addresses = {entry["Destination"]["ToAddresses"][0] for entry, status
                 in zip(call["BulkEmailEntries"], MIXED_ANSWER) if status in statuses}
    return [r for r in readers if r.email in addresses]


@pytest.fixture
def eight_readers(settings):
    """Eight readers, sent in calls of six, one call at a time."""
    settings.DIGEST_ESP_BATCH_LIMIT = 6
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 1
    return [SubscriberFactory(interests=("diffusion models", "language models", "")[n % 3]) for n in range(8)]


@pytest.mark.parametrize("per_call", [True, False])
def test_entries_ses_deferred_are_pending_again_and_the_retry_sends_each_reader_once(
    ses, eight_readers, settings, per_call
):
    settings.DIGEST_CLAIMS_PER_CALL = per_call
    edition, ids = built_edition(), [r.pk for r in eight_readers]
    ses.script(entries_answered(*MIXED_ANSWER))

    with pytest.raises(TransientSendError) as raised:
        send_edition_to(edition, ids)

    [call] = ses.calls  # the task stopped after the call with deferred entries
    report = raised.value.args[1]
    assert (report.sent, report.failed, len(report.transient)) == (2, 1, 3)
    deferred = readers_of_entries(call, eight_readers, "ACCOUNT_THROTTLED", "TRANSIENT_FAILURE")
    [rejected] = readers_of_entries(call, eight_readers, "MESSAGE_REJECTED")
    taken = readers_of_entries(call, eight_readers, "SUCCESS")
    assert {ledger.of(r).status for r in deferred} == {"pending"}
    assert ledger.of(rejected).status == "failed" and {ledger.of(r).status for r in taken} == {"sent"}
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}

    assert send_edition_to(edition, ids).sent == 5  # the retry: the deferred three and the two never tried

    assert len(ses.calls) == 2
    assert Counter(ses.delivered()) == Counter(r.email for r in eight_readers if r != rejected)
    assert ledger.count("sent") == 7 and ledger.of(rejected).status == "failed"


def test_the_sweep_never_settles_a_reader_ses_deferred_in_a_call_it_took(ses, eight_readers, settings):
    settings.DIGEST_CLAIMS_PER_CALL = True
    edition, ids = built_edition(), [r.pk for r in eight_readers[:6]]
    ses.script(entries_answered(*MIXED_ANSWER))
    with pytest.raises(TransientSendError):
        send_edition_to(edition, ids)
    [call] = ses.calls
    deferred = readers_of_entries(call, eight_readers, "ACCOUNT_THROTTLED", "TRANSIENT_FAILURE")

    reconcile_stale_deliveries(now=timezone.now() + timedelta(days=1))

    [made] = SendCall.objects.all()
    assert made.status == "sent" and made.settled_at is not None
    assert not {r.pk for r in deferred} & set(Delivery.objects.filter(pk__in=made.delivery_ids)
                                                .values_list("subscriber_id", flat=True))
    rows = Delivery.objects.filter(subscriber__in=deferred)
    assert [(d.status, d.attempts, d.paper_ids) for d in rows] == [("pending", 1, [])] * 3
    assert {ledger.of(r).status for r in deferred} == {"pending"}
    assert ledger.count("sent") == 2 and ledger.count("failed") == 1

    assert send_edition_to(edition, ids).sent == 3
    reconcile_stale_deliveries(now=timezone.now() + timedelta(days=1))
    assert set(rows.values_list("status", flat=True)) == {"sent"}
    assert Counter(ses.delivered()) == Counter(r.email for r in deferred + readers_of_entries(
        call, eight_readers, "SUCCESS"))


def test_a_sweep_right_after_the_call_is_marked_sent_leaves_the_rejected_entry_failed(
    ses, eight_readers, settings, monkeypatch
):
    """Another worker's sweep may settle the call the moment it is marked sent: the readers whose
    entry SES did not take must already be out of what settling writes as sent."""
    settings.DIGEST_CLAIMS_PER_CALL = True
    edition, ids = built_edition(), [r.pk for r in eight_readers[:6]]
    ses.script(entries_answered(*MIXED_ANSWER))
    record_call_sent = calls.record_call_sent

    def marked_sent_then_swept(token, message_ids):
        record_call_sent(token, message_ids)
        calls.settle_calls()

    monkeypatch.setattr(calls, "record_call_sent", marked_sent_then_swept)
    with pytest.raises(TransientSendError):
        send_edition_to(edition, ids)

    [call] = ses.calls
    [rejected] = readers_of_entries(call, eight_readers, "MESSAGE_REJECTED")
    deferred = readers_of_entries(call, eight_readers, "ACCOUNT_THROTTLED", "TRANSIENT_FAILURE")
    assert Delivery.objects.get(subscriber=rejected).status == "failed"
    assert {Delivery.objects.get(subscriber=r).status for r in deferred} == {"pending"}
    assert Delivery.objects.filter(status="sent").count() == 2


def test_a_webhook_proving_one_entry_sent_before_the_answer_is_recorded_loses_no_deferred_reader(
    ses, eight_readers, settings, monkeypatch
):
    """An event about a message SES took (here: delivered) can be applied before the worker has
    recorded SES's answer: it settles the call as sent, for every reader it then carries. The
    answer, recorded after it, still decides the readers whose entry SES did not take."""
    settings.DIGEST_CLAIMS_PER_CALL = True
    edition, ids = built_edition(), [r.pk for r in eight_readers[:6]]
    ses.script(entries_answered(*MIXED_ANSWER))
    record_call_answer = sending.record_call_answer

    def proved_before_recorded(token, group, answer, report):
        taken = next(c.delivery for c, message_id in zip(group, answer.message_ids) if message_id)
        event = WebhookEvent.objects.create(
            event_id="ses-delivered-early", esp="amazon_ses", event_type="delivered",
            recipient=taken.subscriber.email, message_id="", occurred_at=timezone.now(),
            details={"metadata": {"delivery_id": str(taken.pk)}},
        )
        apply_event(event.pk)
        assert SendCall.objects.get(token=token).status == "sent"  # the race this test is about
        record_call_answer(token, group, answer, report)

    monkeypatch.setattr(sending, "record_call_answer", proved_before_recorded)
    with pytest.raises(TransientSendError):
        send_edition_to(edition, ids)
    monkeypatch.undo()

    [call] = ses.calls
    [rejected] = readers_of_entries(call, eight_readers, "MESSAGE_REJECTED")
    deferred = readers_of_entries(call, eight_readers, "ACCOUNT_THROTTLED", "TRANSIENT_FAILURE")
    taken = readers_of_entries(call, eight_readers, "SUCCESS")
    rows = Delivery.objects.filter(subscriber__in=deferred)
    assert [(d.status, d.paper_ids, d.sent_at) for d in rows] == [("pending", [], None)] * 3
    assert Delivery.objects.get(subscriber=rejected).status == "failed"
    assert {Delivery.objects.get(subscriber=r).status for r in taken} == {"sent"}
    made = SendCall.objects.get()
    assert not {d.pk for d in rows} & set(made.delivery_ids)
    assert made.recipient_message_ids  # SES's answer is kept on the call, though the webhook came first
    assert all(Delivery.objects.get(subscriber=r).esp_message_id.startswith("ses-") for r in taken)

    assert send_edition_to(edition, ids).sent == 3
    reconcile_stale_deliveries(now=timezone.now() + timedelta(days=1))
    assert set(rows.values_list("status", flat=True)) == {"sent"}
    assert Counter(ses.delivered()) == Counter(r.email for r in deferred + taken)
