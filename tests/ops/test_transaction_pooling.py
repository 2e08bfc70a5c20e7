"""Paperboy behind PgBouncer in transaction pooling.

Large deployments put PgBouncer between many worker processes and PostgreSQL, pooling by
transaction: each transaction of a client may run on another server session. The
PgBouncer started here hands its two server connections out in turn, so that whatever
leans on one session from one transaction to the next fails every time: the beat's tick
(due readers, claims, the hand-out of orphaned rows), the sends, the site (a one-click
unsubscribe) and the operators' CSV export must not.
"""

import csv
import io
from contextlib import contextmanager
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import psycopg
import pytest
from django.db import DatabaseError, connection
from django.urls import reverse
from django.utils import timezone

from digest.models import Delivery
from digest.sending import claim_deliveries
from subscriptions.models import Subscriber
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory
from tests.ops.audience import addresses, make_audience
from tests.ops.stack import Stack, wait_until
from tests.ops.test_production_day import outbox_recipients
from tests.ops.test_smtp_delivery import unsubscribe_url_of

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@contextmanager
def connected_through(pgbouncer):
    """The test's own Django connection goes through ``pgbouncer`` until the block ends."""
    connection.close()
    direct_port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = str(pgbouncer.port)
    pgbouncer.fill_pool(connection.settings_dict["NAME"])
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = direct_port


def outbox_messages(outbox_dir):
    return [message_from_bytes(path.read_bytes(), policy=default_policy) for path in sorted(outbox_dir.glob("*.eml"))]


def lose_the_task_of(edition, readers):
    """Claim ``readers``' deliveries as a tick does, 20 minutes ago, and never send them."""
    claim_deliveries(edition, [reader.pk for reader in readers])
    Delivery.objects.filter(subscriber__in=readers).update(created_at=timezone.now() - timedelta(minutes=20))


def test_this_pgbouncer_runs_each_transaction_on_the_other_server_session(pgbouncer):
    """What makes the other tests mean something: a held cursor cannot survive it."""
    SubscriberFactory()
    with connected_through(pgbouncer), connection.cursor() as cursor:
        sessions = []
        for _ in range(4):
            cursor.execute("SELECT pg_backend_pid()")
            sessions.append(cursor.fetchone()[0])
        with pytest.raises((DatabaseError, psycopg.Error), match=r"(cursor|portal) .* does not exist"):
            list(Subscriber.objects.order_by("pk").iterator(chunk_size=1))

    assert sessions[0] == sessions[2] != sessions[1] == sessions[3]


def test_the_subscriber_export_reads_every_reader_through_transaction_pooling(pgbouncer, admin_client):
    readers = Subscriber.objects.bulk_create(
        SubscriberFactory.build(email=f"export{n}@example.org") for n in range(1201)  # pages of 500
    )
    sent_at = timezone.now() - timedelta(hours=3)
    Delivery.objects.create(subscriber=readers[700], edition=built_edition(), status="sent", sent_at=sent_at)

    with connected_through(pgbouncer):
        response = admin_client.post(
            reverse("admin:subscriptions_subscriber_changelist"),
            {"action": "export_csv", "select_across": "1", "_selected_action": [readers[0].pk]},
        )
        exported = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    assert [row["email"] for row in exported] == [reader.email for reader in readers]
    assert exported[700]["last_delivery_at"] == sent_at.isoformat()
    assert {row["last_delivery_at"] for row in exported[:700] + exported[701:]} == {""}


@pytest.fixture
def pooled_stack(transactional_db, pgbouncer, test_database_url, redis_url, tmp_path):
    """The production processes with their database connections through ``pgbouncer``."""
    dbname = test_database_url.rsplit("/", 1)[1]
    pgbouncer.fill_pool(dbname)
    running = Stack(tmp_path, pgbouncer.url(dbname), redis_url)
    yield running
    running.end_all()


@pytest.mark.redis
@pytest.mark.celery_worker
def test_beat_workers_and_site_through_transaction_pooling_send_each_reader_one_digest(pooled_stack):
    readers, not_due = make_audience()
    lost = [reader for reader in readers if reader.frequency == "daily"][:2]
    lose_the_task_of(built_edition(), lost)
    pooled_stack.start_worker("worker", concurrency=2)
    pooled_stack.start_beat(2)

    all_sent = wait_until(lambda: Delivery.objects.filter(status="sent").count() == len(readers), 60)
    assert all_sent, pooled_stack.logs()
    assert outbox_recipients(pooled_stack.outbox_dir) == addresses(readers)
    assert Delivery.objects.count() == len(readers)
    assert not Delivery.objects.filter(subscriber__in=not_due).exists()
    assert "does not exist" not in pooled_stack.logs()

    pooled_stack.start_web()
    leaving = outbox_messages(pooled_stack.outbox_dir)[0]
    one_click = pooled_stack.post(unsubscribe_url_of(leaving), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert Subscriber.objects.get(email__iexact=leaving["To"]).status == "unsubscribed"
