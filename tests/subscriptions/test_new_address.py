"""Moving a subscription to a new address: asked from the preferences page, confirmed from the new mailbox."""

import re
import smtplib
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from digest.models import Feedback
from subscriptions import services, tasks
from subscriptions.models import Subscriber, Suppression, email_hash
from subscriptions.tokens import NEW_ADDRESS, PREFERENCES, make_token
from tests.factories import PaperFactory, SubscriberFactory
from tests.subscriptions.helpers import link_in, preferences_path

pytestmark = pytest.mark.django_db


def change_address_path(subscriber):
    return reverse("subscriptions:change_address", args=[make_token(subscriber, PREFERENCES)])


def ask_to_move(client, subscriber, email):
    return client.post(change_address_path(subscriber), {"email": email})


def emails_to(address):
    return [message for message in mail.outbox if message.to == [address]]


def new_address_link():
    """The path of the link in the latest email, which confirms a new address."""
    return link_in(mail.outbox[-1].body, "new-address")


def test_a_reader_moves_to_a_new_address_and_keeps_their_votes(client, subscriber):
    Feedback.objects.create(subscriber=subscriber, paper=PaperFactory(), vote=Feedback.Vote.LIKE)
    old_preferences = preferences_path(subscriber)

    response = ask_to_move(client, subscriber, "ada@new.example")

    assert response.status_code == 200
    assert "Check your new inbox" in response.content.decode()
    [confirmation] = mail.outbox
    assert confirmation.to == ["ada@new.example"]
    assert confirmation.subject == "Confirm your new address for Paperboy"
    assert "ada@example.org" in confirmation.body and confirmation.alternatives
    subscriber.refresh_from_db()
    assert (subscriber.email, subscriber.new_email) == ("ada@example.org", "ada@new.example")

    page = client.get(new_address_link())
    assert page.status_code == 200 and "Yes, use this address" in page.content.decode()
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@example.org"  # GET changes nothing

    moved = client.post(new_address_link(), follow=True)

    assert "Done: your digests now go to ada@new.example." in moved.content.decode()
    subscriber.refresh_from_db()
    assert (subscriber.email, subscriber.new_email, subscriber.status) == ("ada@new.example", "", "active")
    assert Feedback.objects.filter(subscriber=subscriber).count() == 1
    assert client.get(old_preferences).status_code == 404  # every earlier link revoked
    [notice] = emails_to("ada@example.org")
    assert notice.subject == "Your Paperboy digests go to a new address"
    assert "ada@new.example" in notice.body
    assert "confirmed by email link" in subscriber.consent_note.split(";")[-1]


@pytest.fixture
def notes_handed_over(monkeypatch):
    """The notes to old addresses handed to the workers, as a broker would queue them."""
    queued = []
    monkeypatch.setattr(tasks.send_address_changed_note, "delay", lambda *args: queued.append(args))
    return queued


def moved_away(subscriber, email="ada@new.example"):
    Subscriber.objects.filter(pk=subscriber.pk).update(email=email)


def test_the_note_to_the_old_address_is_left_to_a_worker(client, subscriber, notes_handed_over):
    ask_to_move(client, subscriber, "ada@new.example")
    client.post(new_address_link())

    assert notes_handed_over == [(subscriber.pk, "ada@example.org")]
    assert emails_to("ada@example.org") == []  # nothing sent within the request
    assert services.send_address_changed_note(*notes_handed_over[0]) is True
    [note] = emails_to("ada@example.org")
    assert "now go to ada@new.example" in note.body


def test_a_note_the_mail_system_defers_is_tried_again_and_one_refused_for_good_is_given_up(
    subscriber, mail_system, caplog
):
    moved_away(subscriber)
    mail_system.errors = [smtplib.SMTPRecipientsRefused({"ada@example.org": (451, b"4.7.1 Try again later")})]

    with pytest.raises(services.AccountEmailDeferred):
        services.send_address_changed_note(subscriber.pk, "ada@example.org", may_defer=True)
    assert "The mail system deferred the note to the old address" in caplog.text
    assert services.send_address_changed_note(subscriber.pk, "ada@example.org", may_defer=True) is True
    assert len(emails_to("ada@example.org")) == 1

    mail_system.errors = [smtplib.SMTPRecipientsRefused({"ada@example.org": (550, b"5.1.1 No such user")})]
    assert services.send_address_changed_note(subscriber.pk, "ada@example.org", may_defer=True) is False
    assert "Could not tell the old address" in caplog.text
    mail_system.errors = [smtplib.SMTPRecipientsRefused({"ada@example.org": (451, b"4.7.1 Try again later")})]
    assert services.send_address_changed_note(subscriber.pk, "ada@example.org", may_defer=False) is False  # the last try
    assert len(emails_to("ada@example.org")) == 1


def test_the_note_is_no_longer_due_once_the_reader_is_deleted_or_back_at_the_old_address(subscriber, caplog):
    assert services.send_address_changed_note(subscriber.pk, "Ada@Example.org") is False  # moved back meanwhile
    services.delete_subscriber(subscriber)
    assert services.send_address_changed_note(subscriber.pk, "ada@example.org") is False
    assert mail.outbox == []
    assert caplog.text.count("is no longer due") == 2


def test_with_the_broker_unreachable_the_note_is_sent_in_the_request(client, subscriber, monkeypatch, caplog):
    def unreachable(*args):
        raise BrokerError("Error 111 connecting to localhost:6379. Connection refused.")

    ask_to_move(client, subscriber, "ada@new.example")
    monkeypatch.setattr(tasks.send_address_changed_note, "delay", unreachable)
    client.post(new_address_link())

    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@new.example"
    assert len(emails_to("ada@example.org")) == 1
    assert "Queue unreachable: telling the old address" in caplog.text


def test_a_bounced_reader_moves_and_receives_again_without_a_note_to_the_dead_address(client, subscriber):
    services.suppress(subscriber, "bounced")
    ask_to_move(client, subscriber, "ada@new.example")
    client.post(new_address_link())
    subscriber.refresh_from_db()
    assert (subscriber.email, subscriber.status) == ("ada@new.example", "active")
    assert emails_to("ada@example.org") == []
    assert services.is_blocked("ada@example.org")  # the old address stays blocked
    assert not services.is_blocked("ada@new.example")


def test_an_unsubscribed_reader_moves_and_stays_unsubscribed(client, subscriber):
    services.unsubscribe(subscriber, via="page")
    ask_to_move(client, subscriber, "ada@new.example")
    client.post(new_address_link())
    subscriber.refresh_from_db()
    assert (subscriber.email, subscriber.status) == ("ada@new.example", "unsubscribed")


def test_the_answer_does_not_tell_whether_the_new_address_subscribes_or_is_blocked(subscriber):
    SubscriberFactory(email="taken@example.org")
    services.suppress_email("bounced@example.org", "bounced")
    answers = {}
    for email in ("free@example.org", "taken@example.org", "bounced@example.org"):
        reader = SubscriberFactory()
        response = ask_to_move(Client(), reader, email)
        page = response.content.decode().replace(email, "NEW").replace(reader.email, "OLD")
        answers[email] = (response.status_code, re.sub(r"/preferences/[^/]+/", "/preferences/TOKEN/", page))
    assert answers["taken@example.org"] == answers["free@example.org"] == answers["bounced@example.org"]
    assert [message.to for message in mail.outbox] == [["free@example.org"]]
    assert Subscriber.objects.get(email="taken@example.org").status == "active"


def test_an_address_another_reader_confirmed_meanwhile_is_not_taken_from_them(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    link = new_address_link()
    SubscriberFactory(email="Ada@New.example")

    response = client.post(link)

    assert response.status_code == 409
    assert "already has a Paperboy subscription" in response.content.decode()
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@example.org"
    assert Subscriber.objects.with_email("ada@new.example").get().pk != subscriber.pk


def test_an_address_taken_between_the_check_and_the_move_is_refused_by_the_unique_index(
    client, subscriber, monkeypatch
):
    """The race the index settles: the holder is not there when looked for, then is."""
    from subscriptions.models import SubscriberQuerySet

    ask_to_move(client, subscriber, "ada@new.example")
    link = new_address_link()
    SubscriberFactory(email="ADA@new.example")
    monkeypatch.setattr(SubscriberQuerySet, "with_email", lambda queryset, email: queryset.none())

    response = client.post(link)

    assert response.status_code == 409 and "already has a Paperboy subscription" in response.content.decode()
    monkeypatch.undo()
    subscriber.refresh_from_db()  # the connection still answers: the failed statement was rolled back alone
    assert (subscriber.email, subscriber.new_email) == ("ada@example.org", "ada@new.example")
    assert emails_to("ada@example.org") == []


def test_a_signup_never_confirmed_at_the_new_address_gives_way(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    abandoned = SubscriberFactory(email="ada@new.example", status="pending", confirmed_at=None)
    client.post(new_address_link())
    assert not Subscriber.objects.filter(pk=abandoned.pk).exists()
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@new.example"


def test_a_deleted_address_is_welcome_back_but_a_blocked_one_is_refused_at_the_link(client, subscriber):
    Suppression.objects.create(email_hash=email_hash("ada@new.example"), reason="deleted")
    ask_to_move(client, subscriber, "ada@new.example")
    link = new_address_link()
    services.suppress_email("ada@new.example", "complained")  # reported as spam before the click

    response = client.post(link)

    assert response.status_code == 409 and "We can’t send to" in response.content.decode()
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@example.org"


def test_a_deleted_address_is_freed_from_the_suppression_list_by_the_move(client, subscriber):
    Suppression.objects.create(email_hash=email_hash("ada@new.example"), reason="deleted")
    ask_to_move(client, subscriber, "ada@new.example")
    client.post(new_address_link())
    assert not Suppression.objects.filter(email_hash=email_hash("ada@new.example")).exists()


def test_one_link_per_ten_minutes_and_only_the_latest_address_moves(client, subscriber):
    ask_to_move(client, subscriber, "typo@new.exmaple")
    first_link = new_address_link()

    throttled = ask_to_move(client, subscriber, "ada@new.example")
    assert throttled.status_code == 302
    assert "less than ten minutes ago" in client.get(throttled.url).content.decode()
    assert len(mail.outbox) == 1

    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        ask_to_move(client, subscriber, "ada@new.example")
        assert [message.to for message in mail.outbox] == [["typo@new.exmaple"], ["ada@new.example"]]
        for stale in (client.get(first_link), client.post(first_link)):
            assert stale.status_code == 409 and "not for the address last asked for" in stale.content.decode()
        assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@example.org"
        client.post(new_address_link())
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@new.example"


def test_a_used_link_does_nothing_more(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    link = new_address_link()
    client.post(link)
    again = client.post(link)
    assert again.status_code == 404  # the move revoked it with every other link
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@new.example"


def test_the_link_expires_after_two_days(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    link = new_address_link()
    with time_machine.travel(timezone.now() + timedelta(days=2, minutes=1)):
        response = client.post(link)
    assert response.status_code == 410 and "work for 2 days" in response.content.decode()
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@example.org"


def test_forged_and_misdirected_links_are_refused(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    link = new_address_link()
    forged = link[:-6] + ("A" if link[-6] != "A" else "B") + link[-5:]
    preferences_token = make_token(subscriber, PREFERENCES)
    other_address = make_token(subscriber, NEW_ADDRESS, a=services.new_address_key("eve@example.org"))
    for path in (
        forged,
        reverse("subscriptions:confirm_new_address", args=[preferences_token]),
    ):
        assert client.post(path).status_code == 404
    wrong = client.post(reverse("subscriptions:confirm_new_address", args=[other_address]))
    assert wrong.status_code == 409
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@example.org"


def test_asking_for_the_current_address_changes_nothing(client, subscriber):
    response = ask_to_move(client, subscriber, "ADA@example.org")
    assert "That is already your address" in client.get(response.url).content.decode()
    assert mail.outbox == [] and Subscriber.objects.get(pk=subscriber.pk).new_email == ""


@pytest.mark.parametrize("status, confirmed", [("pending", False), ("complained", True), ("suppressed", True)])
def test_readers_who_may_not_move_get_no_card_and_no_email(client, status, confirmed):
    reader = SubscriberFactory(status=status, confirmed_at=timezone.now() if confirmed else None)
    assert "Your address" not in client.get(preferences_path(reader)).content.decode()
    response = ask_to_move(client, reader, "elsewhere@example.org")
    assert "can’t move to another address" in client.get(response.url).content.decode()
    assert mail.outbox == [] and Subscriber.objects.get(pk=reader.pk).new_email == ""


def test_an_invalid_address_is_shown_on_the_preferences_page(client, subscriber):
    response = ask_to_move(client, subscriber, "not an address")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_email_error"' in html and "Your preferences" in html
    assert mail.outbox == [] and Subscriber.objects.get(pk=subscriber.pk).new_email == ""


def test_opening_the_form_address_leads_back_to_the_preferences(client, subscriber):
    response = client.get(change_address_path(subscriber))
    assert response.status_code == 302 and response.url == preferences_path(subscriber)


def test_the_page_says_which_address_waits_for_its_link_until_the_link_expires(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    html = client.get(preferences_path(subscriber)).content.decode()
    assert "Waiting for you to follow the link we sent to" in html and "ada@new.example" in html
    with time_machine.travel(timezone.now() + timedelta(days=2, minutes=1)):
        html = client.get(preferences_path(subscriber)).content.decode()
    assert "Waiting for you" not in html and "ada@new.example" not in html


def test_a_bounced_reader_is_pointed_to_the_address_card(client, subscriber):
    services.suppress(subscriber, "bounced")
    html = client.get(preferences_path(subscriber)).content.decode()
    assert "Emails to this address bounced" in html and 'id="address-heading"' in html


def test_a_new_preferences_link_revokes_the_pending_move(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    link = new_address_link()
    services.revoke_links(subscriber, asked_by_reader=True)
    assert client.post(link).status_code == 404
    assert Subscriber.objects.get(pk=subscriber.pk).new_email == ""


def test_requests_are_rate_limited_per_new_address(settings, subscriber):
    settings.SUBSCRIBE_RATE_PER_EMAIL = "2/h"
    readers = SubscriberFactory.create_batch(3)
    for reader in readers[:2]:
        assert ask_to_move(Client(), reader, "target@example.org").status_code == 200
    assert ask_to_move(Client(), readers[2], "Target@Example.org").status_code == 429
    assert Subscriber.objects.get(pk=readers[2].pk).new_email == ""


def test_my_data_names_the_address_waiting_for_its_link(client, subscriber):
    ask_to_move(client, subscriber, "ada@new.example")
    subscriber.refresh_from_db()
    assert services.export_subscriber_data(subscriber)["profile"]["new_email"] == "ada@new.example"
