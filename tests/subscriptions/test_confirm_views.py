import time

import pytest
from django.urls import reverse

from subscriptions import services
from subscriptions.models import Subscriber
from subscriptions.tokens import CONFIRM, make_token
from tests.subscriptions.helpers import confirm_path

pytestmark = pytest.mark.django_db


def status_of(subscriber):
    return Subscriber.objects.get(pk=subscriber.pk).status


def test_get_shows_a_confirm_button_and_changes_nothing(client, pending):
    response = client.get(confirm_path(pending))
    assert response.status_code == 200
    html = response.content.decode()
    assert "data-autosubmit" in html
    assert 'method="post"' in html
    assert status_of(pending) == "pending"
    assert Subscriber.objects.get(pk=pending.pk).confirmed_at is None


def test_a_link_scanner_fetching_twice_changes_nothing(client, pending):
    for _ in range(2):
        assert client.get(confirm_path(pending)).status_code == 200
        assert client.head(confirm_path(pending)).status_code == 200
    assert status_of(pending) == "pending"


def test_post_confirms_and_links_to_preferences(client, pending):
    response = client.post(confirm_path(pending))
    assert response.status_code == 200
    assert status_of(pending) == "active"
    assert Subscriber.objects.get(pk=pending.pk).confirmed_at is not None
    assert "/preferences/" in response.content.decode()


def test_the_confirm_post_needs_csrf(pending):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(confirm_path(pending))
    assert response.status_code == 403
    assert status_of(pending) == "pending"


def test_an_already_confirmed_subscriber_sees_success(client, subscriber):
    response = client.get(confirm_path(subscriber))
    assert response.status_code == 200
    assert "already subscribed" in response.content.decode()


def test_an_expired_link_offers_a_new_one(client, pending, time_machine):
    time_machine.move_to(time.time() - 8 * 24 * 3600)
    token = make_token(pending, CONFIRM, t=int(time.time()))
    time_machine.move_to(time.time() + 8 * 24 * 3600)
    response = client.post(reverse("subscriptions:confirm", args=[token]))
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert reverse("subscriptions:resend") in response.content.decode()
    assert status_of(pending) == "pending"


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_link_gets_a_friendly_page(client, pending, method):
    token = make_token(pending, CONFIRM, t=int(time.time()))
    tampered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    response = getattr(client, method)(reverse("subscriptions:confirm", args=[tampered]))
    assert response.status_code == 404
    assert "This link doesn’t work" in response.content.decode()
    assert status_of(pending) == "pending"


def test_an_unsubscribe_token_cannot_confirm(client, pending):
    from subscriptions.tokens import UNSUBSCRIBE

    response = client.post(
        reverse("subscriptions:confirm", args=[make_token(pending, UNSUBSCRIBE)])
    )
    assert response.status_code == 404
    assert status_of(pending) == "pending"


def test_a_link_from_before_unsubscribing_does_not_resubscribe(client, subscriber):
    old_link = confirm_path(subscriber, t=int(time.time()) - 3600)
    services.unsubscribe(subscriber, via="page")
    response = client.post(old_link)
    assert response.status_code == 404
    assert status_of(subscriber) == "unsubscribed"


def test_a_suppressed_subscriber_cannot_confirm(client, pending):
    services.suppress(pending, reason="complained")
    assert client.post(confirm_path(pending)).status_code == 404
    assert status_of(pending) == "complained"


def test_a_deleted_subscribers_link_is_friendly(client, pending):
    path = confirm_path(pending)
    services.delete_subscriber(pending)
    response = client.get(path)
    assert response.status_code == 404


def test_confirm_pages_are_not_cached_or_indexed(client, pending):
    response = client.get(confirm_path(pending))
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert 'name="robots" content="noindex"' in response.content.decode()


def test_the_confirmed_page_says_the_first_digest_is_on_its_way_when_the_reader_is_due_now(client, pending):
    from datetime import UTC, date, datetime

    import time_machine

    from tests.factories import EditionFactory

    Subscriber.objects.filter(pk=pending.pk).update(timezone="UTC", send_hour=7)
    EditionFactory(date=date(2026, 11, 18), cadence="daily")
    with time_machine.travel(datetime(2026, 11, 18, 6, 0, tzinfo=UTC), tick=False):
        early = client.post(confirm_path(pending)).content.decode()
    Subscriber.objects.filter(pk=pending.pk).update(status="pending", confirmed_at=None)
    with time_machine.travel(datetime(2026, 11, 18, 9, 0, tzinfo=UTC), tick=False):
        late = client.post(confirm_path(pending)).content.decode()
    Subscriber.objects.filter(pk=pending.pk).update(status="pending", confirmed_at=None)
    with time_machine.travel(datetime(2026, 11, 19, 9, 0, tzinfo=UTC), tick=False):  # Thursday's not built yet
        unbuilt = client.post(confirm_path(pending)).content.decode()
    assert "arrives on Wednesday 18 November at 07:00 (UTC)" in early and "on its way" not in early
    assert "on its way: the edition of Wednesday 18 November, within a quarter of an hour" in late
    assert "comes as soon as the latest edition is out" in unbuilt


def test_a_newcomer_far_east_confirming_in_the_afternoon_is_told_which_edition_is_on_its_way(client, pending):
    """In Tokyo at 16:00 the edition built an hour ago comes the next morning; the one on its way
    now is the edition Tokyo got this morning, and the page names it."""
    from datetime import UTC, date, datetime

    import time_machine

    from tests.factories import EditionFactory

    Subscriber.objects.filter(pk=pending.pk).update(timezone="Asia/Tokyo", send_hour=7)
    for day in (17, 18):
        EditionFactory(date=date(2026, 11, day), cadence="daily")
    with time_machine.travel(datetime(2026, 11, 18, 7, 0, tzinfo=UTC), tick=False):
        page = client.post(confirm_path(pending)).content.decode()

    assert "on its way: the edition of Tuesday 17 November, within a quarter of an hour" in page
    assert "07:00 (Asia/Tokyo)" in page


def test_the_confirmed_page_says_a_day_without_a_match_sends_nothing_unless_top_papers_are_asked_for(client, pending):
    nothing_sent = "On a day when no paper matches your interests we send nothing"
    Subscriber.objects.filter(pk=pending.pk).update(interests="diffusion models", always_send_top=False)
    assert nothing_sent in client.post(confirm_path(pending)).content.decode()

    Subscriber.objects.filter(pk=pending.pk).update(status="pending", confirmed_at=None, always_send_top=True)
    assert nothing_sent not in client.post(confirm_path(pending)).content.decode()

    Subscriber.objects.filter(pk=pending.pk).update(
        status="pending", confirmed_at=None, always_send_top=False, interests="", categories=[]
    )
    assert nothing_sent not in client.post(confirm_path(pending)).content.decode()  # the trending list, always


def test_the_confirmed_page_names_a_weekly_digest_with_its_day_capitalised(client, pending):
    Subscriber.objects.filter(pk=pending.pk).update(frequency="weekly")
    html = client.post(confirm_path(pending)).content.decode()
    assert "Your first weekly (Monday) digest" in html
    assert "(monday)" not in html


def test_the_confirmed_page_names_the_day_of_the_first_digest(client, pending):
    """A reader who had today's digest before leaving, back before their hour, gets the next
    edition; a weekly reader west of the edition clock gets Monday's on their own Monday."""
    from datetime import UTC, date, datetime

    import time_machine

    from digest.sending import claim_deliveries
    from tests.factories import EditionFactory

    friday = EditionFactory(date=date(2026, 11, 20), cadence="daily")
    claim_deliveries(friday, [pending.pk])
    Subscriber.objects.filter(pk=pending.pk).update(timezone="UTC", send_hour=7)
    with time_machine.travel(datetime(2026, 11, 20, 0, 30, tzinfo=UTC), tick=False):
        back = client.post(confirm_path(pending)).content.decode()
    assert "arrives on Monday 23 November at 07:00 (UTC)" in back

    EditionFactory(date=date(2026, 11, 16), cadence="weekly")
    Subscriber.objects.filter(pk=pending.pk).update(
        status="pending", confirmed_at=None, frequency="weekly", timezone="America/Los_Angeles", send_hour=20
    )
    with time_machine.travel(datetime(2026, 11, 16, 0, 30, tzinfo=UTC), tick=False):  # Sunday 16:30 there
        west = client.post(confirm_path(pending)).content.decode()
    assert "arrives on Monday 16 November at 20:00 (America/Los_Angeles)" in west
