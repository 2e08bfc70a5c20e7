"""Rows of a send chunk become model instances as ``Model.from_db`` makes them."""

import pytest
from django.db.models.signals import post_init

from digest.sending import READER_FIELDS, instance_loader
from subscriptions.models import Subscriber
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

FIELDS = ("id", *READER_FIELDS)


def values_of(subscriber):
    return [getattr(subscriber, name) for name in FIELDS]


def test_a_loaded_instance_is_the_instance_from_db_makes():
    subscriber = SubscriberFactory(interests="diffusion, agents", categories=["cs.LG"])
    reference = Subscriber.from_db("default", FIELDS, values_of(subscriber))

    fast = instance_loader(Subscriber, "default", FIELDS)(values_of(subscriber))

    assert type(fast) is Subscriber
    assert {k: v for k, v in vars(fast).items() if k != "_state"} == {
        k: v for k, v in vars(reference).items() if k != "_state"
    }
    assert fast.get_deferred_fields() == reference.get_deferred_fields() != set()
    assert (fast._state.adding, fast._state.db) == (False, "default")
    assert fast == subscriber and fast.pk == subscriber.pk


def test_a_deferred_field_of_a_loaded_instance_is_read_from_the_database_and_it_saves():
    subscriber = SubscriberFactory(frequency=Subscriber.Frequency.WEEKLY)
    fast = instance_loader(Subscriber, "default", FIELDS)(values_of(subscriber))

    assert fast.frequency == Subscriber.Frequency.WEEKLY
    fast.max_papers = 3
    fast.save(update_fields=["max_papers"])
    subscriber.refresh_from_db()
    assert subscriber.max_papers == 3


def test_with_an_init_signal_receiver_instances_go_through_from_db():
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    subscriber = SubscriberFactory()
    post_init.connect(receiver, sender=Subscriber)
    try:
        fast = instance_loader(Subscriber, "default", FIELDS)(values_of(subscriber))
    finally:
        post_init.disconnect(receiver, sender=Subscriber)

    assert seen == [fast]


@pytest.mark.parametrize("vendor", ["postgresql", "other"])
def test_a_chunks_deliveries_hold_their_reader_and_edition_without_another_query(
    vendor, monkeypatch, django_assert_num_queries
):
    from digest.models import Delivery
    from digest.sending import claim_deliveries, db_connection, pending_deliveries
    from tests.digest.builders import built_edition

    monkeypatch.setattr(db_connection, "vendor", vendor)
    edition = built_edition()
    readers = SubscriberFactory.create_batch(3)
    claim_deliveries(edition, [r.pk for r in readers])
    deliveries = pending_deliveries(edition, [r.pk for r in readers])

    with django_assert_num_queries(0):
        held = [(d.subscriber, d.subscriber_id, d.subscriber.email, d.edition, d.edition_id) for d in deliveries]
    stored = Delivery.objects.filter(edition=edition).select_related("subscriber").order_by("pk")
    assert held == [(d.subscriber, d.subscriber_id, d.subscriber.email, edition, edition.pk) for d in stored]
    assert all(d.edition is edition for d in deliveries)
