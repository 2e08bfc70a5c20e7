import json
import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from digest.models import Delivery, Feedback
from subscriptions import services
from subscriptions.models import Subscriber, Suppression, email_hash
from subscriptions.tokens import PREFERENCES, make_token
from tests.factories import EditionFactory, PaperFactory
from tests.subscriptions.helpers import preference_data, preferences_path

pytestmark = pytest.mark.django_db


def token_of(subscriber):
    return make_token(subscriber, PREFERENCES)


def test_the_page_shows_the_current_preferences(client, subscriber):
    subscriber.interests = "sparse attention"
    subscriber.timezone = "Asia/Tokyo"
    subscriber.save()
    response = client.get(preferences_path(subscriber))
    assert response.status_code == 200
    html = response.content.decode()
    assert "ada@example.org" in html
    assert "sparse attention" in html
    assert '<option value="Asia/Tokyo" selected>' in html


@pytest.mark.parametrize("zone, hour, published", [
    ("Asia/Tokyo", 7, "15:00"),  # the job at 06:00 UTC, eight hours after their hour
    ("Asia/Shanghai", 7, "14:00"),  # zones without summer time: the same any day the suite runs
    ("Asia/Tokyo", 9, None),  # six hours: the same day
    ("Europe/Berlin", 7, None),
    ("America/New_York", 7, None),
])
def test_a_reader_far_east_is_told_why_each_edition_reaches_them_the_next_day(client, subscriber, zone, hour, published):
    Subscriber.objects.filter(pk=subscriber.pk).update(timezone=zone, send_hour=hour)
    page = client.get(preferences_path(subscriber)).content.decode()
    if published:
        assert f"Each edition is published at {published} your time, well after your hour, so it reaches " \
               f"you at {hour:02d}:00 the next day." in page
    else:
        assert "Each edition is published" not in page


def test_get_changes_nothing(client, subscriber):
    before = Subscriber.objects.values().get(pk=subscriber.pk)
    client.get(preferences_path(subscriber))
    client.get(reverse("subscriptions:delete", args=[token_of(subscriber)]))
    assert Subscriber.objects.values().get(pk=subscriber.pk) == before


def test_saving_updates_every_preference(client, subscriber):
    data = preference_data(
        interests="graph neural networks; RLHF",
        frequency="weekly",
        max_papers="20",
        send_hour="18",
        timezone="America/New_York",
        categories=["cs.CV"],
        always_send_top="on",
    )
    response = client.post(preferences_path(subscriber), data, follow=True)
    assert response.redirect_chain[-1][1] == 302
    assert "Saved" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.interests == "graph neural networks, RLHF"
    assert (subscriber.frequency, subscriber.max_papers, subscriber.send_hour) == ("weekly", 20, 18)
    assert (subscriber.timezone, subscriber.categories) == ("America/New_York", ["cs.CV"])
    assert subscriber.always_send_top is True


def test_invalid_preferences_save_nothing(client, subscriber):
    response = client.post(
        preferences_path(subscriber), preference_data(timezone="Nowhere/Land", frequency="weekly")
    )
    assert response.status_code == 400
    assert "Nothing was saved" in response.content.decode()
    assert "<title>Error: Your preferences · Paperboy</title>" in response.content.decode()
    assert Subscriber.objects.get(pk=subscriber.pk).frequency == "daily"


@pytest.mark.parametrize(
    "field, legend, value",
    [
        ("categories", "arXiv categories", "cs.NOPE"),
        ("frequency", "How often", "hourly"),
        ("max_papers", "Papers per email", "7"),
    ],
)
def test_an_error_on_a_group_of_choices_describes_its_fieldset(client, subscriber, field, legend, value):
    """The inputs of a <fieldset> get no aria-describedby: the group points to its error."""
    html = client.post(preferences_path(subscriber), preference_data(**{field: value})).content.decode()
    fieldset = re.search(rf'<fieldset[^>]*>\s*<legend>{legend}', html).group(0)
    assert f'aria-describedby="id_{field}_error"' in fieldset
    assert f'<p class="field-error" id="id_{field}_error">' in html


def test_the_preferences_form_needs_csrf(subscriber):
    response = Client(enforce_csrf_checks=True).post(
        preferences_path(subscriber), preference_data(frequency="weekly")
    )
    assert response.status_code == 403
    assert Subscriber.objects.get(pk=subscriber.pk).frequency == "daily"


@pytest.mark.parametrize(
    ("frequency", "phrase"),
    [("daily", "daily (weekdays)"), ("weekly", "weekly (Monday)")],
)
def test_the_page_names_the_frequency_with_its_day_capitalised(client, subscriber, frequency, phrase):
    Subscriber.objects.filter(pk=subscriber.pk).update(frequency=frequency)
    html = client.get(preferences_path(subscriber)).content.decode()
    assert f"You receive a <strong>{phrase}</strong> digest" in html
    assert "(monday)" not in html


def test_pause_and_resume(client, subscriber):
    token = token_of(subscriber)
    client.post(reverse("subscriptions:pause", args=[token]))
    assert Subscriber.objects.get(pk=subscriber.pk).status == "paused"
    assert "Resume my digests" in client.get(preferences_path(subscriber)).content.decode()
    client.post(reverse("subscriptions:resume", args=[token]))
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"


@pytest.mark.parametrize("action", ["pause", "resume", "new_link", "my_data"])
def test_a_preferences_button_opened_by_get_changes_nothing_and_leads_back_to_the_preferences(
    client, subscriber, action
):
    token = token_of(subscriber)
    before = Subscriber.objects.filter(pk=subscriber.pk).values().get()

    response = client.get(reverse(f"subscriptions:{action}", args=[token]))

    assert response.status_code == 302
    assert response["Location"] == reverse("subscriptions:preferences", args=[token])
    assert Subscriber.objects.filter(pk=subscriber.pk).values().get() == before
    assert client.get(response["Location"]).status_code == 200  # the link still works
    assert client.put(reverse(f"subscriptions:{action}", args=[token])).status_code == 405


def test_an_unsubscribed_subscriber_can_come_back_from_the_page(client, subscriber):
    subscriber.status = "unsubscribed"
    subscriber.save()
    assert "Subscribe again" in client.get(preferences_path(subscriber)).content.decode()
    client.post(reverse("subscriptions:resume", args=[token_of(subscriber)]))
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"


def test_my_data_downloads_as_json(client, subscriber):
    paper = PaperFactory()
    Delivery.objects.create(
        subscriber=subscriber, edition=EditionFactory(), paper_ids=[paper.pk], status="sent"
    )
    Feedback.objects.create(subscriber=subscriber, paper=paper, vote=1)
    response = client.post(reverse("subscriptions:my_data", args=[token_of(subscriber)]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert set(data) >= {"profile", "deliveries", "feedback"}
    assert data["profile"]["email"] == "ada@example.org"
    assert len(data["deliveries"]) == len(data["feedback"]) == 1


def test_delete_asks_first_then_erases(client, subscriber):
    url = reverse("subscriptions:delete", args=[token_of(subscriber)])
    assert "Delete everything?" in client.get(url).content.decode()
    response = client.post(url)
    assert response.status_code == 200
    assert "Everything is deleted" in response.content.decode()
    assert not Subscriber.objects.exists()
    assert Suppression.objects.get().email_hash == email_hash("ada@example.org")


def test_head_on_the_delete_page_deletes_nothing(client, subscriber):
    response = client.head(reverse("subscriptions:delete", args=[token_of(subscriber)]))
    assert response.status_code == 200
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()


def test_after_deletion_the_link_is_dead_but_friendly(client, subscriber):
    path = preferences_path(subscriber)
    client.post(reverse("subscriptions:delete", args=[token_of(subscriber)]))
    response = client.get(path)
    assert response.status_code == 404
    assert "This link doesn’t work" in response.content.decode()


def test_a_new_link_revokes_the_old_one(client, subscriber):
    old = preferences_path(subscriber)
    response = client.post(reverse("subscriptions:new_link", args=[token_of(subscriber)]))
    assert response.status_code == 200
    assert client.get(old).status_code == 404
    new = mail.outbox[0].body.split("/preferences/")[1].split("/")[0]
    assert client.get(reverse("subscriptions:preferences", args=[new])).status_code == 200


@pytest.mark.parametrize("status", ["bounced", "complained", "suppressed"])
def test_a_new_link_for_an_address_we_never_email_revokes_the_old_one_and_says_none_was_sent(
    client, subscriber, status
):
    Subscriber.objects.filter(pk=subscriber.pk).update(status=status)
    old = preferences_path(subscriber)
    response = client.post(reverse("subscriptions:new_link", args=[token_of(subscriber)]))
    assert response.status_code == 200
    assert client.get(old).status_code == 404
    assert mail.outbox == []
    html = response.content.decode()
    assert "no new link was sent" in html and "We’ve emailed" not in html


def test_an_unsubscribed_reader_who_asks_for_a_new_link_gets_one(client, subscriber):
    Subscriber.objects.filter(pk=subscriber.pk).update(status="unsubscribed")
    old = preferences_path(subscriber)
    response = client.post(reverse("subscriptions:new_link", args=[token_of(subscriber)]))
    assert client.get(old).status_code == 404
    assert [m.to for m in mail.outbox] == [[subscriber.email]]
    assert "We’ve emailed" in response.content.decode()


def test_a_new_link_the_mail_system_refused_is_not_said_to_be_sent(
    client, subscriber, monkeypatch
):
    def broken(*args, **kwargs):
        raise ConnectionError("ESP down")

    monkeypatch.setattr(services, "send_email", broken)
    response = client.post(reverse("subscriptions:new_link", args=[token_of(subscriber)]))
    html = response.content.decode()
    assert "We couldn’t email a new link" in html and "We’ve emailed" not in html


@pytest.mark.parametrize("token", ["garbage", "a" * 2000, "Ω≈ç√", "..", "%00"])
def test_bad_tokens_get_a_friendly_page(client, token):
    response = client.get(f"/preferences/{token}/")
    assert response.status_code == 404
    assert "This link doesn’t work" in response.content.decode()


def test_a_tampered_token_cannot_post_either(client, subscriber):
    token = token_of(subscriber)[:-2] + "zz"
    response = client.post(reverse("subscriptions:pause", args=[token]))
    assert response.status_code == 404
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"
