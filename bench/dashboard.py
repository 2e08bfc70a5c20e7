"""Operator dashboard benchmark: the dashboard and the daily status report over a day's send.

Run by hand from the repository root (not part of the test suite):

    .venv/bin/python bench/dashboard.py --subscribers 100000 --clicks 100000
    .venv/bin/python bench/dashboard.py --subscribers 100000 --clicks 100000 --history-days 30

It starts a throwaway PostgreSQL cluster (tests.servers), imports the bundled
corpus (giving its papers arXiv and Hugging Face links), builds today's daily
edition, inserts N active readers, one ``sent`` delivery each (10 of the
edition's papers, sent over the last hour) and ``--clicks`` ESP click events
of this week on those digests' links (some repeated, a tenth on the
unsubscribe link), stored as applying them stores them; ``--history-days D``
first gives each reader a sent digest of D past daily editions, as the
ledger looks after D days of service. Then it times what an
operator's page view computes (``dashboard_context``) and two of its parts
(``daily_status``, ``top_papers_of_week``), three rounds each, and prints the
median seconds, the SQL queries and the Python memory each allocated at its
peak (``tracemalloc``, in a separate round so that tracing does not slow the
timed ones). The rounds follow a first view, timed on its own, which counts
the charts' settled days and keeps them (``digest.ledger_days``); after them,
the most recent kept day is dropped and one more view timed, as on the first
view of each new day, which counts the day that settled overnight. Last, a
view that finds the figures kept (``kept_dashboard_context``: the cache is a
Redis server started here, as in production) is timed the same way. It checks
the figures against the data it inserted: the delivery counts, the send
window's row count, the clicks of the most clicked paper, and the charts'
claims and sends per day against the ledger. Nothing leaves 127.0.0.1. It ends
with one line:

    RESULT subscribers=N clicks=C dashboard_seconds=S status_seconds=T top_papers_seconds=P queries=Q peak_mb=M first_view_seconds=F new_day_seconds=D kept_view_seconds=K
"""

import argparse
import io
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.digest_scale import (  # noqa: E402
    DELIVERY_COLUMNS, build_data, build_history, configure_env, copy_rows, django_setup, start_database,
)
from tests.servers import RedisServer  # noqa: E402

PAPERS_PER_DIGEST = 10
ROUNDS = 3


def insert_deliveries(edition, seed=11):
    """One sent delivery per reader (COPY), sent during the last hour; returns {delivery id: paper ids}."""
    from django.utils import timezone

    from digest.models import Delivery
    from subscriptions.models import Subscriber

    rng = random.Random(seed)
    paper_ids = list(edition.entries.values_list("paper_id", flat=True))
    now = timezone.now()
    buffer = io.StringIO()
    for subscriber_id in Subscriber.objects.values_list("pk", flat=True).iterator(chunk_size=10_000):
        papers = rng.sample(paper_ids, PAPERS_PER_DIGEST)
        created = now - timedelta(minutes=60)
        sending = created + timedelta(seconds=rng.uniform(0, 3000))
        sent = sending + timedelta(seconds=rng.uniform(0.01, 2.0))
        buffer.write(
            f"{subscriber_id}\t{edition.pk}\tsent\t{papers}\t{{}}\t\t<{subscriber_id}@mg.bench.example>\t\t1\t"
            f"{created.isoformat()}\t{sending.isoformat()}\t{sent.isoformat()}\t{sent.isoformat()}\n"
        )
    copy_rows(DELIVERY_COLUMNS, buffer)
    return dict(Delivery.objects.filter(edition=edition).values_list("pk", "paper_ids").iterator(chunk_size=10_000))


def insert_clicks(deliveries, clicks, seed=13):
    """``clicks`` click events on these deliveries; returns the clicks each paper should count."""
    from django.db import connection
    from django.utils import timezone

    from digest.rendering import paper_links
    from papers.models import Paper

    rng = random.Random(seed)
    for paper in Paper.objects.filter(arxiv_url=""):  # the bundled corpus has no links: give it arXiv's
        paper.arxiv_url = f"https://arxiv.org/abs/2611.{paper.pk:05d}"
        paper.pdf_url = f"https://arxiv.org/pdf/2611.{paper.pk:05d}"
        paper.hf_url = f"https://huggingface.co/papers/2611.{paper.pk:05d}"
        paper.save(update_fields=["arxiv_url", "pdf_url", "hf_url"])
    urls = {p.pk: [url for _, url in paper_links(p)] for p in Paper.objects.all()}
    now = timezone.now()
    ids = list(deliveries)
    expected, counted = Counter(), set()
    buffer = io.StringIO()
    for n in range(clicks):
        delivery_id = rng.choice(ids)
        roll = rng.random()
        paper_id = rng.choice(deliveries[delivery_id])
        if roll < 0.1:
            url, paper_id = "https://paperboy.example/unsubscribe/token/", None
        else:
            url = rng.choice(urls[paper_id]) + ("/" if roll < 0.2 else "")
            if (delivery_id, paper_id) not in counted:
                counted.add((delivery_id, paper_id))
                expected[paper_id] += 1
        at = (now - timedelta(seconds=rng.uniform(0, 6 * 86400))).isoformat()
        details = '{"click_url": "%s"}' % url
        paper = "\\N" if paper_id is None else paper_id  # as applying the event records it
        buffer.write(
            f"bench-click-{n}\tmailgun\tclicked\t\t\t{delivery_id}\t{at}\t{details}\t{at}\t{at}\tapplied\t{paper}\n"
        )
    copy_rows(
        "digest_webhookevent (event_id, esp, event_type, recipient, message_id, delivery_id, occurred_at, "
        "details, received_at, applied_at, outcome, clicked_paper_id)", buffer,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return expected


class Queries:
    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure(function):
    """(median seconds of ROUNDS calls, queries per call, peak MB allocated by one call, its result)."""
    from django.db import connection

    seconds = []
    queries = Queries()
    for _ in range(ROUNDS):
        queries.count = 0
        with connection.execute_wrapper(queries):
            started = time.perf_counter()
            result = function()
            seconds.append(time.perf_counter() - started)
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(seconds), queries.count, peak, result


def check(n, clicks_expected, status, top):
    problems = []
    counts = status.editions[0].counts if status.editions and status.editions[0].edition else {}
    if counts.get("sent") != n:
        problems.append(f"daily status counts {counts}, expected {n} sent")
    window = [s for s in status.steps if s.name.startswith("send window")]
    if not window or not window[0].detail.endswith(f", {n} sent"):
        problems.append(f"send window step {window}")
    most = max(clicks_expected.values(), default=0)
    if not top or top[0].clicks != most:
        problems.append(f"top paper has {top[0].clicks if top else None} clicks, expected {most}")
    return problems


def check_ledger_days(dashboard):
    """The charts' claims and sends per day add up to what the ledger holds for their days."""
    from django.utils import timezone

    from digest.ledger_days import local_midnight
    from digest.models import Delivery

    today = timezone.localdate()
    since = local_midnight(dashboard.window(dashboard.WINDOW_DAYS, today)[0])
    claimed = sum(sum(counts.values()) for counts in dashboard.delivery_history(today=today).values())
    sent = sum(point.sent for point in dashboard.rate_history(today=today))
    problems = []
    if claimed != Delivery.objects.filter(created_at__gte=since).count():
        problems.append(f"the charts count {claimed} claims in the window")
    if sent != Delivery.objects.filter(status="sent", sent_at__gte=since).count():
        problems.append(f"the charts count {sent} sends in the window")
    return problems


def deep_health_deliveries():
    """What ``/healthz/deep`` counts of the ledger, and when (its other checks read no deliveries)."""
    from django.utils import timezone

    from config.health import check_deliveries

    now = timezone.now()
    return now, check_deliveries(now)


def check_health(health):
    """The deep health check's counts are those of the whole ledger for its window."""
    from config.health import DELIVERY_WINDOW
    from digest.models import Delivery

    now, counts = health
    day_ago, sent = now - timedelta(hours=24), Delivery.Status.SENT
    expected = {
        "pending": Delivery.objects.filter(status="pending", created_at__gte=now - DELIVERY_WINDOW).count(),
        "sending_stale": 0,
        "sent_24h": Delivery.objects.filter(status=sent, created_at__gte=day_ago).count(),
        "failed_24h": 0,
    }
    wrong = {key: counts[key] for key, value in expected.items() if counts[key] != value}
    if wrong or not counts["ok"] or not expected["sent_24h"]:
        return [f"the deep health check counts {wrong or counts}, expected {expected}"]
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--clicks", type=int, default=100_000)
    parser.add_argument("--history-days", type=int, default=0,
                        help="past daily editions each reader already got a digest of (the charts' 30 days)")
    args = parser.parse_args()

    server, redis = start_database(), RedisServer().start()
    try:
        configure_env(server.url("bench"), "http://127.0.0.1:9/v3")
        os.environ["REDIS_URL"] = redis.url()  # the cache the dashboard keeps its figures in
        django_setup()
        from digest import dashboard

        started = time.perf_counter()
        edition, _ = build_data(args.subscribers)
        if args.history_days:
            build_history(args.history_days)
        deliveries = insert_deliveries(edition)
        expected = insert_clicks(deliveries, args.clicks)
        del deliveries
        print(f"setup: {args.subscribers} readers and deliveries, {args.clicks} clicks, "
              f"{args.history_days} past digests per reader in {time.perf_counter() - started:.1f} s")

        from digest.models import DeliveryDay

        first_view = timed(dashboard.dashboard_context)
        print(f"{'first view':<20} {first_view:8.3f} s  (counts and keeps {DeliveryDay.objects.count()} settled days)")
        figures = {}
        for name, function in (
            ("daily_status", dashboard.daily_status),
            ("top_papers_of_week", dashboard.top_papers_of_week),
            ("dashboard_context", dashboard.dashboard_context),
        ):
            figures[name] = measure(function)
            seconds, queries, peak, _ = figures[name]
            print(f"{name:<20} {seconds:8.3f} s {queries:6d} queries  peak {peak:7.1f} MB allocated")
        DeliveryDay.objects.order_by("-day").first().delete()
        new_day = timed(dashboard.dashboard_context)
        print(f"{'a new day':<20} {new_day:8.3f} s  (counts the day that settled)")
        dashboard.kept_dashboard_context(recompute=True)
        kept, kept_queries, _, _ = measure(dashboard.kept_dashboard_context)
        print(f"{'a kept view':<20} {kept:8.3f} s {kept_queries:6d} queries  (the figures computed by the view before)")
        health_seconds, health_queries, _, health = measure(deep_health_deliveries)
        print(f"{'deep health check':<20} {health_seconds:8.3f} s {health_queries:6d} queries  "
              "(its deliveries: the rows claimed in its window, the sends stuck since any day)")
        problems = check(args.subscribers, expected, figures["daily_status"][3], figures["top_papers_of_week"][3])
        problems += check_ledger_days(dashboard)
        problems += check_health(health)
        print("   checks: " + ("ok" if not problems else "; ".join(problems)))
        seconds, queries, peak, _ = figures["dashboard_context"]
        status, top = figures["daily_status"][0], figures["top_papers_of_week"][0]
        print(f"RESULT subscribers={args.subscribers} clicks={args.clicks} dashboard_seconds={seconds:.3f} "
              f"status_seconds={status:.3f} top_papers_seconds={top:.3f} queries={queries} peak_mb={peak:.1f} "
              f"first_view_seconds={first_view:.3f} new_day_seconds={new_day:.3f} kept_view_seconds={kept:.4f} "
              f"health_seconds={health_seconds:.3f}")
        return 1 if problems else 0
    finally:
        server.stop()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
