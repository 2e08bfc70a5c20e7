"""Pruning old digests: DELIVERY_RETENTION_DAYS over a ledger of months.

Run by hand from the repository root (not part of the test suite):

    .venv/bin/python bench/prune.py --subscribers 20000 --history-days 100 --retention-days 60
    .venv/bin/python bench/prune.py --subscribers 20000 --history-days 20 --unconfirmed 50000

It starts a throwaway PostgreSQL cluster (tests.servers), fills it as
``bench/admin_pages.py`` does (N active readers, today's daily edition and a
sent digest each, ``--history-days D`` past daily digests each before it),
links an opened event to one in EVENT_EVERY of the past digests, then runs
the nightly prune (``digest.retention.prune_old_digests``) with
``--retention-days`` and times it. It checks that exactly the rows of
editions older than the retention are gone, that every other row and every
event is still there (the events of deleted digests without their link), and
prints the rows deleted per second. With ``--unconfirmed U`` it also adds U
signups nobody confirmed, 40 days old, and U / 10 recent ones, then runs the
nightly prune of old signups (``subscriptions.retention``) among the readers
and their ledger, and checks that exactly the old ones are gone. Nothing
leaves 127.0.0.1. It ends with one line:

    RESULT ledger_rows=R deleted=D kept=K seconds=S rows_per_second=X [unconfirmed_deleted=U unconfirmed_seconds=T]
"""

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard import insert_deliveries  # noqa: E402
from bench.digest_scale import build_data, build_history, configure_env, django_setup, start_database  # noqa: E402

EVENT_EVERY = 50


def link_events():
    """An applied "opened" event for one in EVENT_EVERY of the past digests; returns how many."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO digest_webhookevent (event_id, esp, event_type, recipient, message_id, details, "
            "received_at, applied_at, outcome, delivery_id) SELECT 'bench:' || d.id, 'mailgun', 'opened', '', '', "
            "'{}'::jsonb, d.sent_at, d.sent_at, 'applied', d.id FROM digest_delivery d WHERE d.id %% %s = 0",
            [EVENT_EVERY],
        )
        linked = cursor.rowcount
        cursor.execute("ANALYZE")
        return linked


def check(before, expected_kept, events):
    from digest.models import Delivery, WebhookEvent

    problems = []
    if Delivery.objects.filter(edition__date__lt=before).exists():
        problems.append("rows of editions past the retention are left")
    kept = Delivery.objects.count()
    if kept != expected_kept:
        problems.append(f"{kept} rows kept, {expected_kept} expected")
    if WebhookEvent.objects.count() != events:
        problems.append(f"{WebhookEvent.objects.count()} events left of {events}")
    if WebhookEvent.objects.filter(delivery__isnull=False, delivery__edition__date__lt=before).exists():
        problems.append("an event still links a deleted digest")
    return problems, kept


def add_signups(count, days_old):
    """``count`` pending readers who never confirmed, signed up and sent a confirmation ``days_old`` days ago."""
    from django.utils import timezone

    from subscriptions.models import Subscriber

    at = timezone.now() - timedelta(days=days_old)
    for start in range(0, count, 5000):
        Subscriber.objects.bulk_create([
            Subscriber(email=f"signup{days_old}d{n}@bench.example", status=Subscriber.Status.PENDING,
                       created_at=at, confirmation_sent_at=at, token_secret=f"{days_old:04d}{n:028x}")
            for n in range(start, min(start + 5000, count))
        ])


def prune_signups(unconfirmed):
    """Add old and recent unconfirmed signups, time their nightly prune; returns (deleted, seconds, problems)."""
    from subscriptions.models import Subscriber
    from subscriptions.retention import prune_unconfirmed_signups

    add_signups(unconfirmed, days_old=40)
    add_signups(unconfirmed // 10, days_old=3)
    readers = Subscriber.objects.count()
    started = time.perf_counter()
    pruned = prune_unconfirmed_signups()
    seconds = time.perf_counter() - started
    problems = []
    if pruned.readers != unconfirmed:
        problems.append(f"{pruned.readers} unconfirmed signups deleted, {unconfirmed} expected")
    if Subscriber.objects.count() != readers - unconfirmed:
        problems.append(f"{Subscriber.objects.count()} readers left, {readers - unconfirmed} expected")
    print(f"pruned {pruned.readers} unconfirmed signups of {readers} readers in {seconds:.2f} s "
          f"({pruned.readers / seconds:,.0f} readers/s)")
    return pruned.readers, seconds, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--history-days", type=int, default=100, help="past daily editions each reader got")
    parser.add_argument("--retention-days", type=int, default=60)
    parser.add_argument("--unconfirmed", type=int, default=0, help="also prune this many old unconfirmed signups")
    args = parser.parse_args()

    server = start_database()
    try:
        configure_env(server.url("bench"), "http://127.0.0.1:9/v3")
        django_setup()
        from django.conf import settings
        from django.utils import timezone

        from digest.models import Delivery
        from digest.retention import prune_old_digests, retention_days

        started = time.perf_counter()
        edition, _ = build_data(args.subscribers)
        build_history(args.history_days)
        insert_deliveries(edition)
        events = link_events()
        rows = Delivery.objects.count()
        print(f"setup: {args.subscribers} readers, {rows} deliveries ({args.history_days} past digests per reader), "
              f"{events} events in {time.perf_counter() - started:.1f} s")

        settings.DELIVERY_RETENTION_DAYS = args.retention_days
        cutoff = timezone.localdate() - timedelta(days=retention_days())
        expected_kept = Delivery.objects.filter(edition__date__gte=cutoff).count()
        started = time.perf_counter()
        pruned = prune_old_digests()
        seconds = time.perf_counter() - started
        problems, kept = check(pruned.before, expected_kept, events)
        print(f"pruned {pruned.deliveries} rows and {pruned.calls} calls of editions before {pruned.before} "
              f"in {seconds:.2f} s ({pruned.deliveries / seconds:,.0f} rows/s); {kept} rows kept")
        signups = ""
        if args.unconfirmed:
            deleted, signup_seconds, signup_problems = prune_signups(args.unconfirmed)
            problems += signup_problems
            signups = f" unconfirmed_deleted={deleted} unconfirmed_seconds={signup_seconds:.2f}"
        print("   checks: " + ("ok" if not problems else "; ".join(problems)))
        print(f"RESULT ledger_rows={rows} deleted={pruned.deliveries} kept={kept} seconds={seconds:.2f} "
              f"rows_per_second={pruned.deliveries / seconds:.0f}{signups}")
        return 1 if problems else 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
