"""How a tick's due readers are cut into send tasks: whole tasks, a small first one and a tail
cut down so that the workers finish together."""

from datetime import UTC, datetime
from unittest import mock

import pytest
import time_machine

from digest import services, tasks
from digest.models import Delivery
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory


def sizes(n, size=5000, smallest=500):
    return [len(chunk) for chunk in services.send_task_chunks(range(n), size, smallest)]


def test_every_id_goes_out_once_and_in_order():
    for n in (0, 1, 499, 500, 501, 3000, 9999, 10000, 10001, 12345, 100000):
        chunks = list(services.send_task_chunks(range(n), 5000, 500))
        assert [pk for chunk in chunks for pk in chunk] == list(range(n))


def test_the_first_task_is_the_smallest_and_no_task_is_larger_than_the_batch_size():
    assert sizes(100000)[:3] == [500, 5000, 5000]
    assert max(sizes(12345)) == 5000
    assert min(sizes(100000)) >= 500


def test_the_last_two_tasks_are_halved_down_to_the_smallest():
    assert sizes(100000)[-6:] == [5000, 4750, 2375, 1187, 594, 594]
    assert sizes(10500) == [500, 5000, 2500, 1250, 625, 625]
    assert sizes(3000) == [500, 1250, 625, 625]


def test_a_batch_size_too_small_to_cut_keeps_whole_tasks():
    assert sizes(7, size=2, smallest=500) == [2, 2, 2, 1]
    assert sizes(10000, size=1000, smallest=500) == [1000] * 10


def test_at_most_two_tasks_are_held_while_the_ids_stream():
    read = []

    def streamed(n):
        for pk in range(n):
            read.append(pk)
            yield pk

    chunks = services.send_task_chunks(streamed(100000), 5000, 500)
    next(chunks), next(chunks)
    assert len(read) <= 500 + 3 * 5000


@pytest.mark.django_db
def test_a_tick_publishes_its_readers_in_tasks_cut_as_above(settings):
    settings.DIGEST_SEND_BATCH_SIZE, settings.DIGEST_SEND_MIN_BATCH_SIZE = 8, 2
    with time_machine.travel(datetime(2026, 11, 18, 6, 0, tzinfo=UTC), tick=False):
        edition = built_edition("daily")
    readers = SubscriberFactory.create_batch(21, timezone="Europe/London", send_hour=7, interests="")
    published = []

    with mock.patch.object(tasks.send_digest_chunk, "delay", lambda edition_id, chunk: published.append(chunk)):
        with time_machine.travel(datetime(2026, 11, 18, 7, 15, tzinfo=UTC), tick=False):
            assert services.enqueue_due_digests() == 21

    assert [len(chunk) for chunk in published] == [2, 8, 5, 3, 3]
    assert sorted(pk for chunk in published for pk in chunk) == sorted(r.pk for r in readers)
    assert Delivery.objects.filter(edition=edition, status="pending").count() == 21


@pytest.mark.django_db
def test_a_reader_who_deleted_their_data_after_the_chunk_was_claimed_does_not_stop_the_others(mailoutbox):
    """Their pending row went with them; the task must not claim them again (a foreign key
    error that failed the whole chunk, and every retry of it)."""
    from digest.sending import claim_deliveries
    from subscriptions import services as subscription_services

    edition = built_edition()
    readers = SubscriberFactory.create_batch(3, interests="")
    ids = [r.pk for r in readers]
    claim_deliveries(edition, ids)  # as the beat's enqueue_due_digests does before handing the chunk out
    subscription_services.delete_subscriber(readers[1])

    result = tasks.send_digest_chunk.apply(args=(edition.pk, ids))

    assert result.successful(), result.traceback
    assert sorted(m.to[0] for m in mailoutbox) == sorted([readers[0].email, readers[2].email])
    assert list(Delivery.objects.values_list("status", flat=True)) == ["sent", "sent"]


@pytest.mark.django_db
def test_a_send_task_for_an_edition_deleted_while_it_waited_ends_quietly(mailoutbox, caplog):
    """An edition nobody was sent yet may be deleted (and built again) while its chunks are queued."""
    from digest.sending import claim_deliveries

    edition = built_edition()
    readers = SubscriberFactory.create_batch(2, interests="")
    claim_deliveries(edition, [r.pk for r in readers])
    edition_id = edition.pk
    assert services.delete_unsent_edition(edition)

    result = tasks.send_digest_chunk.apply(args=(edition_id, [r.pk for r in readers]))

    assert result.successful() and result.result["sent"] == 0 and mailoutbox == []
    assert f"digest chunk dropped, its edition is gone edition={edition_id} readers=2" in caplog.messages
