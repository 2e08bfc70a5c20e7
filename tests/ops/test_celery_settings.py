"""Celery is configured for production: JSON, late acks, one prefetched task,
time limits, separate fetch and send queues, and one beat schedule."""

from celery.schedules import crontab

from config.celery_app import app, configure_beat_schedule
from digest import tasks


def route_of(task_name):
    return app.amqp.router.route({}, task_name)["queue"].name


def test_tasks_are_serialised_as_json_only():
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]


def test_workers_take_one_task_at_a_time_and_acknowledge_it_when_done():
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    for task in (tasks.run_daily_job, tasks.enqueue_due_digests, tasks.send_digest_chunk):
        assert task.acks_late is True


def test_tasks_have_time_limits_below_the_broker_visibility_timeout():
    assert 0 < app.conf.task_soft_time_limit < app.conf.task_time_limit
    assert app.conf.task_time_limit < app.conf.broker_transport_options["visibility_timeout"]


def test_fetch_and_send_go_to_their_own_queues():
    assert route_of("papers.tasks.fetch_all_sources") == "fetch"
    assert route_of("digest.tasks.send_digest_chunk") == "send"
    assert route_of("digest.tasks.run_daily_job") == "default"


def test_beat_runs_the_daily_job_at_the_job_hour_enqueues_every_quarter_hour_and_prunes_nightly(settings):
    settings.BEAT_INTERVAL_SECONDS = 0
    configure_beat_schedule(app)

    schedule = app.conf.beat_schedule
    assert set(schedule) == {
        "run-daily-job", "start-missed-daily-job", "enqueue-due-digests", "prune-webhook-events", "prune-old-digests",
        "prune-unconfirmed-signups",
    }
    assert schedule["run-daily-job"]["schedule"] == crontab(minute=0, hour=settings.DAILY_JOB_HOUR)
    assert schedule["start-missed-daily-job"]["schedule"] == crontab(minute="5,20,35,50")
    assert schedule["start-missed-daily-job"]["task"] in app.tasks
    assert route_of("digest.tasks.start_missed_daily_job") == "default"
    assert schedule["enqueue-due-digests"]["schedule"] == crontab(minute="*/15")
    assert schedule["prune-webhook-events"]["schedule"] == crontab(minute=30, hour=3)
    assert schedule["prune-webhook-events"]["task"] in app.tasks
    assert route_of("digest.tasks.prune_webhook_events") == "default"
    assert schedule["prune-old-digests"]["schedule"] == crontab(minute=45, hour=3)
    assert schedule["prune-old-digests"]["task"] in app.tasks
    assert route_of("digest.tasks.prune_old_digests") == "default"
    assert schedule["prune-unconfirmed-signups"]["schedule"] == crontab(minute=50, hour=3)
    assert schedule["prune-unconfirmed-signups"]["task"] in app.tasks
    assert route_of("subscriptions.tasks.prune_unconfirmed_signups") == "default"


def test_a_beat_interval_runs_every_job_every_few_seconds_for_staging(settings):
    settings.BEAT_INTERVAL_SECONDS = 5
    try:
        configure_beat_schedule(app)
        intervals = [entry["schedule"] for entry in app.conf.beat_schedule.values()]
    finally:
        settings.BEAT_INTERVAL_SECONDS = 0
        configure_beat_schedule(app)

    assert intervals == [5, 5, 5, 5, 5]


def test_each_pool_process_imports_the_url_conf_as_it_starts():
    import sys

    from celery.signals import worker_process_init
    from django.urls import clear_url_caches

    sys.modules.pop("config.urls", None)
    clear_url_caches()
    try:
        worker_process_init.send(sender=None)
        assert "config.urls" in sys.modules
    finally:
        clear_url_caches()
