"""The Procfile, run by honcho as an operator would: web, worker and beat together."""

import signal

import pytest

from digest.models import Delivery
from tests.factories import SubscriberFactory
from tests.ops.stack import ROOT, wait_until

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
def test_honcho_runs_web_worker_and_beat_from_the_procfile_and_stops_them_cleanly(stack):
    subscriber = SubscriberFactory(interests="")
    honcho = stack.start_honcho(
        "web", "worker", "beat", BEAT_INTERVAL_SECONDS=3, WEB_CONCURRENCY=1, WORKER_CONCURRENCY=1
    )

    site_up = wait_until(lambda: stack.site_answers() or not honcho.running, 40)
    workers = wait_until(lambda: stack.workers_answering(), 30)
    deep = stack.get("/healthz/deep", timeout=15).json()
    sent = wait_until(lambda: Delivery.objects.filter(subscriber=subscriber, status="sent").exists(), 40)
    exit_code, stopped_in_time = honcho.stop(signal.SIGTERM, timeout=30)

    log = honcho.log()
    assert site_up, log[-3000:]
    assert workers, log[-3000:]
    assert deep["checks"]["workers"]["consumers"] == {"default": 1, "fetch": 1, "send": 1}
    assert sent, log[-3000:]  # beat fired the daily job, the worker sent the digest
    assert stopped_in_time and not honcho.group_alive(), log[-3000:]
    assert not stack.site_answers()
    for process_type in ("web.1", "worker.1", "beat.1"):
        assert f"{process_type} started" in log and f"{process_type} stopped" in log
    assert "celerybeat-schedule" not in {path.name for path in ROOT.iterdir()}  # beat keeps state in VAR_DIR
