"""The Celery application and the daily beat schedule.

Without REDIS_URL, settings make every task run in-process (eager), so the
embedded demo needs no broker. With REDIS_URL, web, worker and beat talk
through Redis.
"""

import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("paperboy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def configure_beat_schedule(sender, **kwargs):
    from django.conf import settings

    every = settings.BEAT_INTERVAL_SECONDS  # staging and end-to-end tests: every job every N s
    sender.conf.beat_schedule = {
        "run-daily-job": {
            "task": "digest.tasks.run_daily_job",
            "schedule": every or crontab(minute=0, hour=settings.DAILY_JOB_HOUR),
        },
        "enqueue-due-digests": {
            "task": "digest.tasks.enqueue_due_digests",
            "schedule": every or crontab(minute="*/15"),
        },
        "prune-webhook-events": {
            "task": "digest.tasks.prune_webhook_events",
            "schedule": every or crontab(minute=30, hour=3),
        },
        "prune-old-digests": {
            "task": "digest.tasks.prune_old_digests",
            "schedule": every or crontab(minute=45, hour=3),
        },
        "prune-unconfirmed-signups": {
            "task": "subscriptions.tasks.prune_unconfirmed_signups",
            "schedule": every or crontab(minute=50, hour=3),
        },
    }
    if not every:  # every N s, the daily job itself runs every N s: it cannot be missed for long
        sender.conf.beat_schedule["start-missed-daily-job"] = {
            "task": "digest.tasks.start_missed_daily_job",
            "schedule": crontab(minute="5,20,35,50"),
        }


@worker_process_init.connect
def load_url_conf(**kwargs):
    """Import the URL conf as each pool process starts, not in its first send task: a digest's
    links are reversed, and importing the URL conf (the admin, the views, the health check's
    Redis client) takes about 0.1 s, once per process. Reversing one name imports it and builds
    its reverse lookups."""
    from django.urls import reverse

    reverse("healthz")
