"""The whole day on the production stack.

PostgreSQL, Redis, a real ``celery beat`` firing the daily job, one worker on
the default and fetch queues and two more on the send queue (as if on other
machines), the paper sources served from recorded responses, and the
embedded outbox as the mail transport. Beat fires the daily job again and
again: nobody may get a second email.
"""

from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import parseaddr

import pytest

from digest.models import Delivery, Edition
from papers.models import FetchRun, Paper
from tests.ops.audience import addresses, make_audience
from tests.ops.conftest import sources_env
from tests.ops.stack import wait_until

BEAT_SECONDS = 3
SEND_TASK_RECEIVED = "Task digest.tasks.send_digest_chunk["

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]


def outbox_recipients(outbox_dir):
    recipients = []
    for path in sorted(outbox_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=default_policy)
        recipients.append(parseaddr(message["To"])[1].lower())
    return sorted(recipients)


def daily_job_runs():
    return FetchRun.objects.filter(source="hf", status=FetchRun.Status.OK).count()


@pytest.mark.django_db(transaction=True)
def test_beat_workers_and_sources_deliver_one_digest_to_each_active_subscriber(stack, recorded_sources):
    readers, not_due = make_audience()
    stack.configure(**sources_env(recorded_sources), DIGEST_SEND_BATCH_SIZE=2)
    stack.start_worker("pipeline", queues="default,fetch", concurrency=1)
    stack.start_worker("sender1", queues="send", concurrency=1)
    stack.start_worker("sender2", queues="send", concurrency=1)
    stack.start_beat(BEAT_SECONDS)

    all_sent = wait_until(lambda: Delivery.objects.filter(status="sent").count() == len(readers), 60)
    assert all_sent, stack.logs()
    # The third run's fetch means the second run's enqueue is done (one pipeline process).
    assert wait_until(lambda: daily_job_runs() >= 3, 30), f"beat stopped firing the job\n{stack.logs()}"

    assert outbox_recipients(stack.outbox_dir) == addresses(readers)
    assert Delivery.objects.count() == len(readers)
    assert not Delivery.objects.filter(subscriber__in=not_due).exists()
    assert recorded_sources.requests_under("/api/daily_papers")
    assert recorded_sources.requests_under("/rss/cs.LG+")
    assert set(FetchRun.objects.values_list("source", "status").distinct()) == {("hf", "ok"), ("arxiv-rss", "ok")}
    assert Paper.objects.filter(arxiv_id="2501.08001").exists()  # from the recorded HF response
    assert Edition.objects.filter(entries__paper__arxiv_id="2501.09001").exists()  # from the RSS feed
    pipeline, *senders = stack.processes[:3]
    assert SEND_TASK_RECEIVED in "".join(sender.log() for sender in senders)
    assert SEND_TASK_RECEIVED not in pipeline.log()
