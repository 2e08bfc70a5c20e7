"""The operator dashboard: staff only, charts drawn server-side, numbers from the ledger."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError

from digest import dashboard, pause, tasks, webhooks
from digest.models import Delivery, Feedback, WebhookEvent
from subscriptions.models import Subscriber
from tests.factories import EditionFactory, PaperFactory, SubscriberFactory
from tests.servers import free_port, redis_cache

pytestmark = pytest.mark.django_db

WEDNESDAY = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
def wednesday():
    with time_machine.travel(WEDNESDAY, tick=False):
        yield timezone.now()


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("operator", password="x", is_staff=True)
    client.force_login(user)
    return client


def days_ago(n):
    return timezone.now() - timedelta(days=n)


def test_dashboard_is_for_staff_only(client):
    User.objects.create_user("reader", password="x")

    anonymous = client.get("/admin/dashboard/")
    client.login(username="reader", password="x")
    not_staff = client.get("/admin/dashboard/")

    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert not_staff.status_code == 302 and "/admin/login/" in not_staff["Location"]


def test_dashboard_draws_its_charts_as_inline_svg_without_any_cdn(staff_client, wednesday):
    edition = EditionFactory(date=wednesday.date())
    paper = PaperFactory(title="Sparse experts, routed")
    for subscriber in SubscriberFactory.create_batch(3):
        Delivery.objects.create(
            subscriber=subscriber, edition=edition, status="sent", sent_at=timezone.now(),
            paper_ids=[paper.pk], clicked_at=timezone.now(),
        )
        Feedback.objects.create(subscriber=subscriber, paper=paper, vote=1)

    response = staff_client.get("/admin/dashboard/")

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="paperboy-chart"') == 3
    assert "0.1% threshold" in html and "0.3% threshold" in html
    assert "Sparse experts, routed" in html
    assert not re.search(r"""(src|href)="(https?:)?//(?!arxiv\.org|huggingface\.co)""", html)


def test_a_top_paper_without_any_url_is_shown_as_plain_text_not_a_link_to_the_dashboard(staff_client, wednesday):
    unlinked = PaperFactory(title="Notes without a home page", arxiv_url="", hf_url="")
    linked = PaperFactory(title="Notes on Hugging Face", hf_url="https://huggingface.co/papers/2611.00001")
    reader = SubscriberFactory()
    Feedback.objects.create(subscriber=reader, paper=unlinked, vote=1)
    Feedback.objects.create(subscriber=reader, paper=linked, vote=1)

    html = staff_client.get("/admin/dashboard/").content.decode()

    assert 'href=""' not in html
    assert "<td>Notes without a home page</td>" in html
    assert '<a href="https://huggingface.co/papers/2611.00001" rel="noreferrer">Notes on Hugging Face</a>' in html


def test_subscribers_over_time_follow_each_subscribers_timestamps(wednesday):
    SubscriberFactory(
        status="unsubscribed", created_at=days_ago(10), confirmed_at=days_ago(9), unsubscribed_at=days_ago(2)
    )
    SubscriberFactory(status="pending", created_at=days_ago(1), confirmed_at=None)
    SubscriberFactory(status="active", created_at=days_ago(40), confirmed_at=days_ago(40))

    history = dashboard.subscriber_history(days=12)
    on = {(timezone.localdate() - day).days: dict(counts) for day, counts in history.items()}

    assert on[11] == {"active": 1}
    assert on[10] == {"active": 1, "pending": 1}
    assert on[9] == on[3] == {"active": 2}
    assert on[2] == {"active": 1, "unsubscribed": 1}
    assert on[0] == {"active": 1, "unsubscribed": 1, "pending": 1}


def test_a_signup_never_confirmed_was_pending_until_it_left(wednesday):
    """A confirmation that bounced, suppressed days later: pending before that, never active."""
    signup = SubscriberFactory(status="pending", created_at=days_ago(5), confirmed_at=None)
    with time_machine.travel(days_ago(1), tick=False):
        Subscriber.objects.filter(pk=signup.pk).update(status="bounced", updated_at=timezone.now())

    history = dashboard.subscriber_history(days=7)
    on = {(timezone.localdate() - day).days: dict(counts) for day, counts in history.items()}

    assert on[5] == on[2] == {"pending": 1}
    assert on[1] == on[0] == {"bounced": 1}


def test_deliveries_per_day_are_counted_by_status(wednesday):
    edition = EditionFactory(date=wednesday.date())
    statuses = ["sent", "sent", "failed", "skipped"]
    for subscriber, status in zip(SubscriberFactory.create_batch(4), statuses):
        Delivery.objects.create(subscriber=subscriber, edition=edition, status=status)

    history = dashboard.delivery_history(days=3)

    assert history[timezone.localdate()] == {"sent": 2, "failed": 1, "skipped": 1}


def test_complaint_rate_is_judged_against_the_mailbox_provider_thresholds(wednesday):
    edition = EditionFactory(date=wednesday.date())
    deliveries = [
        Delivery.objects.create(subscriber=subscriber, edition=edition, status="sent", sent_at=timezone.now())
        for subscriber in SubscriberFactory.create_batch(500)
    ]
    Delivery.objects.filter(pk=deliveries[0].pk).update(complained_at=timezone.now())
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries[1:3]]).update(bounced_at=timezone.now())

    today = dashboard.rate_history(days=7)[-1]
    summary = dashboard.rate_summary(dashboard.rate_history(days=7))

    assert (today.sent, today.bounced, today.complained) == (500, 2, 1)
    assert today.complaint_rate == pytest.approx(0.002) and today.bounce_rate == pytest.approx(0.004)
    assert summary["verdict"].startswith("above 0.1%") and not summary["healthy"]


def clicked(delivery, url, at=None):
    """The click event the ESP's webhook stores for ``delivery`` (``digest.webhooks.store_event``),
    applied as the Celery task applies it."""
    event = WebhookEvent.objects.create(
        event_id=f"test:{WebhookEvent.objects.count()}", esp="mailgun", event_type="clicked",
        recipient=delivery.subscriber.email, occurred_at=at or timezone.now(),
        details={"metadata": {"delivery_id": str(delivery.pk)}, "click_url": url},
    )
    webhooks.apply_event(event.pk)
    return event


def test_top_papers_of_the_week_rank_by_clicks_and_likes(wednesday):
    edition = EditionFactory(date=wednesday.date())
    popular, liked, old = PaperFactory.create_batch(3)
    readers = SubscriberFactory.create_batch(3)
    for reader in readers:
        delivery = Delivery.objects.create(
            subscriber=reader, edition=edition, status="sent", paper_ids=[popular.pk, liked.pk],
            clicked_at=timezone.now(),
        )
        clicked(delivery, popular.arxiv_url)
    Feedback.objects.create(subscriber=readers[0], paper=liked, vote=1)
    Feedback.objects.create(subscriber=readers[1], paper=liked, vote=-1)
    Feedback.objects.create(subscriber=readers[2], paper=old, vote=1, created_at=days_ago(9))

    top = dashboard.top_papers_of_week()

    assert [(row.paper, row.clicks, row.likes, row.dislikes) for row in top] == [
        (popular, 3, 0, 0), (liked, 0, 1, 1)
    ]


def test_a_click_counts_for_the_paper_whose_link_was_clicked_once_per_digest(wednesday):
    edition = EditionFactory(date=wednesday.date())
    first, second, elsewhere = PaperFactory.create_batch(3, code_url="")
    second.code_url = "https://github.com/lab/second"
    second.save()
    reader, other = SubscriberFactory.create_batch(2)
    digest = Delivery.objects.create(subscriber=reader, edition=edition, status="sent",
                                     paper_ids=[first.pk, second.pk])
    other_digest = Delivery.objects.create(subscriber=other, edition=edition, status="sent",
                                           paper_ids=[first.pk, second.pk])
    clicked(digest, first.pdf_url)
    clicked(digest, first.arxiv_url)  # the same paper again: still one digest
    clicked(digest, second.code_url + "/")
    clicked(digest, elsewhere.arxiv_url)  # not a paper of this digest
    clicked(digest, "https://paperboy.example/u/abc/unsubscribe/")
    clicked(other_digest, second.arxiv_url, at=days_ago(8))  # before the week

    clicks = {row.paper: row.clicks for row in dashboard.top_papers_of_week()}

    assert clicks == {first: 1, second: 1}


def test_admin_index_links_to_the_dashboard(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert 'href="/admin/dashboard/"' in html and 'href="/healthz/deep"' in html
    assert "Subscribers" in html  # the stock app list is still there


@pytest.mark.parametrize("stamp", ["bounced_at", "complained_at"])
def test_bounces_and_complaints_per_day_are_counted_through_their_partial_indexes(stamp, wednesday):
    """The ledger grows by a row per reader and digest; few rows carry these stamps, and the
    rate chart counts them through an index on the rows that do, not by reading every row."""
    from django.db import connection

    Delivery.objects.create(subscriber=SubscriberFactory(), edition=EditionFactory(date=wednesday.date()),
                            status="sent", sent_at=wednesday, **{stamp: wednesday})
    counted = dashboard.rows_per_day(Delivery.objects.all(), stamp, days_ago(30))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = counted.explain()

    assert f"delivery_{stamp.removesuffix('_at')}_idx" in plan
    assert dict(counted) == {wednesday.date(): 1}


def sent_today(edition):
    Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition, status="sent", sent_at=timezone.now())


def viewed_then_one_more_sent(client):
    """Today's edition with a digest sent, a view of the dashboard, then a second digest sent."""
    edition = EditionFactory(date=timezone.localdate(), cadence="daily")
    sent_today(edition)
    client.get("/admin/dashboard/")
    sent_today(edition)
    return edition


def sent_column(html):
    """The Sent figure of the first edition in the page's "Today" table."""
    return re.search(r"<tr>\s*<td>[^<]*</td>\s*<td>\d+</td>\s*<td>([\d,]+)</td>", html).group(1)


def view_at(client, seconds):
    with time_machine.travel(WEDNESDAY + timedelta(seconds=seconds), tick=False):
        return client.get("/admin/dashboard/").content.decode()


def test_a_view_within_the_kept_seconds_shows_the_figures_already_computed(staff_client, wednesday, settings):
    settings.DASHBOARD_CACHE_SECONDS = 60
    edition = EditionFactory(date=timezone.localdate(), cadence="daily")
    sent_today(edition)
    first = staff_client.get("/admin/dashboard/").content.decode()
    sent_today(edition)

    kept = view_at(staff_client, 30)
    expired = view_at(staff_client, 61)

    assert sent_column(first) == "1" and sent_column(kept) == "1"
    assert "Figures computed at 12:00:00 and shown to every view for 60 s" in kept
    assert sent_column(expired) == "2"
    assert "Figures computed at 12:01:01" in expired


def test_a_kept_view_reads_neither_the_ledger_nor_the_subscribers(staff_client, wednesday, settings):
    settings.DASHBOARD_CACHE_SECONDS = 60
    sent_today(EditionFactory(date=timezone.localdate(), cadence="daily"))
    with CaptureQueriesContext(connection) as computing:
        staff_client.get("/admin/dashboard/")

    with CaptureQueriesContext(connection) as kept:
        staff_client.get("/admin/dashboard/")

    def app_tables(queries):
        return [q["sql"] for q in queries if re.search(r'"(digest|subscriptions|papers)_', q["sql"])]
    assert len(app_tables(computing.captured_queries)) >= 10
    read = app_tables(kept.captured_queries)
    assert len(read) == 1 and '"digest_sendingpause"' in read[0]  # the sending switch, read on every view


def test_asking_to_compute_now_shows_the_figures_of_now_and_keeps_them(staff_client, wednesday, settings):
    settings.DASHBOARD_CACHE_SECONDS = 60
    edition = viewed_then_one_more_sent(staff_client)

    now = staff_client.get("/admin/dashboard/?recompute=1").content.decode()
    sent_today(edition)
    after = staff_client.get("/admin/dashboard/").content.decode()

    assert sent_column(now) == "2" and sent_column(after) == "2"
    assert 'href="?recompute=1"' in now


def test_with_keeping_off_every_view_computes_the_figures(staff_client, wednesday, settings):
    settings.DASHBOARD_CACHE_SECONDS = 0
    viewed_then_one_more_sent(staff_client)

    html = staff_client.get("/admin/dashboard/").content.decode()

    assert sent_column(html) == "2"
    assert "shown to every view" not in html


@pytest.mark.redis
def test_the_figures_are_kept_in_redis_and_computed_on_each_view_while_it_is_away(
    staff_client, wednesday, settings, redis_server, caplog
):
    settings.CACHES = redis_cache(redis_server.url(4))
    settings.DASHBOARD_CACHE_SECONDS = 60
    viewed_then_one_more_sent(staff_client)
    kept = staff_client.get("/admin/dashboard/").content.decode()

    settings.CACHES = redis_cache(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    away = staff_client.get("/admin/dashboard/")

    assert sent_column(kept) == "1"
    assert away.status_code == 200 and sent_column(away.content.decode()) == "2"
    assert "dashboard cache get failed" in caplog.text and "dashboard cache set failed" in caplog.text


@pytest.fixture
def refreshes_asked(monkeypatch):
    """The refresh task handed to a broker that keeps it: no worker runs it during the test."""
    asked = []
    monkeypatch.setattr(tasks.refresh_dashboard_figures, "apply_async", lambda **options: asked.append(options))
    return asked


def test_older_figures_are_shown_while_one_worker_computes_them_again(
    staff_client, wednesday, settings, refreshes_asked
):
    settings.DASHBOARD_CACHE_SECONDS = 60
    viewed_then_one_more_sent(staff_client)

    older = view_at(staff_client, 61)
    again = view_at(staff_client, 62)
    with time_machine.travel(WEDNESDAY + timedelta(seconds=63), tick=False):
        dashboard.keep_dashboard_figures()  # what the worker does with the task
    fresh = view_at(staff_client, 64)

    assert sent_column(older) == "1" and sent_column(again) == "1"
    assert "Figures computed at 12:00:00" in older and "Newer figures are being computed" in older
    assert len(refreshes_asked) == 1  # two views, one refresh
    assert sent_column(fresh) == "2" and "Figures computed at 12:01:03" in fresh
    assert "being computed" not in fresh


def test_a_refresh_still_not_done_after_its_wait_is_asked_for_again(
    staff_client, wednesday, settings, refreshes_asked
):
    settings.DASHBOARD_CACHE_SECONDS = 60
    viewed_then_one_more_sent(staff_client)

    view_at(staff_client, 61)
    view_at(staff_client, 61 + dashboard.REFRESH_WAIT_SECONDS - 1)
    view_at(staff_client, 61 + dashboard.REFRESH_WAIT_SECONDS + 1)

    assert len(refreshes_asked) == 2


def test_figures_older_than_ten_kept_periods_are_computed_during_the_view(
    staff_client, wednesday, settings, refreshes_asked
):
    settings.DASHBOARD_CACHE_SECONDS = 60
    viewed_then_one_more_sent(staff_client)

    html = view_at(staff_client, 60 * dashboard.KEPT_LIFETIMES + 1)

    assert sent_column(html) == "2" and "being computed" not in html
    assert refreshes_asked == []


def test_a_broker_that_refuses_the_refresh_leaves_the_older_figures_shown_and_the_next_view_asks_again(
    staff_client, wednesday, settings, monkeypatch, caplog
):
    def refuse(**options):
        calls.append(options)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    calls = []
    monkeypatch.setattr(tasks.refresh_dashboard_figures, "apply_async", refuse)
    settings.DASHBOARD_CACHE_SECONDS = 60
    viewed_then_one_more_sent(staff_client)

    older = view_at(staff_client, 61)
    view_at(staff_client, 62)

    assert sent_column(older) == "1" and "being computed" not in older
    assert "dashboard refresh could not be queued" in caplog.text
    assert len(calls) == 2 and calls[0] == {"retry": False}  # no publish retries: the page does not wait


# --- The sending switch ---------------------------------------------------------------


def test_a_pause_of_digest_sending_is_shown_on_top_even_over_figures_kept_before_it(staff_client, wednesday, settings):
    settings.DASHBOARD_CACHE_SECONDS = 60
    before = staff_client.get("/admin/dashboard/").content.decode()
    pause.pause_sending("alice", "the edition links 404")

    during = staff_client.get("/admin/dashboard/").content.decode()
    pause.resume_sending("bob")
    after = staff_client.get("/admin/dashboard/").content.decode()

    assert "Sending paused" not in before and "Sending paused" not in after
    assert "<strong>Sending paused</strong> since Wed 18 Nov 12:00 by alice (the edition links 404)" in during
    assert 'href="/admin/digest/sendingpause/"' in during
    assert during.index("Sending paused") < during.index("Figures computed at")


def test_admin_index_links_to_the_sending_switch(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert 'href="/admin/digest/sendingpause/"' in html and "Pause all digest sending" in html
