"""Claims per ESP call (DIGEST_CLAIMS_PER_CALL): each reader at most once, their outcome on the call
until it is settled onto their rows, and every reader of the ledger seeing it meanwhile."""

import csv
import io
import json
import logging
import threading
from datetime import timedelta
from unittest import mock

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.message import AnymailRecipientStatus
from anymail.signals import AnymailTrackingEvent
from django.core import mail
from django.db import DatabaseError, connections, transaction
from django.urls import reverse
from django.utils import timezone

from digest import calls, dashboard, sending
from digest.models import Delivery, SendCall, WebhookEvent
from digest.sending import TransientSendError, claim_deliveries, reconcile_stale_deliveries, send_edition_to
from digest.services import requeue_orphaned, resend_failed_delivery
from digest.webhooks import apply_event
from subscriptions import tokens
from subscriptions.models import Subscriber
from tests.digest.builders import built_edition
from tests.digest.esp_answers import api_error, failing_first_call, params, timeout_error
from tests.factories import EditionFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def esp_outbox(batch_outbox, settings):
    settings.DIGEST_CLAIMS_PER_CALL = True
    return batch_outbox


def recipients(outbox):
    return sorted(to.addr_spec for m in outbox for to in params(m)["to"])


def effective_statuses():
    rows = calls.effective(Delivery.objects.all())
    return {d.subscriber_id: d.status for d in rows}


def test_a_batch_is_claimed_by_one_call_and_its_rows_are_not_written_while_it_is_sent(esp_outbox, readers):
    edition = built_edition()
    report = send_edition_to(edition, [r.pk for r in readers])

    assert report.sent == 5 and recipients(esp_outbox) == sorted(r.email for r in readers)
    made = list(SendCall.objects.order_by("first_delivery_id"))
    assert [len(c.delivery_ids) for c in made] == [2, 2, 1]
    assert {c.status for c in made} == {"sent"} and all(c.settled_at is None for c in made)
    assert set(Delivery.objects.values_list("status", "attempts", "send_token")) == {("pending", 0, "")}
    assert set(effective_statuses().values()) == {"sent"}
    assert {c.esp_message_id for c in made} == {str(m.anymail_status.message_id) for m in esp_outbox}


def test_a_retried_or_repeated_task_sends_no_one_twice(esp_outbox, readers):
    edition, ids = built_edition(), [r.pk for r in readers]
    send_edition_to(edition, ids)
    assert send_edition_to(edition, ids).sent == 0
    assert send_edition_to(edition, ids[:2]).sent == 0
    assert recipients(esp_outbox) == sorted(r.email for r in readers)
    assert SendCall.objects.count() == 3


def test_a_row_in_a_live_call_is_never_claimed_by_a_claim_per_row(esp_outbox, readers, settings):
    edition, ids = built_edition(), [r.pk for r in readers]
    send_edition_to(edition, ids)
    settings.DIGEST_CLAIMS_PER_CALL = False
    assert send_edition_to(edition, ids).sent == 0

    deliveries = list(Delivery.objects.filter(edition=edition))
    items = [sending.ComposedDigest(d, [], None) for d in deliveries]
    token, won = sending.claim_for_send(items, sending.SendReport())
    assert won == [] and len(esp_outbox) == 3


def test_settling_copies_each_calls_outcome_papers_and_message_id_onto_its_rows(esp_outbox, readers):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers])
    seen = {d.pk: (d.status, d.paper_ids, d.reasons, d.esp_message_id, d.send_token)
            for d in calls.effective(Delivery.objects.all())}

    assert reconcile_stale_deliveries() == 0
    assert SendCall.objects.filter(settled_at__isnull=True).count() == 0
    rows = {d.pk: (d.status, d.paper_ids, d.reasons, d.esp_message_id, d.send_token) for d in Delivery.objects.all()}
    assert rows == seen
    assert all(status == "sent" and paper_ids and message_id for status, paper_ids, _, message_id, _ in rows.values())
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}
    assert not Delivery.objects.filter(sent_at__isnull=True).exists()
    assert send_edition_to(edition, [r.pk for r in readers]).sent == 0


def test_a_settled_call_lets_go_of_its_papers_once_its_rows_hold_them(esp_outbox, readers, client):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers])
    assert all(json.loads(papers) for papers in SendCall.objects.values_list("papers", flat=True))

    calls.settle_calls()

    assert set(SendCall.objects.values_list("papers", flat=True)) == {"{}"}
    assert all(d.status == "sent" and d.paper_ids and d.reasons for d in Delivery.objects.all())
    reader = readers[1]
    papers = Delivery.objects.get(subscriber=reader, edition=edition).paper_ids
    view = client.get(reverse("digest:view_in_browser", args=[tokens.make_token(reader, tokens.VIEW, e=edition.pk)]))
    assert view.status_code == 200
    titles = dict(edition.papers.values_list("pk", "title"))
    assert all(titles[pid] in view.content.decode() for pid in papers)


def test_a_deferred_call_is_returned_and_its_readers_are_sent_once_by_the_retry(esp_outbox, readers):
    edition, ids = built_edition(), [r.pk for r in readers]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=api_error(503)):
        with pytest.raises(TransientSendError):
            send_edition_to(edition, ids)
    assert set(SendCall.objects.values_list("status", flat=True)) == {"returned"}
    assert set(effective_statuses().values()) == {"pending"}

    send_edition_to(edition, ids)
    send_edition_to(edition, ids)
    assert recipients(esp_outbox) == sorted(r.email for r in readers)
    reconcile_stale_deliveries()
    made = list(SendCall.objects.values_list("delivery_ids", flat=True))
    for delivery in Delivery.objects.all():
        assert delivery.status == "sent"
        assert delivery.attempts == sum(delivery.pk in ids for ids in made)  # a returned call, then the sent one


def test_a_deferred_call_of_many_readers_is_logged_by_its_first_ids_its_count_and_its_token(
    esp_outbox, settings, caplog
):
    settings.DIGEST_ESP_BATCH_LIMIT = 100
    many = SubscriberFactory.create_batch(12, interests="")
    edition = built_edition()
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=api_error(503)), \
            caplog.at_level(logging.WARNING, logger="digest.sending"):
        with pytest.raises(TransientSendError):
            send_edition_to(edition, [r.pk for r in many])

    call = SendCall.objects.get()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("digest send deferred"))
    first_ten = ",".join(map(str, call.delivery_ids[:10]))
    assert f"deliveries={first_ten},…(12 in all) send_token={call.token} " in line


def test_a_call_with_an_unknown_outcome_is_never_resent_and_the_stale_sweep_fails_it(esp_outbox, readers):
    edition, ids = built_edition(), [r.pk for r in readers[:2]]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        report = send_edition_to(edition, ids)
    assert report.sent == 0 and len(report.unknown) == 2
    call = SendCall.objects.get()
    assert call.status == "sending" and call.reason.startswith("outcome unknown")
    assert set(effective_statuses().values()) == {"sending"}

    assert send_edition_to(edition, ids).sent == 0
    assert requeue_orphaned(edition, age_minutes=-1) == 0  # its readers are the call's, not a lost task's
    assert reconcile_stale_deliveries(timezone.now() + timedelta(hours=1)) == 2
    rows = list(Delivery.objects.all())
    assert {d.status for d in rows} == {"failed"} and all(d.paper_ids for d in rows)  # they may have it
    assert send_edition_to(edition, ids).sent == 0 and esp_outbox == []


def test_an_open_after_the_stale_sweep_failed_a_call_settles_its_reader_as_sent(esp_outbox, readers):
    edition, ids = built_edition(), [r.pk for r in readers[:2]]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        send_edition_to(edition, ids)
    reconcile_stale_deliveries(timezone.now() + timedelta(hours=1))
    opened, other = Delivery.objects.get(subscriber=readers[0]), Delivery.objects.get(subscriber=readers[1])

    event = WebhookEvent.objects.create(
        event_id="e-stale", esp="mailgun", event_type="opened", recipient=readers[0].email, message_id="",
        occurred_at=timezone.now(), details={"metadata": {"delivery_id": str(opened.pk)}},
    )
    apply_event(event.pk)

    opened.refresh_from_db()
    other.refresh_from_db()
    assert (opened.status, opened.reason) == ("sent", "settled by the ESP's webhook") and opened.opened_at
    assert opened.paper_ids and opened.sent_at == opened.opened_at
    assert other.status == "failed"  # nothing proved that the ESP has its reader's message
    assert send_edition_to(edition, ids).sent == 0 and esp_outbox == []


def test_after_a_call_with_an_unknown_outcome_no_further_call_is_made(esp_outbox, readers, settings):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 1
    edition, ids = built_edition(), [r.pk for r in readers]
    time_out_the_first_call, made = failing_first_call(timeout_error())

    with mock.patch.object(AnymailTestBackend, "post_to_esp", time_out_the_first_call):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, ids)
        assert len(made) == 1 and raised.value.args[1].stopped == "the outcome of a send is unknown"
        rows = calls.effective(Delivery.objects.select_related("subscriber"))
        by_email = {d.subscriber.email: d.status for d in rows}
        assert {email for email, status in by_email.items() if status == "sending"} == set(made[0])
        assert sorted(by_email.values()).count("pending") == 3

        assert send_edition_to(edition, ids).sent == 3  # the retry

    assert recipients(esp_outbox) == sorted(r.email for r in readers if r.email not in made[0])


def test_a_permanently_refused_call_fails_its_readers_with_no_papers(esp_outbox, readers):
    edition = built_edition()
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=api_error(400)):
        report = send_edition_to(edition, [r.pk for r in readers[:2]])
    assert report.failed == 2
    reconcile_stale_deliveries()
    assert list(Delivery.objects.values_list("status", "paper_ids")) == [("failed", []), ("failed", [])]


def test_a_reader_who_leaves_before_the_call_is_left_out_of_it(esp_outbox, readers):
    edition = built_edition()
    claim_deliveries(edition, [r.pk for r in readers])
    deliveries = list(Delivery.objects.filter(edition=edition).order_by("pk"))
    type(readers[0]).objects.filter(pk=deliveries[0].subscriber_id).update(status="unsubscribed")

    token, won = calls.claim_call(edition.pk, [(d.pk, [1], {}) for d in deliveries])
    assert won == {d.pk for d in deliveries[1:]}
    assert SendCall.objects.get(token=token).delivery_ids == sorted(won)
    assert calls.claim_call(edition.pk, [(d.pk, [1], {}) for d in deliveries])[1] == set()


def test_the_web_view_and_the_feed_show_a_digest_whose_call_is_not_settled(esp_outbox, readers, client):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers])
    reader = readers[1]
    papers = calls.sent_delivery(reader, edition.pk).paper_ids
    assert papers

    view = client.get(reverse("digest:view_in_browser", args=[tokens.make_token(reader, tokens.VIEW, e=edition.pk)]))
    assert view.status_code == 200
    titles = dict(edition.papers.values_list("pk", "title"))
    assert all(titles[pid] in view.content.decode() for pid in papers)

    feed = client.get(reverse("digest:feed", args=[tokens.make_token(reader, tokens.FEED)]))
    assert feed.status_code == 200 and feed.content.decode().count("<entry>") == 1


def test_the_next_edition_leaves_out_papers_sent_in_a_call_not_yet_settled(esp_outbox, readers):
    first = built_edition()
    reader = readers[3]
    send_edition_to(first, [reader.pk])
    sent = set(calls.sent_delivery(reader, first.pk).paper_ids)

    assert sending.papers_already_sent([reader.pk], excluding_edition=None) == {reader.pk: sent}
    SendCall.objects.update(status="sending")  # still in flight: its papers count all the same
    assert sending.papers_already_sent([reader.pk], excluding_edition=None) == {reader.pk: sent}


def test_loading_readers_settles_the_finished_calls_of_other_editions(esp_outbox, readers):
    first = built_edition()
    send_edition_to(first, [r.pk for r in readers])
    second = built_edition("weekly", papers=[])
    assert second.pk != first.pk

    sending.load_readers(second, [r.pk for r in readers])
    assert not SendCall.objects.filter(settled_at__isnull=True).exists()
    assert set(Delivery.objects.filter(edition=first).values_list("status", flat=True)) == {"sent"}


def test_a_delivered_webhook_settles_the_call_of_its_delivery(esp_outbox, readers):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers[:2]])
    delivery = Delivery.objects.get(subscriber=readers[0])
    call = SendCall.objects.get()
    SendCall.objects.update(status="sending")  # the event arrived before the call's answer was recorded

    event = WebhookEvent.objects.create(
        event_id="e-1", esp="mailgun", event_type=AnymailTrackingEvent(event_type="delivered").event_type,
        recipient=readers[0].email, message_id=call.esp_message_id, occurred_at=timezone.now(),
        details={"metadata": {"delivery_id": str(delivery.pk)}},
    )
    apply_event(event.pk)

    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.delivered_at is not None and delivery.paper_ids
    assert delivery.reason == "settled by the ESP's webhook"  # its message id was never recorded
    assert Delivery.objects.get(subscriber=readers[1]).status == "sent"  # the whole call, once
    assert SendCall.objects.get().settled_at is not None


@pytest.mark.parametrize(("event_type", "status"), [("bounced", "bounced"), ("complained", "complained"),
                                                   ("unsubscribed", "unsubscribed")])
def test_a_bounce_complaint_or_unsubscribe_proves_an_unknown_call_was_taken(esp_outbox, readers, event_type, status):
    edition, ids = built_edition(), [r.pk for r in readers[:2]]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        send_edition_to(edition, ids)
    delivery = Delivery.objects.get(subscriber=readers[0])

    event = WebhookEvent.objects.create(
        event_id="e-stop", esp="mailgun", event_type=event_type, recipient=readers[0].email, message_id="",
        occurred_at=timezone.now(), details={"metadata": {"delivery_id": str(delivery.pk)}},
    )
    apply_event(event.pk)

    assert SendCall.objects.get().status == "sent"
    assert dict(Delivery.objects.values_list("subscriber_id", "status")) == {ids[0]: "sent", ids[1]: "sent"}
    assert Subscriber.objects.get(pk=ids[0]).status == status
    assert reconcile_stale_deliveries(timezone.now() + timedelta(hours=1)) == 0
    assert send_edition_to(edition, ids).sent == 0 and esp_outbox == []


def test_a_bounce_after_the_stale_sweep_settles_its_reader_as_sent(esp_outbox, readers):
    edition, ids = built_edition(), [r.pk for r in readers[:2]]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        send_edition_to(edition, ids)
    reconcile_stale_deliveries(timezone.now() + timedelta(hours=1))
    bounced = Delivery.objects.get(subscriber=readers[0])

    event = WebhookEvent.objects.create(
        event_id="e-stale-bounce", esp="mailgun", event_type="bounced", recipient=readers[0].email, message_id="",
        occurred_at=timezone.now(), details={"metadata": {"delivery_id": str(bounced.pk)}},
    )
    apply_event(event.pk)

    bounced.refresh_from_db()
    assert (bounced.status, bounced.reason) == ("sent", "settled by the ESP's webhook") and bounced.bounced_at
    assert Delivery.objects.get(subscriber=readers[1]).status == "failed"


def test_a_webhook_without_metadata_finds_the_delivery_by_its_calls_message_id(esp_outbox, readers):
    send_edition_to(built_edition(), [r.pk for r in readers[:2]])
    call = SendCall.objects.get()
    event = WebhookEvent.objects.create(
        event_id="e-2", esp="mailgun", event_type="opened", recipient=readers[1].email,
        message_id=f"<{call.esp_message_id}>", occurred_at=timezone.now(), details={},
    )
    apply_event(event.pk)
    delivery = Delivery.objects.get(subscriber=readers[1])
    assert delivery.opened_at is not None and delivery.status == "sent"


def test_requeue_settles_the_editions_calls_and_hands_out_only_readers_no_call_carries(esp_outbox, readers):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers[:3]])
    claim_deliveries(edition, [r.pk for r in readers[3:]])  # a chunk whose task was lost

    with mock.patch("digest.tasks.send_digest_chunk.delay") as enqueued:
        assert requeue_orphaned(edition, age_minutes=-1) == 2
    assert sorted(enqueued.call_args.args[1]) == sorted(r.pk for r in readers[3:])
    assert Delivery.objects.filter(status="sent").count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_for_a_claim_of_the_same_edition_in_progress_and_wins_no_one_it_took(readers):
    """The first claim has inserted its call and not committed yet when the second one starts:
    the edition's lock holds the second one until the first commits, so it sees that call."""
    if connections["default"].vendor != "postgresql":
        pytest.skip("concurrent claims need PostgreSQL")
    edition = built_edition()
    claim_deliveries(edition, [r.pk for r in readers])
    entries = [(pk, [1], {}) for pk in Delivery.objects.values_list("pk", flat=True)]
    inserted, release, won, errors = threading.Event(), threading.Event(), {}, []

    def claim():
        try:
            with transaction.atomic():
                won[threading.current_thread().name] = calls.claim_call(edition.pk, entries)[1]
                if threading.current_thread().name == "first":
                    inserted.set()
                    release.wait(10)  # the first claim's transaction stays open meanwhile
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    first = threading.Thread(target=claim, name="first")
    first.start()
    assert inserted.wait(10)
    second = threading.Thread(target=claim, name="second")
    second.start()
    second.join(1.0)
    release.set()
    first.join(10)
    second.join(10)
    assert errors == []
    assert len(won["first"]) == 5 and won["second"] == set()
    assert SendCall.objects.count() == 1


# --- What operators see while a call is not settled ---------------------------------


def test_the_days_counts_show_rows_at_their_calls_status(esp_outbox, readers):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers])
    in_flight = SendCall.objects.order_by("pk").first()
    SendCall.objects.filter(pk=in_flight.pk).update(status="sending")

    daily = next(s for s in dashboard.edition_statuses(timezone.now()) if s.edition == edition)
    assert daily.counts["sending"] == len(in_flight.delivery_ids)
    assert daily.counts["sent"] == 5 - len(in_flight.delivery_ids) and daily.counts["pending"] == 0


def test_the_dashboard_settles_every_finished_call_before_counting(esp_outbox, readers):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers])
    context = dashboard.dashboard_context()
    assert not SendCall.objects.filter(settled_at__isnull=True).exists()
    assert Delivery.objects.filter(edition=edition, status="sent").count() == 5
    assert [summary["sent"] for _, summary in context["rate_summaries"]] == [5, 5]


def test_the_deep_health_check_counts_carried_rows_and_calls_left_unsettled(esp_outbox, readers, client):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers])

    deliveries = client.get("/healthz/deep").json()["checks"]["deliveries"]
    assert deliveries["pending"] == 0 and deliveries["sent_24h"] == 5
    assert deliveries["calls_unsettled_overdue"] == 0

    SendCall.objects.update(finished_at=timezone.now() - timedelta(hours=1))
    deliveries = client.get("/healthz/deep").json()["checks"]["deliveries"]
    assert deliveries["calls_unsettled_overdue"] == 3 and "3 ESP calls not settled" in deliveries["problem"]
    assert deliveries["pending_overdue"] == 0


def test_the_deep_health_checks_day_figures_leave_out_carried_rows_claimed_before_the_day(esp_outbox, readers, client):
    """A call left unsettled for over a day (the sweep down; flagged on its own) carries rows
    claimed before the last 24 hours: they are not the day's sends."""
    send_edition_to(built_edition("weekly"), [r.pk for r in readers[2:]])
    edition = built_edition(papers=())
    send_edition_to(edition, [r.pk for r in readers[:2]])  # its reads settle the weekly edition's call
    a_day_and_more = timezone.now() - timedelta(hours=30)
    Delivery.objects.filter(edition=edition).update(created_at=a_day_and_more)
    SendCall.objects.filter(edition=edition).update(created_at=a_day_and_more, finished_at=a_day_and_more)
    assert SendCall.objects.filter(settled_at__isnull=True).get().edition == edition

    deliveries = client.get("/healthz/deep").json()["checks"]["deliveries"]
    assert deliveries["sent_24h"] == 3
    assert deliveries["pending"] == 0 and deliveries["pending_overdue"] == 0


def test_the_admin_shows_a_carried_row_as_its_call_says_and_lists_the_calls(esp_outbox, readers, admin_client):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers[:2]])
    delivery = Delivery.objects.get(subscriber=readers[0])
    titles = dict(edition.papers.values_list("pk", "title"))
    papers = calls.sent_delivery(readers[0], edition.pk).paper_ids

    email = admin_client.get(f"/admin/digest/delivery/{delivery.pk}/email/")
    assert email.status_code == 200 and all(titles[pid] in email.content.decode() for pid in papers)
    change = admin_client.get(f"/admin/digest/delivery/{delivery.pk}/change/").content.decode()
    assert "The email as sent" in change

    listed = admin_client.get("/admin/digest/sendcall/")
    assert listed.status_code == 200 and SendCall.objects.get().esp_message_id in listed.content.decode()


def test_the_admin_delivery_list_shows_rows_of_unsettled_calls_as_their_calls_say(esp_outbox, readers, admin_client):
    a_week_ago = timezone.now() - timedelta(days=7)
    earlier = EditionFactory(date=timezone.localdate(a_week_ago), built_at=a_week_ago)
    two_days_ago = timezone.now() - timedelta(days=2)
    Delivery.objects.create(subscriber=readers[0], edition=earlier, status="sent", sent_at=two_days_ago)
    Delivery.objects.create(subscriber=readers[2], edition=earlier, status="sent", sent_at=two_days_ago)
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers[:2]])
    assert set(Delivery.objects.filter(edition=edition).values_list("status", flat=True)) == {"pending"}

    deliveries = admin_client.get("/admin/digest/delivery/").context["cl"].result_list
    assert {(d.subscriber_id, d.edition_id): d.status for d in deliveries} == {
        (readers[0].pk, edition.pk): "sent", (readers[1].pk, edition.pk): "sent",
        (readers[0].pk, earlier.pk): "sent", (readers[2].pk, earlier.pk): "sent",
    }


def test_the_subscriber_export_settles_finished_calls_and_gives_their_send_time(esp_outbox, readers, admin_client):
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers[:2]])
    sent_at = SendCall.objects.get().finished_at

    response = admin_client.post(
        "/admin/subscriptions/subscriber/", {"action": "export_csv", "_selected_action": [r.pk for r in readers]}
    )
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}

    assert not SendCall.objects.filter(settled_at__isnull=True).exists()
    assert [rows[r.email]["last_delivery_at"] for r in readers] == [sent_at.isoformat()] * 2 + [""] * 3


def test_a_failed_row_of_a_settled_call_can_be_sent_again_once(esp_outbox, readers, mailoutbox):
    edition, reader = built_edition(), readers[0]
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        send_edition_to(edition, [reader.pk])
    reconcile_stale_deliveries(timezone.now() + timedelta(hours=1))
    delivery = Delivery.objects.get()
    assert delivery.status == "failed"

    assert resend_failed_delivery(delivery) is True  # an operator's choice: its outcome was unknown
    assert recipients(esp_outbox) == [reader.email]
    assert calls.sent_delivery(reader, edition.pk) is not None
    assert resend_failed_delivery(delivery) is False


def test_a_failed_row_still_listed_by_its_unsettled_call_is_really_sent_again(esp_outbox, readers, admin_client):
    """The ESP took the call but refused one reader's message: that row is failed at once while
    the call, not yet settled, still lists it. Resent then, it must reach the ESP, not be read
    (and later settled) as sent through the old call."""
    edition, refused = built_edition(), readers[0]
    send_for_real = AnymailTestBackend.post_to_esp

    def one_message_refused(backend, payload, message):
        response = send_for_real(backend, payload, message)
        response["recipient_status"][refused.email] = AnymailRecipientStatus(message_id=None, status="failed")
        return response

    with mock.patch.object(AnymailTestBackend, "post_to_esp", autospec=True, side_effect=one_message_refused):
        send_edition_to(edition, [r.pk for r in readers[:2]])
    delivery = Delivery.objects.get(subscriber=refused)
    assert delivery.status == "failed" and SendCall.objects.get().settled_at is None
    calls_before = len(esp_outbox)

    response = admin_client.post(
        "/admin/digest/delivery/", {"action": "resend_failed", "_selected_action": [delivery.pk]}, follow=True
    )
    reconcile_stale_deliveries()  # the beat's next sweep settles whatever is finished

    assert "1 delivery(ies) queued to be sent again" in response.content.decode()
    assert recipients(esp_outbox[calls_before:]) == [refused.email]
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.send_token != SendCall.objects.earliest("pk").token


def test_a_failed_row_listed_by_a_call_still_in_flight_is_not_resent(esp_outbox, readers):
    """Until the call that lists it has an answer, the row is refused: its outcome, once the
    call is settled, is not known yet."""
    edition, reader = built_edition(), readers[0]
    claim_deliveries(edition, [reader.pk])
    delivery = Delivery.objects.get()
    token, won = calls.claim_call(edition.pk, [(delivery.pk, [], {})])
    assert won == {delivery.pk}
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", reason="refused by the ESP")
    delivery.refresh_from_db()

    assert resend_failed_delivery(delivery) is False
    assert recipients(esp_outbox) == []
    delivery.refresh_from_db()
    assert delivery.status == "failed"


# --- The batch threads, with claims per call -----------------------------------------


def test_calls_are_claimed_made_and_recorded_in_batch_threads_on_the_senders_connection(esp_outbox, readers):
    seen = []
    record = calls.record_call_sent

    def recording(*args, **kwargs):
        seen.append((threading.current_thread() is threading.main_thread(), connections["default"]))
        return record(*args, **kwargs)

    with mock.patch.object(calls, "record_call_sent", side_effect=recording):
        assert send_edition_to(built_edition(), [r.pk for r in readers]).sent == 5

    assert len(seen) == 3 and not any(in_main for in_main, _ in seen)
    assert {id(database) for _, database in seen} == {id(connections["default"])}
    assert not connections["default"].allow_thread_sharing


def test_a_database_error_recording_a_call_reaches_the_task_and_the_call_is_never_resent(
    esp_outbox, readers, settings
):
    settings.DIGEST_ESP_CALLS_IN_FLIGHT = 1
    edition, ids = built_edition(), [r.pk for r in readers]
    with mock.patch.object(calls, "record_call_sent", side_effect=DatabaseError("connection lost")):
        with pytest.raises(DatabaseError):
            send_edition_to(edition, ids)

    assert len(esp_outbox) == 1 and not connections["default"].allow_thread_sharing
    assert SendCall.objects.get().status == "sending"  # outcome unknown: never resent
    assert send_edition_to(edition, ids).sent == 3
    assert recipients(esp_outbox) == sorted(r.email for r in readers)


def test_the_ledger_read_twice_through_one_queryset_shows_what_changed_between(esp_outbox, readers):
    with mock.patch.object(AnymailTestBackend, "post_to_esp", side_effect=timeout_error()):
        send_edition_to(built_edition(), [readers[0].pk])
    rows = Delivery.objects.all()
    assert [d.status for d in calls.effective(rows)] == ["sending"]
    reconcile_stale_deliveries(timezone.now() + timedelta(hours=1))
    assert [d.status for d in calls.effective(rows)] == ["failed"]


def test_rows_read_pending_before_their_call_was_settled_are_shown_as_settled(esp_outbox, readers):
    """The beat's sweep can commit between the read of the rows and the read of their calls: the
    rows are then pending and their call no longer live, and only the rows themselves say sent."""
    edition = built_edition()
    send_edition_to(edition, [r.pk for r in readers[:2]])
    read_before = list(Delivery.objects.filter(edition=edition).order_by("pk"))
    assert {d.status for d in read_before} == {"pending"}

    calls.settle_calls()

    shown = calls.effective(read_before)
    assert [d.status for d in shown] == ["sent", "sent"]
    assert [d.esp_message_id for d in shown] == [SendCall.objects.get().esp_message_id] * 2


def settling_around_the_read_of_pending_rows(when):
    """``calls.effective``, with the beat's sweep settling every call just ``before`` or ``after`` it reads."""
    real = calls.effective

    def effective(rows):
        if when == "before":
            calls.settle_calls()
        shown = real(rows)
        if when == "after":
            calls.settle_calls()
        return shown

    return mock.patch.object(calls, "effective", side_effect=effective)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_readers_sent_digests_are_listed_once_whenever_the_sweep_settles_their_call(esp_outbox, readers, when):
    reader = readers[0]
    send_edition_to(built_edition(), [reader.pk])
    assert Delivery.objects.get(subscriber=reader).status == "pending"

    with settling_around_the_read_of_pending_rows(when):
        listed = calls.sent_deliveries(reader, 10)

    assert [d.subscriber_id for d in listed] == [reader.pk]
    assert listed[0].status == "sent" and listed[0].esp_message_id == SendCall.objects.get().esp_message_id
    assert Delivery.objects.get(subscriber=reader).status == "sent"


def test_a_readers_admin_page_shows_their_latest_digests_as_their_calls_say(esp_outbox, readers, admin_client):
    edition = built_edition()
    send_edition_to(edition, [readers[0].pk])
    delivery = Delivery.objects.get(subscriber=readers[0])
    assert delivery.status == "pending" and SendCall.objects.get().settled_at is None
    url = reverse("admin:subscriptions_subscriber_change", args=[readers[0].pk])

    page = admin_client.get(url)
    shown = next(f.formset for f in page.context["inline_admin_formsets"] if f.formset.model is Delivery)
    assert [(form.instance.pk, form.instance.status) for form in shown.forms] == [(delivery.pk, "sent")]
    assert shown.forms[0].instance.sent_at == SendCall.objects.get().finished_at

    saved = admin_client.post(url, {
        "interests": readers[0].interests, "frequency": readers[0].frequency, "max_papers": readers[0].max_papers,
        "send_hour": readers[0].send_hour, "timezone": readers[0].timezone,
        "deliveries-TOTAL_FORMS": "1", "deliveries-INITIAL_FORMS": "1", "deliveries-0-id": str(delivery.pk),
        "deliveries-0-subscriber": str(readers[0].pk), "feedback-TOTAL_FORMS": "0", "feedback-INITIAL_FORMS": "0",
    })
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert Delivery.objects.get(pk=delivery.pk).status == "pending"  # shown as its call says, never written


def test_a_calls_papers_are_written_as_json_that_settling_reads_back_whatever_the_why_lines_say():
    entries = [
        (7, [3, 1, 2], {"matches your interests: diffusion \u25b2 \U0001f680": [3, 1], 'says "hi" \\ back': [2]}),
        (12, [], {}),
    ]

    assert json.loads(calls.papers_text(entries)) == {
        "7": [[3, 1, 2], {"matches your interests: diffusion \u25b2 \U0001f680": [3, 1], 'says "hi" \\ back': [2]}],
        "12": [[], {}],
    }


@pytest.mark.parametrize("claims_per_call", [True, False])
def test_a_chunk_that_names_a_claimed_reader_twice_sends_them_one_digest(claims_per_call, readers, settings):
    settings.DIGEST_CLAIMS_PER_CALL = claims_per_call
    edition, ids = built_edition(), [r.pk for r in readers]
    claim_deliveries(edition, ids)  # as the tick claims a chunk before handing it out

    report = send_edition_to(edition, ids[:2] + ids + ids[:2])

    assert report.sent == 5
    assert sorted(m.to[0] for m in mail.outbox) == sorted(r.email for r in readers)
