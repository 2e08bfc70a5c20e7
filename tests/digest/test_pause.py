"""The operator's switch that pauses all digest sending: the beat's tick enqueues nothing, a
running send task stops before its next block of readers and is not retried, an operator's
sends are refused, and after the resume each reader still due gets the edition exactly once."""

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from digest import pause, sending, services
from digest.models import Delivery, SwitchTurn
from digest.sending import claim_deliveries, send_edition_to
from digest.tasks import send_digest_chunk
from tests import ledger
from tests.digest.builders import built_edition
from tests.digest.esp_answers import params
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def at(*args):
    return datetime(*args, tzinfo=UTC)


def paused(reason="a broken edition"):
    return pause.pause_sending("alice", reason)[0]


def switch_queries(queries):
    return [q["sql"] for q in queries.captured_queries if '"digest_sendingpause"' in q["sql"]]


@pytest.fixture
def blocks_of_two(monkeypatch):
    """A task's readers read two at a time, and sent one by one in groups of two."""
    monkeypatch.setattr(sending, "READ_BLOCK_SIZE", 2)
    monkeypatch.setattr(sending, "ONE_BY_ONE_GROUP", 2)


def pausing_once_after(function):
    """``function``, and an operator pausing sending the first time it is called."""
    calls = []

    def run(*args, **kwargs):
        result = function(*args, **kwargs)
        calls.append(args)
        if len(calls) == 1:
            paused()
        return result

    return run


@pytest.fixture
def pausing_during_the_first_message(monkeypatch):
    """An operator pauses sending while the task's first message is being sent."""
    monkeypatch.setattr(sending, "send_one", pausing_once_after(sending.send_one))


@pytest.fixture
def pausing_after_the_first_block(monkeypatch):
    """An operator pauses sending once the task has read its first block of readers."""
    monkeypatch.setattr(sending, "pending_deliveries", pausing_once_after(sending.pending_deliveries))


# --- The switch ---------------------------------------------------------------


def test_pausing_records_who_when_and_why_and_a_second_pause_keeps_the_first():
    first, paused_now = pause.pause_sending("alice", "  a broken edition ")
    again, paused_again = pause.pause_sending("bob", "something else")

    assert paused_now and not paused_again
    assert (again.paused_by, again.reason, again.paused_at) == ("alice", "a broken edition", first.paused_at)
    assert pause.current_pause() == first and pause.sending_paused()


def test_resuming_turns_sending_back_on_once_and_remembers_who():
    paused()

    switch, resumed = pause.resume_sending("bob")

    assert resumed and not pause.resume_sending("carol")[1]
    assert (switch.paused, switch.resumed_by) == (False, "bob")
    assert pause.current_pause() is None and not pause.sending_paused()


def test_a_pause_needs_a_reason():
    with pytest.raises(ValueError, match="say why"):
        pause.pause_sending("alice", "   ")
    assert not pause.sending_paused()


def turns():
    return [(t.paused, t.by, t.via, t.reason) for t in reversed(pause.recent_turns(100))]


def test_each_turn_that_changes_the_switch_is_kept_with_who_where_and_why_and_no_other():
    with time_machine.travel(at(2026, 11, 18, 6, 5), tick=False):
        switch = pause.pause_sending("alice", " a broken edition ", via=SwitchTurn.Via.ADMIN)[0]
    with time_machine.travel(at(2026, 11, 18, 6, 10), tick=False):
        pause.pause_sending("bob", "me too")
    with time_machine.travel(at(2026, 11, 18, 7, 0), tick=False):
        pause.resume_sending("carol", via=SwitchTurn.Via.COMMAND_LINE)
        pause.resume_sending("dave")

    assert turns() == [
        (True, "alice", "admin", "a broken edition"),
        (False, "carol", "command line", ""),
    ]
    assert [t.at for t in pause.recent_turns()] == [at(2026, 11, 18, 7, 0), switch.paused_at]
    assert pause.recent_turns(1)[0].by == "carol"


def test_a_refused_pause_records_no_turn():
    with pytest.raises(ValueError):
        pause.pause_sending("alice", " ")

    assert turns() == []


# --- The beat's tick --------------------------------------------------------------


def test_a_paused_tick_claims_and_enqueues_nothing_but_still_reconciles_stale_sends(mailoutbox, caplog, settings):
    edition = built_edition()
    SubscriberFactory.create_batch(3, interests="")
    stale = Delivery.objects.create(subscriber=SubscriberFactory(status="unsubscribed"), edition=edition,
                                    status="sending", sending_at=timezone.now() - timedelta(hours=2))
    paused()

    with mock.patch("digest.tasks.send_digest_chunk.delay") as enqueued, caplog.at_level(logging.INFO):
        assert services.enqueue_due_digests() == 0

    assert not enqueued.called and mailoutbox == []
    assert list(Delivery.objects.values_list("pk", flat=True)) == [stale.pk]  # nobody claimed
    stale.refresh_from_db()
    assert stale.status == "failed"  # the housekeeping still ran
    said = [r.getMessage() for r in caplog.records if "not enqueued" in r.getMessage()]
    assert said == ["due digests not enqueued: digest sending paused since "
                    f"{timezone.localtime(pause.current_pause().paused_at):%a %d %b %H:%M} by alice (a broken edition)"]


def test_after_the_resume_the_ticks_send_each_reader_still_due_exactly_once(mailoutbox, blocks_of_two,
                                                                            pausing_during_the_first_message):
    with time_machine.travel(at(2026, 11, 18, 6, 0), tick=False):
        edition = built_edition("daily")
    readers = SubscriberFactory.create_batch(5, timezone="Europe/London", send_hour=7, interests="")

    with time_machine.travel(at(2026, 11, 18, 7, 15), tick=False):
        services.enqueue_due_digests()  # its task stops before its second block, not retried
    halfway = [m.to[0] for m in mailoutbox]
    latecomer = SubscriberFactory(timezone="Europe/London", send_hour=7, interests="")
    with time_machine.travel(at(2026, 11, 18, 7, 30), tick=False):
        assert services.enqueue_due_digests() == 0
    assert len(mailoutbox) == 2 and not latecomer.deliveries.exists()

    pause.resume_sending("bob")
    with time_machine.travel(at(2026, 11, 18, 7, 45), tick=False):
        services.enqueue_due_digests()
    with time_machine.travel(at(2026, 11, 18, 8, 0), tick=False):
        assert services.enqueue_due_digests() == 0

    assert halfway == [readers[0].email, readers[1].email]  # the first block's group, both of it
    everyone = [r.email for r in readers] + [latecomer.email]
    assert Counter(m.to[0] for m in mailoutbox) == Counter(everyone)
    assert set(Delivery.objects.filter(edition=edition).values_list("status", flat=True)) == {"sent"}


# --- A send task already running ----------------------------------------------------


def test_a_task_one_by_one_stops_before_its_next_block_and_the_rest_stays_pending(mailoutbox, blocks_of_two,
                                                                                  pausing_during_the_first_message):
    edition = built_edition()
    readers = SubscriberFactory.create_batch(5, interests="")
    claim_deliveries(edition, [r.pk for r in readers])

    report = send_edition_to(edition, [r.pk for r in readers])  # no TransientSendError: no retry

    assert report.paused and report.sent == 2 and report.transient == []
    assert [m.to[0] for m in mailoutbox] == [readers[0].email, readers[1].email]
    statuses = dict(Delivery.objects.values_list("subscriber_id", "status"))
    assert [statuses[r.pk] for r in readers] == ["sent", "sent", "pending", "pending", "pending"]
    assert Delivery.objects.filter(status="pending", attempts=0).count() == 3  # never claimed


@pytest.mark.parametrize("per_call", [False, True], ids=["claims-per-row", "claims-per-call"])
def test_a_task_sending_batches_stops_before_its_next_block_and_resumed_sends_no_one_twice(
    batch_outbox, readers, blocks_of_two, pausing_after_the_first_block, settings, per_call
):
    settings.DIGEST_CLAIMS_PER_CALL = per_call
    edition = built_edition()
    ids = [r.pk for r in readers]
    claim_deliveries(edition, ids)  # as the tick claims them

    report = send_edition_to(edition, ids)
    first = [to.addr_spec for m in batch_outbox for to in params(m)["to"]]
    while_paused = send_edition_to(edition, ids)

    assert report.paused and report.sent == 2 and first == [readers[0].email, readers[1].email]
    assert while_paused.paused and while_paused.sent == 0 and len(batch_outbox) == 1
    assert [ledger.of(r).status for r in readers] == ["sent", "sent", "pending", "pending", "pending"]

    pause.resume_sending("bob")
    assert send_edition_to(edition, ids).sent == 3
    send_edition_to(edition, ids)
    recipients = Counter(to.addr_spec for m in batch_outbox for to in params(m)["to"])
    assert recipients == Counter(r.email for r in readers)


def test_a_batch_composed_before_the_pause_but_not_yet_handed_over_is_never_made(
    batch_outbox, readers, blocks_of_two, pausing_after_the_first_block, settings
):
    """Batches of three across blocks of two: the first block's two readers wait in a batch for
    the next block, which the pause stops; their batch is never claimed nor posted."""
    settings.DIGEST_ESP_BATCH_LIMIT = 3
    edition = built_edition()
    claim_deliveries(edition, [r.pk for r in readers])

    report = send_edition_to(edition, [r.pk for r in readers])

    assert report.paused and report.sent == 0 and batch_outbox == []
    assert list(Delivery.objects.values_list("status", "attempts")) == [("pending", 0)] * 5


def test_the_switch_is_asked_once_per_block_of_readers_never_per_reader(mailoutbox, monkeypatch):
    monkeypatch.setattr(sending, "READ_BLOCK_SIZE", 2)
    edition = built_edition()
    readers = SubscriberFactory.create_batch(5, interests="")

    with CaptureQueriesContext(connection) as queries:
        assert send_edition_to(edition, [r.pk for r in readers]).sent == 5

    assert len(switch_queries(queries)) == 3  # blocks of 2, 2 and 1


def test_a_task_that_starts_while_paused_sends_nothing_and_is_not_retried(mailoutbox):
    edition = built_edition()
    readers = SubscriberFactory.create_batch(2, interests="")
    claim_deliveries(edition, [r.pk for r in readers])
    paused()

    with CaptureQueriesContext(connection) as queries:
        result = send_digest_chunk.apply(args=(edition.pk, [r.pk for r in readers]))

    assert result.successful() and result.get() == {"sent": 0, "skipped": 0, "failed": 0, "paused": True}
    assert mailoutbox == [] and set(Delivery.objects.values_list("status", flat=True)) == {"pending"}
    assert not [q for q in queries.captured_queries if '"digest_delivery"' in q["sql"]]  # it stopped first


# --- An operator's own sends ------------------------------------------------------------


def test_sending_one_reader_their_digest_now_is_refused_while_paused(mailoutbox):
    built_edition()
    reader = SubscriberFactory(interests="")
    paused()

    with pytest.raises(pause.SendingPaused, match=r"paused since .* by alice \(a broken edition\); resume it"):
        services.send_digest_now(reader)

    assert mailoutbox == [] and not Delivery.objects.exists()


def test_a_preview_email_is_refused_while_paused(mailoutbox):
    built_edition()
    paused()

    with pytest.raises(pause.SendingPaused):
        services.send_preview_digest(SubscriberFactory(interests=""))
    assert mailoutbox == []


def test_a_failed_delivery_is_not_resent_while_paused(mailoutbox):
    edition = built_edition()
    failed = Delivery.objects.create(subscriber=SubscriberFactory(interests=""), edition=edition, status="failed")
    paused()

    with mock.patch("digest.tasks.send_digest_chunk.delay") as enqueued:
        with pytest.raises(pause.SendingPaused):
            services.resend_failed_delivery(failed)

    failed.refresh_from_db()
    assert failed.status == "failed" and not enqueued.called and mailoutbox == []
