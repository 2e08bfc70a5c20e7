"""``config.paging.in_pages``: large querysets read a page at a time, each page its own query."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.paging import in_pages
from digest.models import Delivery
from subscriptions.models import Subscriber
from tests.factories import EditionFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def test_every_row_comes_once_in_key_order_a_query_per_page():
    readers = SubscriberFactory.create_batch(5)
    newest_first = Subscriber.objects.order_by("-created_at")

    with CaptureQueriesContext(connection) as queries:
        read = list(in_pages(newest_first, size=2))

    assert [r.pk for r in read] == sorted(r.pk for r in readers)
    assert len(queries) == 3  # 2 + 2 + 1 rows; a short page is the last


def test_a_full_last_page_costs_one_more_query_to_find_the_end():
    SubscriberFactory.create_batch(4)
    with CaptureQueriesContext(connection) as queries:
        assert len(list(in_pages(Subscriber.objects.all(), size=2))) == 4
    assert len(queries) == 3


def test_each_page_starts_after_the_last_key_of_the_page_before():
    edition = EditionFactory()
    readers = sorted(SubscriberFactory.create_batch(3), key=lambda r: r.pk)
    for reader in reversed(readers):  # delivery ids in the opposite order of the readers'
        Delivery.objects.create(edition=edition, subscriber=reader)

    with CaptureQueriesContext(connection) as queries:
        read = list(in_pages(Delivery.objects.filter(edition=edition), by="subscriber_id", size=2))

    assert [d.subscriber_id for d in read] == [r.pk for r in readers]
    assert f'"subscriber_id" > {readers[1].pk}' in queries[1]["sql"]


def test_a_row_added_ahead_of_the_pages_meanwhile_is_read():
    SubscriberFactory.create_batch(2)
    pages = in_pages(Subscriber.objects.all(), size=2)
    first = [next(pages), next(pages)]
    ahead = SubscriberFactory()

    assert [r.pk for r in first] + [r.pk for r in pages] == sorted(r.pk for r in (*first, ahead))
