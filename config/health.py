"""Health endpoints: ``/healthz`` for load balancers, ``/healthz/deep`` for alerting.

``/healthz`` is cheap (one ``SELECT 1``, one Redis ``PING``) so a load
balancer may call it every few seconds and take a web process whose database
or broker is unreachable out of rotation. ``/healthz/deep`` reads the state
of the pipeline: the last successful fetch of each configured source, the
latest editions, stuck or failed deliveries, whether an operator paused digest
sending, and the Celery workers consuming each queue. Both answer JSON, 200
when healthy and 503 otherwise, so an uptime checker can alert on the status
code alone and show the ``problems``.
Neither exposes an email address.
"""

import time
from datetime import timedelta

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from config.celery_app import app
from digest.editions import edition_date_for
from digest.ledger_days import claimed_after
from digest import calls, pause
from digest.models import Cadence, Delivery, Edition, SendCall
from papers.models import FetchRun
from papers.services import FALLBACKS

FETCH_MAX_AGE = timedelta(hours=26)  # the daily fetch, plus two hours of grace
EDITION_GRACE = timedelta(hours=2)  # after DAILY_JOB_HOUR, today's edition must exist
PENDING_MAX_AGE = timedelta(minutes=45)  # enqueueing runs every 15 minutes
# Deliveries claimed longer ago than this are not counted: their edition is past sending
# (only the current and the previous edition's pending rows are handed out again), and the
# ledger's older rows, a row per reader and digest, would make every check read all of it.
DELIVERY_WINDOW = timedelta(hours=48)
FAILED_RATE_MAX = 0.05  # of the deliveries finished in the last 24 hours ...
FAILED_MIN_COUNT = 3  # ... counted only from this many failures on
WORKER_REPLY_SECONDS = 1.0
REQUIRED_QUEUES = ("default", "fetch", "send")


def timed(check):
    """Run ``check`` and add its duration; any exception makes it fail with its type."""
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # a health check reports, it never raises
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


def check_redis():
    if not settings.REDIS_URL:
        return {"ok": True, "skipped": "REDIS_URL unset: tasks run in-process"}
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True}


def age_hours(moment, now):
    return round((now - moment).total_seconds() / 3600, 2)


def source_status(name, now):
    runs = FetchRun.objects.filter(source=name)
    last_run = runs.first()
    last_ok = runs.filter(status=FetchRun.Status.OK).first()
    status = {"ok": False, "last_success_at": None, "age_hours": None, "last_status": None}
    if last_run is not None:
        status["last_status"] = last_run.status
        if last_run.status == FetchRun.Status.FAILED:
            status["last_error"] = last_run.error[:300]
    if last_ok is not None:
        finished = last_ok.finished_at or last_ok.started_at
        status.update(last_success_at=finished.isoformat(), age_hours=age_hours(finished, now))
        status["ok"] = now - finished <= FETCH_MAX_AGE
    return status


def check_sources(now):
    """Each configured source must have succeeded lately, itself or through its fallback
    (the Hugging Face API through its papers page)."""
    sources = {name: source_status(name, now) for name in settings.PAPER_SOURCES}
    for name, status in sources.items():
        fallback = FALLBACKS.get(name)
        if not status["ok"] and fallback and fallback not in sources:
            covering = source_status(fallback, now)
            if covering["ok"]:
                status.update(ok=True, via_fallback=fallback, fallback_age_hours=covering["age_hours"])
    stale = [
        f"{name} last succeeded {status['age_hours']}h ago" if status["age_hours"] is not None
        else f"{name} never fetched successfully"
        for name, status in sources.items()
        if not status["ok"]
    ]
    return {"ok": not stale, "sources": sources, "problem": "; ".join(stale)}


def expected_edition_date(cadence, now):
    """The edition that should exist by now: today's once the daily job hour has passed."""
    local = timezone.localtime(now)
    job_done_by = local.replace(hour=settings.DAILY_JOB_HOUR, minute=0, second=0) + EDITION_GRACE
    day = local.date() if local >= job_done_by else local.date() - timedelta(days=1)
    return edition_date_for(cadence, day)


def check_editions(now):
    editions = {}
    for cadence in Cadence.values:
        latest = Edition.objects.filter(cadence=cadence).annotate(n=Count("entries")).first()
        expected = expected_edition_date(cadence, now)
        editions[cadence] = {
            "ok": latest is not None and latest.date >= expected,
            "expected_date": expected.isoformat(),
            "latest_date": latest.date.isoformat() if latest else None,
            "built_at": latest.built_at.isoformat() if latest else None,
            "papers": latest.n if latest else 0,
        }
    missing = [
        f"no {cadence} edition for {status['expected_date']} (latest {status['latest_date']})"
        for cadence, status in editions.items()
        if not status["ok"]
    ]
    return {"ok": not missing, "editions": editions, "problem": "; ".join(missing)}


def check_deliveries(now):
    """Counts of the rows claimed within ``DELIVERY_WINDOW``, reached through the primary key,
    and of the rows stuck in ``sending`` however old, through their partial index: the check
    reads the last days of the ledger, not the whole of it."""
    status = Delivery.Status
    stale_cutoff = now - timedelta(minutes=settings.DIGEST_SENDING_STALE_MINUTES)
    window, day = now - DELIVERY_WINDOW, now - timedelta(hours=24)
    recent = claimed_after(window).aggregate(
        pending=Count("pk", filter=Q(status=status.PENDING)),
        pending_overdue=Count("pk", filter=Q(status=status.PENDING, created_at__lt=now - PENDING_MAX_AGE)),
        sent_24h=Count("pk", filter=Q(status=status.SENT, created_at__gte=day)),
        failed_24h=Count("pk", filter=Q(status=status.FAILED, created_at__gte=day)),
    )
    # The rows a call carries are counted at its status within the same bounds as the rows
    # above: those claimed in the window, and for the day's figures those of the last 24 hours.
    carried = calls.carried_counts_within(SendCall.objects.filter(created_at__gte=window), {
        "pending": (window, None), "pending_overdue": (window, now - PENDING_MAX_AGE), "day": (day, None),
    })
    counts = {
        "pending": recent["pending"] - sum(carried["pending"].values()),
        "pending_overdue": recent["pending_overdue"] - sum(carried["pending_overdue"].values()),
        "sending_stale": Delivery.objects.with_status(status.SENDING).filter(sending_at__lt=stale_cutoff).count()
        + SendCall.objects.filter(status=SendCall.Status.SENDING, created_at__lt=stale_cutoff).count(),
        "sent_24h": recent["sent_24h"] + carried["day"].get(SendCall.Status.SENT, 0),
        "failed_24h": recent["failed_24h"] + carried["day"].get(SendCall.Status.FAILED, 0),
        "calls_unsettled_overdue": SendCall.objects.filter(
            settled_at__isnull=True, status__in=calls.FINISHED, finished_at__lt=now - PENDING_MAX_AGE
        ).count(),
    }
    finished = counts["sent_24h"] + counts["failed_24h"]
    rate = counts["failed_24h"] / finished if finished else 0.0
    too_many_failed = counts["failed_24h"] >= FAILED_MIN_COUNT and rate > FAILED_RATE_MAX
    issues = []
    # Rows the operator's pause held back are the ``sending`` check's to report.
    if counts["pending_overdue"] and not pause.held_back_since(now - PENDING_MAX_AGE):
        issues.append(f"{counts['pending_overdue']} pending for over {PENDING_MAX_AGE} (is a send worker running?)")
    if counts["sending_stale"]:
        issues.append(f"{counts['sending_stale']} stuck in sending (a worker died mid-send?)")
    if counts["calls_unsettled_overdue"]:
        issues.append(f"{counts['calls_unsettled_overdue']} ESP calls not settled for over {PENDING_MAX_AGE} "
                      "(is the beat running?)")
    if too_many_failed:
        issues.append(f"{counts['failed_24h']} failed in 24h ({rate:.1%})")
    return {"ok": not issues, **counts, "failed_rate_24h": round(rate, 4), "problem": "; ".join(issues)}


def check_sending(now):
    """Whether an operator paused digest sending: reported as soon as it is, a problem only once
    it has lasted DIGEST_PAUSE_ALERT_HOURS (a pause forgotten). Who paused it and why are on the
    dashboard, not here: this endpoint is not authenticated."""
    switch = pause.current_pause()
    if switch is None:
        return {"ok": True, "paused": False}
    hours = age_hours(switch.paused_at, now)
    forgotten = now - switch.paused_at >= timedelta(hours=settings.DIGEST_PAUSE_ALERT_HOURS)
    problem = f"digest sending paused by an operator {hours}h ago (manage.py sending resume)" if forgotten else ""
    return {"ok": not forgotten, "paused": True, "paused_at": switch.paused_at.isoformat(), "paused_hours": hours,
            "problem": problem}


def check_workers():
    """Which Celery workers answer, and whether every queue has a consumer."""
    if not settings.REDIS_URL:
        return {"ok": True, "skipped": "REDIS_URL unset: tasks run in-process"}
    replies = once_more_on_a_closed_connection(active_queues) or {}
    consumers = {queue: 0 for queue in REQUIRED_QUEUES}
    for queues in replies.values():
        for queue in queues:
            consumers[queue["name"]] = consumers.get(queue["name"], 0) + 1
    missing = [queue for queue in REQUIRED_QUEUES if not consumers[queue]]
    return {
        "ok": not missing,
        "workers": sorted(replies),
        "consumers": consumers,
        "problem": f"no worker consumes {', '.join(missing)}" if missing else "",
    }


def active_queues():
    return app.control.inspect(timeout=WORKER_REPLY_SECONDS).active_queues()


def once_more_on_a_closed_connection(ask):
    """``ask()``, asked a second time if the broker connection fails.

    The process keeps its broker connection in Celery's pool, and a restart of Redis closes
    it: the first question after the restart fails on it, the next one reconnects. Asking
    once more keeps that from reporting the workers unreachable. A Redis that is really down
    refuses the second connection as fast as the first; a timeout is not asked again.
    """
    try:
        return ask()
    except redis.exceptions.ConnectionError:
        return ask()


def report(checks):
    healthy = all(result["ok"] for result in checks.values())
    body = {"status": "ok" if healthy else "fail", "checks": checks}
    if not healthy:
        body["problems"] = [
            f"{name}: {result.get('problem') or result.get('error') or 'not ok'}"
            for name, result in checks.items()
            if not result["ok"]
        ]
    return healthy, body


def cheap_health():
    return report({"database": timed(check_database), "redis": timed(check_redis)})


def deep_health(now=None):
    now = now or timezone.now()
    healthy, body = cheap_health()
    if not healthy:  # without the database nothing else can be read
        return healthy, body
    checks = {
        **body["checks"],
        "sources": timed(lambda: check_sources(now)),
        "editions": timed(lambda: check_editions(now)),
        "deliveries": timed(lambda: check_deliveries(now)),
        "sending": timed(lambda: check_sending(now)),
        "workers": timed(check_workers),
    }
    healthy, body = report(checks)
    body["checked_at"] = now.isoformat()
    return healthy, body


def respond(healthy, body):
    return JsonResponse(body, status=200 if healthy else 503)


@never_cache
@require_safe
def healthz(request):
    return respond(*cheap_health())


@never_cache
@require_safe
def healthz_deep(request):
    return respond(*deep_health())
