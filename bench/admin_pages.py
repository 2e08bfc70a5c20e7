"""Admin pages benchmark: the operator's lists of subscribers and deliveries over a large ledger.

Run by hand from the repository root (not part of the test suite):

    .venv/bin/python bench/admin_pages.py --subscribers 100000 --history-days 30

It starts a throwaway PostgreSQL cluster (tests.servers), fills it as
``bench/dashboard.py`` does (N active readers, today's daily edition and a
sent delivery each, ``--history-days D`` past daily digests each before it),
marks one in FAILED_EVERY of today's deliveries failed, analyses it, logs in
a superuser and requests the admin's pages through Django's test client: the
subscriber list (plain, searched, filtered), one subscriber's page, the
delivery list (plain, by status, by edition, by reader, searched by address
and by ESP message id) and one delivery's page. Each page is requested
ROUNDS times; it prints the fastest, its SQL queries and its slowest
statement, and checks what the pages show: every row of the subscriber list
with its last delivery, the reader's page with their latest deliveries, the
failed rows newest first, the searched reader's digests found by address, by
reader and by message id. Nothing leaves 127.0.0.1. It ends with one line:

    RESULT subscribers=N ledger_rows=R subscriber_list_seconds=S delivery_list_seconds=D slowest_page_seconds=P slowest_page=URL
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard import insert_deliveries  # noqa: E402
from bench.digest_scale import build_data, build_history, configure_env, django_setup, start_database  # noqa: E402

ROUNDS = 3
FAILED_EVERY = 1000


def timed_page(client, url):
    """(fastest seconds, queries, slowest statement, last response) of ROUNDS requests of ``url``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fastest, response = None, None
    for _ in range(ROUNDS):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, secure=True)
            seconds = time.perf_counter() - started
        fastest = seconds if fastest is None else min(fastest, seconds)
    slowest = max(queries.captured_queries, key=lambda q: float(q["time"]), default={"time": "0", "sql": ""})
    return fastest, len(queries.captured_queries), slowest, response


def pages(edition, reader, delivery):
    local = reader.email.split("@")[0]
    return [
        ("subscribers", "/admin/subscriptions/subscriber/"),
        ("subscribers, searched", f"/admin/subscriptions/subscriber/?q={local}"),
        ("subscribers, active", "/admin/subscriptions/subscriber/?status__exact=active"),
        ("a subscriber", f"/admin/subscriptions/subscriber/{reader.pk}/change/"),
        ("deliveries", "/admin/digest/delivery/"),
        ("deliveries, failed", "/admin/digest/delivery/?status__exact=failed"),
        ("deliveries, sending", "/admin/digest/delivery/?status__exact=sending"),
        ("deliveries, today's edition", f"/admin/digest/delivery/?edition__id__exact={edition.pk}"),
        ("deliveries, of a reader", f"/admin/digest/delivery/?subscriber={reader.pk}"),
        ("deliveries, by address", f"/admin/digest/delivery/?q={reader.email}"),
        ("deliveries, by message id", f"/admin/digest/delivery/?q={delivery.esp_message_id.strip('<>')}"),
        ("a delivery", f"/admin/digest/delivery/{delivery.pk}/change/"),
    ]


def check(responses, reader, history_days, failed_ids):
    """What the pages show, against the data inserted."""
    from subscriptions.admin import LATEST_SHOWN

    problems = [f"{name}: HTTP {r.status_code}" for name, r in responses.items() if r.status_code != 200]
    listed = responses["subscribers"].context["cl"].result_list
    if len(listed) != 100 or any(s.last_delivery_at is None for s in listed):
        problems.append("the subscriber list's page lacks a last delivery")
    inline = [f.instance for f in responses["a subscriber"].context["inline_admin_formsets"][0].formset.forms]
    if len(inline) != min(LATEST_SHOWN, history_days + 1) or any(d.subscriber_id != reader.pk for d in inline):
        problems.append(f"the reader's page shows {len(inline)} deliveries")
    failed = responses["deliveries, failed"].context["cl"]
    if failed.result_count != len(failed_ids) or [d.pk for d in failed.result_list] != failed_ids[:100]:
        problems.append(f"the failed filter found {failed.result_count} of {len(failed_ids)} failed deliveries")
    of_reader = responses["deliveries, of a reader"].context["cl"]
    if of_reader.result_count != history_days + 1 or any(d.subscriber_id != reader.pk for d in of_reader.result_list):
        problems.append(f"the reader's deliveries list found {of_reader.result_count}")
    by_address = responses["deliveries, by address"].context["cl"]
    if by_address.result_count != history_days + 1 or any(d.subscriber_id != reader.pk for d in by_address.result_list):
        problems.append(f"searching the reader's address found {by_address.result_count} deliveries")
    by_message = responses["deliveries, by message id"].context["cl"]
    if [d.subscriber_id for d in by_message.result_list] != [reader.pk]:
        problems.append("searching the message id did not find the reader's digest alone")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--history-days", type=int, default=30,
                        help="past daily editions each reader already got a digest of")
    args = parser.parse_args()

    server = start_database()
    try:
        configure_env(server.url("bench"), "http://127.0.0.1:9/v3")
        django_setup()
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()  # the client's responses carry their templates' context, for the checks

        from digest.models import Delivery
        from subscriptions.models import Subscriber

        # The pages' HTML without collected static files (production serves them collected).
        settings.STORAGES = {**settings.STORAGES,
                             "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
        started = time.perf_counter()
        edition, _ = build_data(args.subscribers)
        if args.history_days:
            build_history(args.history_days)
        insert_deliveries(edition)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE digest_delivery SET status = 'failed', reason = 'the ESP refused the recipient' "
                "WHERE edition_id = %s AND id %% %s = 0 RETURNING id", [edition.pk, FAILED_EVERY],
            )
            failed_ids = sorted((row[0] for row in cursor.fetchall()), reverse=True)
            cursor.execute("ANALYZE")
        rows = Delivery.objects.count()
        print(f"setup: {args.subscribers} readers, {rows} deliveries ({args.history_days} past digests per reader, "
              f"{len(failed_ids)} failed) in {time.perf_counter() - started:.1f} s")

        client = Client()
        client.force_login(User.objects.create_superuser("operator", "operator@example.org", None))
        reader = Subscriber.objects.order_by("pk")[args.subscribers // 2]
        delivery = Delivery.objects.filter(subscriber=reader, edition=edition).get()
        responses, seconds = {}, {}
        for name, url in pages(edition, reader, delivery):
            seconds[name], queries, slowest, responses[name] = timed_page(client, url)
            print(f"{name:<30} {seconds[name]:7.3f} s {queries:4d} queries  slowest {float(slowest['time']):.3f} s: "
                  f"{slowest['sql'][:90]}")
        problems = check(responses, reader, args.history_days, failed_ids)
        print("   checks: " + ("ok" if not problems else "; ".join(problems)))
        worst = max(seconds, key=seconds.get)
        print(f"RESULT subscribers={args.subscribers} ledger_rows={rows} "
              f"subscriber_list_seconds={seconds['subscribers']:.3f} delivery_list_seconds={seconds['deliveries']:.3f} "
              f"slowest_page_seconds={seconds[worst]:.3f} slowest_page=\"{worst}\"")
        return 1 if problems else 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
