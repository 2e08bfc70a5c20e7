"""`manage.py digest_status`: today's editions, their counts and the slowest steps."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from digest import dashboard, pause
from digest.models import Delivery
from papers.models import FetchRun
from tests.digest.builders import built_edition, papers_on_topics
from tests.factories import EditionFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command("digest_status", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def morning():
    """Wednesday 09:00: a fetch that took 12 s, and an edition with 3 sent (one slow),
    1 skipped, 1 failed."""
    with time_machine.travel(datetime(2026, 11, 18, 9, 0, tzinfo=UTC), tick=False):
        yield build_morning(timezone.now())


def build_morning(now):
    FetchRun.objects.create(
        source="hf", started_at=now - timedelta(minutes=10), finished_at=now - timedelta(minutes=10) + timedelta(seconds=12),
        status="ok", created=42,
    )
    edition = EditionFactory(cadence="daily")
    subscribers = SubscriberFactory.create_batch(5)
    for subscriber, seconds in zip(subscribers[:3], (0.2, 0.3, 4.5)):
        Delivery.objects.create(
            subscriber=subscriber, edition=edition, status="sent", created_at=now - timedelta(seconds=30),
            sending_at=now - timedelta(seconds=10), sent_at=now - timedelta(seconds=10) + timedelta(seconds=seconds),
        )
    Delivery.objects.create(subscriber=subscribers[3], edition=edition, status="skipped", reason="nothing relevant")
    Delivery.objects.create(subscriber=subscribers[4], edition=edition, status="failed", reason="HTTP 400")
    return edition


def test_status_prints_the_editions_counts_and_the_slowest_steps_first(morning):
    output = run()

    assert f"Daily edition {morning.date:%Y-%m-%d}" in output
    assert "3 sent, 1 skipped, 1 failed, 0 pending, 0 sending" in output
    assert "Weekly edition: not built" in output
    steps = output.split("Slowest steps:")[1].strip().splitlines()
    assert steps[0].strip().startswith("send window") and "24.50 s" in steps[0]  # first claim to last send
    assert any("wait for a send worker" in line and "20.00 s" in line for line in steps)
    assert any(line.strip().startswith("fetch hf") and "12.00 s" in line and "42 new" in line for line in steps)
    assert any("send one message" in line and "4.50 s" in line for line in steps)


def test_status_says_first_that_digest_sending_is_paused_and_by_whom(morning):
    with time_machine.travel(datetime(2026, 11, 18, 6, 5, tzinfo=UTC), tick=False):
        pause.pause_sending("alice", "the edition links 404")

    text = run().splitlines()
    data = json.loads(run("--json"))

    assert text[2] == ("Digest sending paused since Wed 18 Nov 06:05 by alice (the edition links 404): "
                       "nothing is sent until it is resumed.")
    assert data["sending_paused"] == {"since": "2026-11-18T06:05:00+00:00", "by": "alice",
                                      "reason": "the edition links 404"}
    pause.resume_sending("bob")
    assert "paused" not in run() and json.loads(run("--json"))["sending_paused"] is None


def test_an_edition_of_one_paper_is_counted_in_the_singular():
    edition = built_edition(papers=papers_on_topics(1))

    assert f"{edition} (1 paper, built " in run()


def test_status_as_json_for_scripts(morning):
    data = json.loads(run("--json"))

    daily = next(e for e in data["editions"] if e["cadence"] == "daily")
    assert daily["deliveries"] == {"pending": 0, "sending": 0, "sent": 3, "failed": 1, "skipped": 1}
    assert data["slowest_steps"][0]["seconds"] >= data["slowest_steps"][-1]["seconds"]


def test_status_of_a_quiet_day_says_nothing_ran():
    output = run("--date", "2026-01-05")

    assert "Daily edition: not built" in output and "nothing ran on this day" in output


def test_status_rejects_a_malformed_date():
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run("--date", "yesterday")


def test_status_rejects_an_impossible_date_naming_the_format():
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run("--date", "2026-02-30")


def test_status_of_a_future_day_is_refused_naming_today_on_the_edition_clock():
    """Nothing can have run on it yet: an empty report would read as a job that failed to run."""
    with time_machine.travel(datetime(2026, 12, 6, 12, 0, tzinfo=UTC), tick=False):
        with pytest.raises(CommandError, match=r"2026-12-07 is in the future \(today is 2026-12-06"):
            run("--date", "2026-12-07")
        assert "Paperboy status for Sunday 2026-12-06" in run("--date", "2026-12-06")


@pytest.mark.parametrize(
    "seconds, text",
    [(0.4213, "0.42 s"), (12.4, "12.40 s"), (184.2, "3 min 04 s"), (7500, "2 h 05 min"), (183_600, "2 d 03 h")],
)
def test_step_durations_read_in_human_units(seconds, text):
    from digest.dashboard import duration_text

    assert duration_text(seconds) == text


def test_send_times_are_nearest_rank_percentiles_over_every_sent_delivery():
    with time_machine.travel(datetime(2026, 11, 18, 9, 0, tzinfo=UTC), tick=False):
        now = timezone.now()
        edition = EditionFactory(cadence="daily")
        took = [7, 3, 20, 11, 1, 16, 9, 14, 5, 18, 2, 12, 19, 6, 15, 4, 10, 17, 8, 13]  # seconds, 1..20
        deliveries = {}
        for seconds, subscriber in zip(took, SubscriberFactory.create_batch(len(took))):
            sending = now - timedelta(seconds=60)
            deliveries[seconds] = Delivery.objects.create(
                subscriber=subscriber, edition=edition, status="sent", sending_at=sending,
                created_at=sending - timedelta(seconds=2 * seconds), sent_at=sending + timedelta(seconds=seconds),
            )
        Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition, status="sending", sending_at=now)

        steps = {step.name.split(" (")[0]: step for step in dashboard.send_steps(edition)}

    send, wait, window = steps["send one message"], steps["wait for a send worker"], steps["send window"]
    assert send.seconds == 20 and send.detail == f"p50 10.00s, p95 19.00s, slowest delivery {deliveries[20].pk}"
    assert wait.seconds == 40 and wait.detail == "p50 20.00s, p95 38.00s"
    assert window.seconds == 60 and window.detail.endswith(", 20 sent")


def test_the_portable_percentiles_agree_with_the_databases_own():
    edition = EditionFactory(cadence="daily")
    start = timezone.now()
    for n, subscriber in enumerate(SubscriberFactory.create_batch(7)):
        Delivery.objects.create(subscriber=subscriber, edition=edition, status="sent", created_at=start,
                                sending_at=start + timedelta(seconds=n % 3), sent_at=start + timedelta(seconds=n * n))
    rows = edition.deliveries.all()
    intervals = (("sending_at", "sent_at"), ("created_at", "sending_at"))

    portable = [dashboard.duration_spread(rows, a, b, 7) for a, b in intervals]

    assert dashboard.duration_spreads(rows, 7, *intervals) == portable
    seconds = [tuple(value.total_seconds() for value in spread) for spread in portable]
    assert seconds == [(9.0, 36.0, 36.0), (1.0, 2.0, 2.0)]  # sends 0, 0, 2, 9, 15, 23, 36 s; waits 0–2 s
