"""A worker outlives a Redis outage of a few seconds while it holds a task.

A send task waiting for its retry (an ESP's 429 or 5xx), or one running when Redis
goes away, is a message the worker has taken and not yet acknowledged. When the
connection drops, the worker puts such messages back on the queue before it
reconnects; with Redis still down that fails. The worker must then keep trying
to reconnect, as it does when it holds nothing, not exit: a failover or restart
of Redis during the morning's send would otherwise end every worker at once
(under honcho, the whole Procfile with them).
"""

import time

import pytest
from celery import Celery

from tests.ops.stack import wait_until

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

OUTAGE_SECONDS = 3


def outline(log, lines=15):
    """The last ``lines`` lines of a worker's log, each cut short (tracebacks are folded onto
    their line)."""
    return "\n".join(line[:300] for line in log.splitlines()[-lines:])


@pytest.mark.django_db(transaction=True)
def test_a_worker_holding_a_task_reconnects_after_redis_was_down_for_seconds(stack, redis_server):
    worker = stack.start_worker(concurrency=1)
    assert wait_until(lambda: stack.workers_answering(), 30), worker.log()
    # A task the worker takes and holds, unacknowledged, until its countdown ends:
    # what a send task waiting for its retry is.
    stack.send_task("digest.tasks.refresh_dashboard_figures", countdown=600)
    assert wait_until(lambda: "refresh_dashboard_figures" in worker.log(), 15), worker.log()

    redis_server.stop(keep_dir=True)
    time.sleep(OUTAGE_SECONDS)
    redis_server.start()

    assert wait_until(lambda: stack.workers_answering(), 45), outline(worker.log())
    assert worker.running, outline(worker.log())
    assert "Unrecoverable error" not in worker.log()


def test_a_broker_client_made_after_a_redis_restart_connects_afresh(redis_server):
    """kombu pools broker connections per URL for the whole process: a later test's client of
    the same URL must not be handed one that the restart closed (``RedisServer.stop``)."""
    url = redis_server.url(14)

    def ping():
        with Celery("restart-check", broker=url) as client:
            return client.control.ping(timeout=0.3)

    ping()
    redis_server.restart()

    assert ping() == []  # no worker listens: an answer, not "Connection closed by server"
