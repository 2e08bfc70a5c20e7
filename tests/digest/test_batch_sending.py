"""Batch sending through anymail: one API call per batch, each reader's own email inside it.

anymail's test backend records every call in mail.outbox with the parameters
it would send (``anymail_test_params``); in ``digest.esp`` it stands in for
Mailgun: recipient variables substituted into the message itself.

These tests claim each reader's row (DIGEST_CLAIMS_PER_CALL off: the ledger of
ESPs sent to one by one, and the setting's other choice); the same batch path
with a claim per ESP call is tested in ``test_calls.py``.
"""

import contextlib
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.message import AnymailRecipientStatus
from django.core import mail
from django.db import DatabaseError, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from digest import calls, sending
from digest.esp import BATCH_STYLES, BatchStyle, batch_style
from digest.models import Delivery
from digest.sending import TransientSendError, claim_deliveries, reconcile_stale_deliveries, send_edition_to
from subscriptions import tokens
from tests import ledger
from tests.digest.builders import built_edition
from tests.digest.esp_answers import api_error, failing_first_call, params, timeout_error

pytestmark = pytest.mark.django_db

@pytest.fixture
def esp_outbox(batch_outbox, settings):
    settings.DIGEST_CLAIMS_PER_CALL = False
    return batch_outbox


@pytest.fixture(params=["per-row", "per-call"])
def claims(request, settings, esp_outbox):
    """For the tests that hold with either kind of claim: the ledger is then read through ``tests.ledger``."""
    settings.DIGEST_CLAIMS_PER_CALL = request.param == "per-call"
    return request.param


def test_one_api_call_per_batch_up_to_the_esp_limit(esp_outbox, readers):
    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 5
    assert sorted((len(params(m)["to"]) for m in esp_outbox), reverse=True) == [2, 2, 1]
    assert all(params(m)["is_batch_send"] for m in esp_outbox)
    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert sorted(recipients) == sorted(r.email for r in readers)


def test_each_recipient_gets_their_own_rendered_email_in_merge_data(esp_outbox, readers):
    send_edition_to(built_edition(), [r.pk for r in readers])

    bodies = {}
    for message in esp_outbox:
        assert (params(message)["subject"], params(message)["text_body"]) == ("%recipient.subject%", "%recipient.text%")
        assert params(message)["html_body"] == "%recipient.html%"
        for email, data in params(message)["merge_data"].items():
            assert set(data) == {"subject", "text", "html"}
            assert email in data["html"] and email in data["text"] and data["subject"].startswith("Paperboy ")
            assert not [r.email for r in readers if r.email != email and r.email in data["html"]]
            bodies[email] = data["html"]
    assert len(set(bodies.values())) == len(readers)
    graphs_reader = next(r for r in readers if r.interests == "graph neural networks")
    assert "matches your interests: graph neural networks" in bodies[graphs_reader.email]


def test_each_recipient_gets_their_own_list_unsubscribe_and_message_id(esp_outbox, readers, settings):
    send_edition_to(built_edition(), [r.pk for r in readers])

    message_ids = set()
    for message in esp_outbox:
        assert params(message)["extra_headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert params(message)["extra_headers"]["List-Id"] == settings.EMAIL_LIST_ID
        for email, headers in params(message)["merge_headers"].items():
            url = headers["List-Unsubscribe"].split(">")[0].lstrip("<")
            token = url.removeprefix(f"{settings.SITE_URL}/unsubscribe/").rstrip("/")
            assert tokens.read_token(token, tokens.UNSUBSCRIBE).subscriber.email == email
            assert headers["List-Unsubscribe"].endswith(f"<mailto:{settings.EMAIL_UNSUBSCRIBE_MAILTO}>")
            assert headers["Message-ID"].endswith(f"@{settings.EMAIL_MESSAGE_ID_DOMAIN}>")
            message_ids.add(headers["Message-ID"])
    assert len(message_ids) == len(readers)


def test_each_delivery_records_its_recipients_esp_message_id_and_metadata(esp_outbox, readers):
    send_edition_to(built_edition(), [r.pk for r in readers])

    for index, message in enumerate(esp_outbox):
        for email, metadata in params(message)["merge_metadata"].items():
            delivery = Delivery.objects.get(subscriber__email=email)
            assert metadata == {"delivery_id": str(delivery.pk)}
            assert delivery.status == "sent" and delivery.esp_message_id == str(index)
            assert delivery.paper_ids and set(delivery.why_lines()) == set(delivery.paper_ids)


def test_a_batch_also_stops_before_the_payload_gets_too_big(esp_outbox, readers, settings):
    settings.DIGEST_ESP_BATCH_LIMIT = 0  # the ESP's own limit: 1,000
    settings.DIGEST_ESP_BATCH_MAX_BYTES = 1
    send_edition_to(built_edition(), [r.pk for r in readers])
    assert [len(params(m)["to"]) for m in esp_outbox] == [1] * len(readers)


def test_a_transient_batch_error_returns_every_row_to_pending_and_the_retry_sends_each_once(
    esp_outbox, readers, settings
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 3
    edition = built_edition()
    ids = [r.pk for r in readers]
    all_three_in_progress = threading.Barrier(3, timeout=10)

    def defer_once_all_three_are_in_progress(backend, payload, message):
        all_three_in_progress.wait()  # every batch handed over before the ESP defers them
        raise api_error(503)

    with mock.patch.object(AnymailTestBackend, "post_to_esp", defer_once_all_three_are_in_progress):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, ids)
    # Deferred after the last batch was handed over: nothing was stopped, so no "why" is said.
    assert raised.value.args[0] == f"{len(ids)} deliveries to retry"
    assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}
    assert not any(Delivery.objects.values_list("paper_ids", flat=True))

    send_edition_to(edition, ids)  # the retry
    send_edition_to(edition, ids)  # and a duplicate of it

    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert sorted(recipients) == sorted(r.email for r in readers)
    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 2)}


def test_a_timeout_leaves_the_batch_sending_and_it_is_never_resent(esp_outbox, readers):
    edition = built_edition()
    ids = [r.pk for r in readers[:2]]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        report = send_edition_to(edition, ids)
    assert report.sent == 0 and not report.transient
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sending"}
    assert all(reason.startswith("outcome unknown") for reason in Delivery.objects.values_list("reason", flat=True))

    assert send_edition_to(edition, ids).sent == 0
    assert reconcile_stale_deliveries(timezone.now() + timedelta(hours=1)) == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    assert esp_outbox == []


def test_after_a_call_with_an_unknown_outcome_no_further_batch_is_handed_over(esp_outbox, readers, settings):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 1
    edition = built_edition()
    time_out_the_first_call, calls = failing_first_call(timeout_error())

    with mock.patch.object(AnymailTestBackend, "post_to_esp", time_out_the_first_call):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, [r.pk for r in readers])
        report = raised.value.args[1]
        assert len(calls) == 1 and report.stopped == "the outcome of a send is unknown"
        assert len(report.unknown) == 2 and report.transient == []
        statuses = dict(Delivery.objects.values_list("subscriber__email", "status"))
        assert {email for email, status in statuses.items() if status == "sending"} == set(calls[0])
        assert sorted(statuses.values()).count("pending") == 3

        assert send_edition_to(edition, [r.pk for r in readers]).sent == 3  # the retry

    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert sorted(recipients) == sorted(r.email for r in readers if r.email not in calls[0])
    assert Delivery.objects.filter(status="sending").count() == 2  # never resent


def test_a_task_with_nothing_left_to_send_does_not_open_the_esp_connection(esp_outbox, readers):
    edition, ids = built_edition(), [r.pk for r in readers]
    with mock.patch.object(AnymailTestBackend, "open", autospec=True, side_effect=AnymailTestBackend.open) as opened:
        assert send_edition_to(edition, ids).sent == 5
        opened_by_the_first_task = opened.call_count
        assert send_edition_to(edition, ids).sent == 0  # a retried or repeated task
    assert opened_by_the_first_task >= 1 and opened.call_count == opened_by_the_first_task


def test_a_refused_recipient_fails_alone_and_is_suppressed(esp_outbox, claims, readers):
    refused = readers[0]
    send_for_real = AnymailTestBackend.post_to_esp

    def refusing(backend, payload, message):
        response = send_for_real(backend, payload, message)
        if refused.email in response["recipient_status"]:
            response["recipient_status"][refused.email] = AnymailRecipientStatus(message_id=None, status="rejected")
        return response

    with mock.patch.object(AnymailTestBackend, "post_to_esp", autospec=True, side_effect=refusing):
        report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 4 and report.failed == 1
    assert ledger.of(refused).status == "failed" and ledger.count("sent") == 4
    refused.refresh_from_db()
    assert refused.status == "bounced"
    reconcile_stale_deliveries()  # the beat's sweep settles any call onto its rows: they say the same
    assert Delivery.objects.get(subscriber=refused).status == "failed"
    assert Delivery.objects.filter(status="sent").count() == 4


def test_a_permanent_batch_error_fails_the_batch_without_blaming_the_readers(esp_outbox, readers):
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=api_error(400)):
        report = send_edition_to(built_edition(), [r.pk for r in readers[:2]])
    assert report.failed == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    assert {r.status for r in type(readers[0]).objects.filter(pk__in=[r.pk for r in readers[:2]])} == {"active"}


@pytest.mark.parametrize("status", [401, 403, 404])
def test_an_esp_refusing_our_account_fails_nobody_and_the_retry_sends_each_once_it_is_fixed(
    esp_outbox, readers, settings, status
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 1
    edition, ids = built_edition(), [r.pk for r in readers]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=api_error(status)) as posted:
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, ids)
    assert posted.call_count == 1  # the task stopped at the first refused call
    assert raised.value.args[1].failed == 0
    assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}

    send_edition_to(edition, ids)  # the key fixed: the task's retry
    assert sorted(to.addr_spec for m in esp_outbox for to in params(m)["to"]) == sorted(r.email for r in readers)
    assert Delivery.objects.filter(status="sent").count() == len(readers)


def test_rows_another_worker_took_are_left_out_of_the_batch(esp_outbox, readers):
    edition = built_edition()
    claim_deliveries(edition, [r.pk for r in readers])
    Delivery.objects.filter(subscriber=readers[0]).update(status="sending", sending_at=timezone.now())

    report = send_edition_to(edition, [r.pk for r in readers])

    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert readers[0].email not in recipients and len(recipients) == 4 and report.sent == 4


def test_a_claim_stores_any_why_line_exactly_and_its_statement_is_counted_like_any_other(readers):
    """The claim carries the batch's papers and why-lines as one JSON parameter: quotes,
    backslashes, placeholders and emoji in a why-line reach the row as they were."""
    edition = built_edition()
    claim_deliveries(edition, [r.pk for r in readers[:2]])
    deliveries = list(Delivery.objects.filter(edition=edition).order_by("pk"))
    odd = "it's a \\ \"quoted\" %s $1 ?::jsonb 🚀 line\nbreak"
    for number, delivery in enumerate(deliveries):
        delivery.paper_ids, delivery.reasons = [number, 2**40], {str(number): odd, "2": ""}

    with CaptureQueriesContext(connections["default"]) as queries:
        token, won = sending.start_sending_with_papers(deliveries)

    assert won == {d.pk for d in deliveries}
    assert [(d.status, d.send_token, d.paper_ids, d.reasons) for d in Delivery.objects.order_by("pk")] == [
        ("sending", token, [number, 2**40], {str(number): odd, "2": ""}) for number in range(2)
    ]
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")


def test_batches_are_claimed_sent_and_recorded_in_another_thread_on_the_senders_connection(esp_outbox, readers):
    seen = []
    record_sent = sending.record_sent

    def recording(token, sent):
        seen.append((threading.current_thread() is threading.main_thread(), connections["default"]))
        return record_sent(token, sent)

    with mock.patch.object(sending, "record_sent", side_effect=recording):
        report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 5 and len(seen) == 3
    assert not any(in_main for in_main, _ in seen)
    assert {id(database) for _, database in seen} == {id(connections["default"])}
    assert not connections["default"].allow_thread_sharing


def test_a_database_error_in_the_batch_thread_reaches_the_task_and_leaves_the_connection_unshared(
    esp_outbox, readers, settings
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 1
    edition = built_edition()
    with mock.patch.object(sending, "record_sent", side_effect=DatabaseError("connection lost")):
        with pytest.raises(DatabaseError):
            send_edition_to(edition, [r.pk for r in readers])

    assert len(esp_outbox) == 1  # the next batch was not sent after the failure
    assert Delivery.objects.filter(status="sending").count() == 2  # outcome unknown: never resent
    assert not connections["default"].allow_thread_sharing


def test_several_esp_calls_are_in_progress_at_once_and_each_reader_is_sent_once(esp_outbox, claims, readers, settings):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 3
    all_three_in_progress = threading.Barrier(3, timeout=10)  # broken unless the three calls overlap
    post = AnymailTestBackend.post_to_esp

    def post_when_all_in_progress(backend, payload, message):
        all_three_in_progress.wait()
        return post(backend, payload, message)

    with mock.patch.object(AnymailTestBackend, "post_to_esp", post_when_all_in_progress):
        report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 5 and not report.transient and not all_three_in_progress.broken
    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert sorted(recipients) == sorted(r.email for r in readers)
    assert {(d.status, d.attempts) for d in ledger.deliveries()} == {("sent", 1)}
    assert not connections["default"].allow_thread_sharing


def test_the_esp_connection_is_opened_once_before_the_batch_threads_share_it_and_closed_after(
    esp_outbox, readers, settings
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 3
    events = []

    class RecordingBackend(AnymailTestBackend):
        def open(self):
            events.append(("open", threading.current_thread() is threading.main_thread()))
            return super().open()

        def send_messages(self, messages):
            events.append(("send", threading.current_thread() is threading.main_thread()))
            return super().send_messages(messages)

        def close(self):
            events.append(("close", threading.current_thread() is threading.main_thread()))
            return super().close()

    with mock.patch.object(sending, "get_connection", lambda: RecordingBackend()):
        assert send_edition_to(built_edition(), [r.pk for r in readers]).sent == 5

    assert events[0] == ("open", True) and events[-1] == ("close", True)
    assert [event for event in events if event[0] == "send"] == [("send", False)] * 3
    assert events.count(("close", True)) == 1 and ("close", False) not in events


def test_with_calls_in_flight_a_deferred_call_returns_only_its_own_rows_to_pending(
    esp_outbox, claims, readers, settings
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 3
    edition = built_edition()
    second_batch = {readers[2].email, readers[3].email}  # batches follow the readers' order, two each
    all_three_in_progress = threading.Barrier(3, timeout=10)
    post = AnymailTestBackend.post_to_esp

    def defer_the_second_batch(backend, payload, message):
        all_three_in_progress.wait()  # all handed over before the ESP defers one
        if second_batch & set(message.to):
            raise api_error(503)
        return post(backend, payload, message)

    with mock.patch.object(AnymailTestBackend, "post_to_esp", defer_the_second_batch):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, [r.pk for r in readers])

    report = raised.value.args[1]
    assert report.sent == 3 and len(report.transient) == 2
    assert {d.subscriber.email for d in ledger.deliveries() if d.status == "pending"} == second_batch
    assert ledger.count("sent") == 3
    send_edition_to(edition, [r.pk for r in readers])  # the retry sends those two, and no one else
    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert sorted(recipients) == sorted(r.email for r in readers)


def test_after_a_database_error_the_batch_in_flight_beside_it_is_finished_and_no_other_is_handed_over(
    esp_outbox, readers, settings
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 2
    edition = built_edition()
    claim_deliveries(edition, [r.pk for r in readers])
    first_id = Delivery.objects.order_by("pk").first().pk  # in the first batch: composed in delivery order
    record_sent = sending.record_sent

    def fail_for_the_first_batch(token, sent):
        if any(delivery.pk == first_id for delivery, _ in sent):
            raise DatabaseError("connection lost")
        return record_sent(token, sent)

    with mock.patch.object(sending, "record_sent", side_effect=fail_for_the_first_batch):
        with pytest.raises(DatabaseError):
            send_edition_to(edition, [r.pk for r in readers])

    assert len(esp_outbox) == 2  # the first two batches; the third was not handed over
    statuses = sorted(Delivery.objects.values_list("status", flat=True))
    assert statuses == ["pending", "sending", "sending", "sent", "sent"]
    assert Delivery.objects.get(pk=first_id).status == "sending"  # outcome unknown: never resent
    assert not connections["default"].allow_thread_sharing


def test_readers_with_nothing_to_read_are_skipped_with_the_reason(esp_outbox, readers):
    edition = built_edition()
    edition.entries.update(pulled=True)

    report = send_edition_to(edition, [r.pk for r in readers])

    assert report.skipped == 5 and esp_outbox == []
    assert set(Delivery.objects.values_list("status", "reason")) == {("skipped", sending.NOTHING_NEW)}


def test_an_esp_that_merges_only_into_a_stored_template_gets_the_template(esp_outbox, readers, settings, monkeypatch):
    monkeypatch.setitem(BATCH_STYLES, "test", BatchStyle(500, needs_template=True))
    settings.DIGEST_ESP_TEMPLATE_ID = "paperboy-digest"

    send_edition_to(built_edition(), [r.pk for r in readers[:2]])

    (message,) = esp_outbox
    assert params(message)["template_id"] == "paperboy-digest"
    assert "html_body" not in params(message) and not params(message).get("text_body")
    assert all(data["html"].startswith("<!DOCTYPE html>") for data in params(message)["merge_data"].values())


@pytest.mark.parametrize(
    "backend, template_id, expected",
    [
        ("anymail.backends.mailgun.EmailBackend", "", (1000, "%recipient.html%", "")),
        ("anymail.backends.postmark.EmailBackend", "", None),
        ("anymail.backends.postmark.EmailBackend", "digest", (500, "", "digest")),
        ("anymail.backends.amazon_ses.EmailBackend", "digest", (50, "", "digest")),
        ("anymail.backends.sendgrid.EmailBackend", "", None),
        ("django.core.mail.backends.smtp.EmailBackend", "", None),
        ("digest.outbox.OutboxEmailBackend", "", None),
    ],
)
def test_batch_style_follows_the_configured_backend(settings, backend, template_id, expected):
    settings.EMAIL_BACKEND, settings.DIGEST_ESP_TEMPLATE_ID, settings.DIGEST_ESP_BATCH_LIMIT = backend, template_id, 0
    style = batch_style()
    summary = None if style is None else (style.max_recipients, style.fields.html, style.fields.template_id)
    assert summary == expected


def test_without_batching_each_reader_gets_one_message_over_one_connection(mailoutbox, readers):
    with mock.patch("digest.sending.get_connection", wraps=mail.get_connection) as connections:
        send_edition_to(built_edition(), [r.pk for r in readers])
    assert connections.call_count == 1
    assert sorted(m.to[0] for m in mailoutbox) == sorted(r.email for r in readers)
    assert all(len(m.to) == 1 for m in mailoutbox)


def test_after_a_deferred_call_no_further_batch_is_handed_over_and_the_retry_sends_the_rest(
    esp_outbox, readers, settings
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 1
    edition = built_edition()
    defer_the_first_call, calls = failing_first_call(api_error(429))

    with mock.patch.object(AnymailTestBackend, "post_to_esp", defer_the_first_call):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, [r.pk for r in readers])
        assert len(calls) == 1 and len(raised.value.args[1].transient) == 2
        assert set(Delivery.objects.values_list("status", "attempts")) == {("pending", 0), ("pending", 1)}

        send_edition_to(edition, [r.pk for r in readers])

    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert sorted(recipients) == sorted(r.email for r in readers) and len(calls) == 4
    assert Delivery.objects.filter(status="sent").count() == 5


@pytest.fixture
def blocks_of_two(monkeypatch, settings):
    """A task's readers read two at a time, so five readers make three blocks (and three batches)."""
    monkeypatch.setattr(sending, "READ_BLOCK_SIZE", 2)
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 2


def test_a_task_reads_its_next_block_while_the_call_of_the_last_one_is_in_progress(
    esp_outbox, readers, blocks_of_two
):
    read_blocks, second_block_read = [], threading.Event()
    pending_deliveries, post = sending.pending_deliveries, AnymailTestBackend.post_to_esp

    def reading(edition, subscriber_ids):
        read_blocks.append(list(subscriber_ids))
        if len(read_blocks) == 2:
            second_block_read.set()
        return pending_deliveries(edition, subscriber_ids)

    def answer_once_the_second_block_is_read(backend, payload, message):
        assert second_block_read.wait(timeout=10), "the next block was not read during the call"
        return post(backend, payload, message)

    with mock.patch.object(sending, "pending_deliveries", side_effect=reading):
        with mock.patch.object(AnymailTestBackend, "post_to_esp", answer_once_the_second_block_is_read):
            report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert read_blocks == [[r.pk for r in readers[:2]], [r.pk for r in readers[2:4]], [readers[4].pk]]
    assert report.sent == 5 and len(esp_outbox) == 3
    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 1)}
    assert not connections["default"].allow_thread_sharing


@pytest.mark.parametrize("per_call, claim, record", [
    (False, (sending, "start_sending_with_papers"), (sending, "record_sent")),
    (True, (calls, "claim_call"), (calls, "record_call_sent")),
])
def test_a_blocks_reads_never_overlap_a_batch_threads_claim_or_record(
    esp_outbox, readers, blocks_of_two, settings, per_call, claim, record
):
    settings.DIGEST_CLAIMS_PER_CALL = per_call
    spans, lock = [], threading.Lock()

    def timed(function):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    spans.append((started, time.perf_counter(), function.__name__))
        return run

    watched = [(sending, "pending_deliveries"), (sending, "load_readers"), claim, record]
    with contextlib.ExitStack() as stack:
        for module, name in watched:
            stack.enter_context(mock.patch.object(module, name, timed(getattr(module, name))))
        assert send_edition_to(built_edition(), [r.pk for r in readers]).sent == 5

    assert {name for _, _, name in spans} == {name for _, name in watched}
    spans.sort()
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in zip(spans, spans[1:]))


def test_a_failed_read_of_a_later_block_finishes_the_calls_in_flight_and_reaches_the_task(
    esp_outbox, claims, readers, blocks_of_two
):
    edition = built_edition()
    pending_deliveries = sending.pending_deliveries
    calls = []

    def failing_on_the_second_block(edition, subscriber_ids):
        calls.append(subscriber_ids)
        if len(calls) == 2:
            raise DatabaseError("connection lost")
        return pending_deliveries(edition, subscriber_ids)

    with mock.patch.object(sending, "pending_deliveries", side_effect=failing_on_the_second_block):
        with pytest.raises(DatabaseError):
            send_edition_to(edition, [r.pk for r in readers])

    sent = {d.subscriber_id for d in ledger.deliveries() if d.status == "sent"}
    assert sent == {readers[0].pk, readers[1].pk}  # the first block's call was finished and recorded
    assert ledger.count("sending") == 0
    assert len(esp_outbox) == 1 and not connections["default"].allow_thread_sharing
    send_edition_to(edition, [r.pk for r in readers])  # the retry sends the rest, once each
    recipients = [to.addr_spec for m in esp_outbox for to in params(m)["to"]]
    assert sorted(recipients) == sorted(r.email for r in readers)
